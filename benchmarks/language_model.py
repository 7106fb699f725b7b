"""fit() versus a hand-written nanoGPT-style loop: same GPT, data, seed, schedule and steps, alternated in one run.

Prints one JSON line: tokens/s of each (median over alternated repeats), their ratio (goal >= 0.97), both final
losses (must match), and one full run through fit() at nanoGPT's CPU Shakespeare-char setting (4 layers, 4 heads,
128 wide, block 64, batch 12, 2,000 steps, no dropout; nanoGPT reports a val loss of about 1.88 on its 1 MB text).
On a busy shared CPU use one thread: two threads fighting other jobs for two cores ran 6-30× slower here.

    OMP_NUM_THREADS=1 python benchmarks/language_model.py     # CPU: ratio on 200-step runs + the 2,000-step run
    python benchmarks/language_model.py --device cuda --amp --n-layer 6 --n-head 6 --n-embd 384 \
        --block-size 256 --batch-size 64                      # GPU: tokens/s and model FLOPs utilization
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import ftkit
from ftkit.data import shipped
from ftkit.data.corpus import load_corpus
from ftkit.nlp.lm import GPT, GPTConfig, flops_per_token, lm_loss, recipe

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16/fp16 tensor-core peaks (SXM)


def build(args, corpus, steps):
    ftkit.seed_everything(args.seed)
    model = GPT(GPTConfig(corpus.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd, 0.0))
    model.to(args.device)
    return model, *recipe(model, args.lr, steps)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(args, corpus, steps):
    """nanoGPT's loop: get_batch by torch.randint + stack, CE, clip, step, evaluate every eval_every steps."""
    model, opt, sched = build(args, corpus, steps)
    data, T, B, device = corpus.train, args.block_size, args.batch_size, args.device
    gen = torch.Generator().manual_seed(args.seed)
    amp = torch.autocast(device.type, dtype=torch.float16) if args.amp else contextlib.nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and device.type == "cuda")
    val = None
    sync(device)
    t0 = time.perf_counter()
    model.train()
    for it in range(1, steps + 1):
        ix = torch.randint(len(data) - T, (B,), generator=gen)
        x = torch.stack([data[i:i + T] for i in ix]).to(device)
        y = torch.stack([data[i + 1:i + 1 + T] for i in ix]).to(device)
        with amp:
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sched.step()
        last = loss.item()  # nanoGPT logs every iteration on CPU (log_interval=1)
        if it % args.eval_every == 0:
            val = estimate_loss(model, corpus, args, amp)
    sync(device)
    return time.perf_counter() - t0, last, val


@torch.no_grad()
def estimate_loss(model, corpus, args, amp):
    model.eval()
    total, n = 0.0, 0
    for x, y in corpus.val_loader(args.block_size, 4 * args.batch_size):
        x, y = x.to(args.device), y.to(args.device)
        with amp:
            logits = model(x)
        total += F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1)).item() * len(x)
        n += len(x)
    model.train()
    return total / n


def with_fit(args, corpus, steps, eval_every=None):
    eval_every = eval_every or args.eval_every
    model, opt, sched = build(args, corpus, steps)
    train_loader = corpus.train_loader(args.block_size, args.batch_size, eval_every, seed=args.seed)
    val_loader = corpus.val_loader(args.block_size, 4 * args.batch_size)
    sync(args.device)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
        history = ftkit.fit(model, train_loader, lm_loss("cross_entropy"), opt, steps // eval_every,
                            val_loader=val_loader, scheduler=sched, device=args.device, amp=args.amp, grad_clip=1.0)
    sync(args.device)
    return time.perf_counter() - t0, history.steps[-1]["loss"], history["val_loss"][-1], model


def compare(args, corpus):
    """fit and plain alternated (round 0 a warm-up): median tokens/s of each, their ratio, both final losses."""
    steps = args.ratio_steps
    times, finals = {"plain": [], "fit": []}, {}
    for r in range(args.repeats + 1):
        for name in (("plain", "fit") if r % 2 else ("fit", "plain")):
            seconds, last, val, *_ = (plain if name == "plain" else with_fit)(args, corpus, steps)
            finals[name] = (last, val)
            if r:
                times[name].append(seconds)
    tokens = steps * args.batch_size * args.block_size
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    return {"steps": steps, "repeats": args.repeats, "plain_tokens_per_s": round(tps["plain"]),
            "fit_tokens_per_s": round(tps["fit"]), "ratio": round(tps["fit"] / tps["plain"], 4), "goal": 0.97,
            "final_loss_plain": finals["plain"][0], "final_loss_fit": finals["fit"][0],
            "val_loss_plain": finals["plain"][1], "val_loss_fit": finals["fit"][1],
            "losses_match": abs(finals["plain"][0] - finals["fit"][0]) <= 1e-5}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=str(shipped("text/shakespeare.txt")))
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ratio-steps", type=int, default=200, help="steps of each timed run (fit and plain); 0 skips")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full-steps", type=int, default=2000, help="the one long fit() run; 0 skips it")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.device = ftkit.get_device(args.device)
    args.amp = args.amp and args.device.type == "cuda"
    corpus = load_corpus(args.text, "char", block_size=args.block_size)

    out = {"benchmark": "language_model", "device": torch.cuda.get_device_name() if args.device.type == "cuda"
           else "cpu", "threads": torch.get_num_threads(), "amp": args.amp, "text": args.text,
           "train_tokens": len(corpus.train), "vocab_size": corpus.vocab_size,
           "model": {"n_layer": args.n_layer, "n_head": args.n_head, "n_embd": args.n_embd,
                     "block_size": args.block_size, "batch_size": args.batch_size}}
    if args.ratio_steps:
        out.update(compare(args, corpus))
    if args.full_steps:
        seconds, last, val, model = with_fit(args, corpus, args.full_steps, eval_every=250)  # nanoGPT's interval
        fpt = flops_per_token(model)
        full_tps = args.full_steps * args.batch_size * args.block_size / seconds
        out["full_run"] = {"steps": args.full_steps, "val_loss": round(val, 4), "seconds": round(seconds, 1),
                           "tokens_per_s": round(full_tps), "params": model.num_parameters(),
                           "nanogpt_reference_val_loss": 1.88}
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in out["device"]), None)
        if peak and args.amp:
            out["full_run"]["mfu"] = round(fpt * full_tps / (peak * 1e12), 4)
            out["full_run"]["peak_tflops"] = peak
    print(json.dumps(out))


if __name__ == "__main__":
    main()
