"""NER fine-tuning: ftkit.fit() versus a plain transformers/PyTorch loop; same model, data, seed, alternated.

Both train a token-classification model with AdamW + linear warmup/decay on the same length-grouped batches;
only the training loop differs. Prints one JSON line: median time ratio fit/plain (goal <= 1.05), tokens/s
of each, and dev F1 of each (goal: within 0.5 pt; on CPU the two runs are bit-identical).

    python benchmarks/ner.py                      # tiny BERT built offline on data/conll2003_sample, CPU
    python benchmarks/ner.py --model bert-base-cased --device cuda --amp --train-copies 24
    python benchmarks/ner.py --random-init-base --device cuda --amp --train-copies 24   # offline, bert-base size
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

import ftkit
from ftkit.data.conll import load_conll
from ftkit.ner import NerTagger, build_tiny_bert, evaluate_ner

ROOT = Path(__file__).resolve().parents[1]
BERT_BASE_CASED = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       vocab_size=28996)  # bert-base-cased's shapes (its vocabulary size too)


def setup(args, data, seed):
    """Fresh model (same seed → same classifier head), optimizer, scheduler and loader for one run."""
    ftkit.seed_everything(seed)
    tagger = NerTagger.from_pretrained(args.model, data.label_list, max_length=args.max_length)
    loader = tagger.loader(tagger.encode(data.train), args.batch_size, shuffle=True, sort_by_length=True, seed=seed)
    optimizer = ftkit.make_optimizer("adamw", tagger.model, lr=args.lr, weight_decay=0.01)
    scheduler = ftkit.make_scheduler("linear_warmup", optimizer, total_steps=len(loader) * args.epochs,
                                     warmup_ratio=0.1)
    return tagger, loader, optimizer, scheduler


def plain_loop(model, loader, optimizer, scheduler, epochs, device, amp):
    """What one writes by hand with transformers: model(**batch).loss, backward, step, schedule."""
    model.to(device).train()
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    for _ in range(epochs):
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                loss = model(**batch).loss
            (scaler.scale(loss) if scaler else loss).backward()
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            loss.item()  # a real loop logs the loss


def fit_loop(model, loader, optimizer, scheduler, epochs, device, amp):
    with contextlib.redirect_stdout(sys.stderr):  # stdout keeps the one JSON line; default callbacks stay on
        ftkit.fit(model, loader, None, optimizer, epochs, scheduler=scheduler, device=device, amp=amp)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder or Hub id (default: a tiny BERT built offline)")
    ap.add_argument("--random-init-base", action="store_true",
                    help="bert-base-cased-sized BERT, random weights, WordPiece vocabulary built from --data-dir")
    ap.add_argument("--data-dir", default=str(ROOT / "data" / "conll2003_sample"))
    ap.add_argument("--train-copies", type=int, default=1, help="repeat the training sentences (a bigger epoch)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None, help="default 3e-3 for the tiny model, else 5e-5")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    args = ap.parse_args()
    device = ftkit.get_device(args.device)
    data = load_conll(args.data_dir)
    data.train = data.train * args.train_copies

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers.utils import logging
        logging.set_verbosity_error()  # the "newly initialized classifier" report, once per run
        name = args.model or ("random-init bert-base-cased size" if args.random_init_base else "tiny BERT")
        if args.model is None:
            sizes = BERT_BASE_CASED if args.random_init_base else {}
            args.model = build_tiny_bert(os.path.join(tmp, "bert"), args.data_dir, **sizes)
        if args.lr is None:
            args.lr = 5e-5 if args.random_init_base or name != "tiny BERT" else 3e-3
        times, f1, tokens = {"plain": [], "fit": []}, {}, 0
        for r in range(args.repeats + 1):  # alternate who goes first; round 0 is a warm-up
            order = (("plain", plain_loop), ("fit", fit_loop)) if r % 2 else (("fit", fit_loop), ("plain", plain_loop))
            for label, loop in order:
                tagger, loader, optimizer, scheduler = setup(args, data, seed=0)
                tokens = sum(loader.dataset.lengths) * args.epochs
                sync(device)
                t0 = time.perf_counter()
                loop(tagger.model, loader, optimizer, scheduler, args.epochs, device, args.amp)
                sync(device)
                if r:
                    times[label].append(time.perf_counter() - t0)
                if r == args.repeats:
                    f1[label] = evaluate_ner(tagger.model, tagger.encode(data.valid), device=device, amp=args.amp)["f1"]
        n_params = sum(p.numel() for p in tagger.model.parameters())

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["fit"] / med["plain"]
    f1_diff = 100 * abs(f1["fit"] - f1["plain"])
    print(json.dumps({
        "benchmark": "ner", "model": name, "params_m": round(n_params / 1e6, 2), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "amp": args.amp,
        "threads": torch.get_num_threads(), "train_sentences": len(data.train), "epochs": args.epochs,
        "batch_size": args.batch_size, "repeats": args.repeats, "plain_s": round(med["plain"], 4),
        "fit_s": round(med["fit"], 4), "ratio": round(ratio, 4), "goal_ratio": 1.05,
        "tokens_per_s_plain": round(tokens / med["plain"]), "tokens_per_s_fit": round(tokens / med["fit"]),
        "dev_f1_plain": round(f1["plain"], 4), "dev_f1_fit": round(f1["fit"], 4), "f1_diff_pt": round(f1_diff, 3),
        "goal_f1_diff_pt": 0.5, "ok": ratio <= 1.05 and f1_diff <= 0.5 and math.isfinite(ratio)}))


if __name__ == "__main__":
    main()
