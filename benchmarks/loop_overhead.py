"""fit() versus a hand-written PyTorch loop: same SimpleCNN, data, optimizer and seed, alternated in one run.

Prints one JSON line: the median time ratio fit/plain (goal <= 1.03) and both final losses (must match).
    python benchmarks/loop_overhead.py [--n 2048] [--batch-size 64] [--repeats 5]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.data import synthetic
from ftkit.models import SimpleCNN


def make(seed, x, y, batch_size):
    ftkit.seed_everything(seed)
    model = SimpleCNN()
    opt = ftkit.make_optimizer("sgd", model, lr=0.05, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    return model, opt, loader


def plain(x, y, batch_size, epochs, seed):
    model, opt, loader = make(seed, x, y, batch_size)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for inputs, targets in loader:
            loss = loss_fn(model(inputs), targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = loss.item()  # a real loop logs the loss
    return last


def with_fit(x, y, batch_size, epochs, seed):
    model, opt, loader = make(seed, x, y, batch_size)
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
        history = ftkit.fit(model, loader, "cross_entropy", opt, epochs, device="cpu")  # default callbacks
    return history.steps[-1]["loss"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    x, y = synthetic.image_classification(args.n)
    times = {"plain": [], "fit": []}
    losses = {}
    for r in range(args.repeats + 1):  # alternate; round 0 is a warm-up
        for name, fn in (("plain", plain), ("fit", with_fit)) if r % 2 else (("fit", with_fit), ("plain", plain)):
            t0 = time.perf_counter()
            losses[name] = fn(x, y, args.batch_size, args.epochs, seed=0)
            if r:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"benchmark": "loop_overhead", "model": "SimpleCNN", "images": args.n, "batch_size": args.batch_size,
                      "epochs": args.epochs, "threads": torch.get_num_threads(), "plain_s": round(med["plain"], 4),
                      "fit_s": round(med["fit"], 4), "ratio": round(med["fit"] / med["plain"], 4), "goal": 1.03,
                      "final_loss_plain": losses["plain"], "final_loss_fit": losses["fit"],
                      "losses_match": abs(losses["plain"] - losses["fit"]) <= 1e-6}))


if __name__ == "__main__":
    main()
