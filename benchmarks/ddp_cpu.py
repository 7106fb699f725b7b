"""fit() on 2 CPU processes (gloo, through ftkit.launch) against 1 process, same model, data and global batch.

Prints one JSON line: images/s of the timed epoch for 2 processes × 1 thread, 1 process × 2 threads and
1 process × 1 thread; ``ratio`` = 2 processes ÷ the faster 1-process setting (the best one process does on the same
cores), and the final losses (they agree to float rounding: the 2-process run is the 1-process run, split).
Repeats alternate the order.

    python benchmarks/ddp_cpu.py [--n 1024] [--batch-size 64] [--repeats 3]

On a 2-core machine there is no third core for the gloo all-reduce and the launcher, and the cores are shared
with whatever else runs: expect a ratio near or below 1. The point of the multi-process path is several GPUs
(or machines); this benchmark shows what the synchronisation costs, honestly.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.data import synthetic
from ftkit.models import SimpleCNN


def train(n, batch_size, threads=None):
    """Epoch 1 warms up, epoch 2 is timed (from the History's epoch row). Returns (images/s, final loss)."""
    if threads is not None:
        torch.set_num_threads(threads)
    ftkit.seed_everything(0)
    x, y = synthetic.image_classification(n)
    model = SimpleCNN()
    opt = ftkit.make_optimizer("sgd", model, lr=0.01, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    with contextlib.redirect_stdout(sys.stderr):
        history = ftkit.fit(model, loader, "cross_entropy", opt, 2, device="cpu", progress=False)
    return n / history.epochs[-1]["time"], history.steps[-1]["loss"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=64, help="the global batch (each of 2 processes takes half)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = {
        "one_process_2_threads": lambda: train(args.n, args.batch_size, threads=2),
        "two_processes_1_thread": lambda: ftkit.launch(train, args.n, args.batch_size, 1, num_processes=2,
                                                       device="cpu"),
        "one_process_1_thread": lambda: train(args.n, args.batch_size, threads=1),
    }
    speed, loss, wall = {k: [] for k in runs}, {}, {k: [] for k in runs}
    with contextlib.redirect_stdout(sys.stderr):
        ftkit.launch(train, 128, args.batch_size, 1, num_processes=2, device="cpu")   # warm-up: imports, fork
        for r in range(args.repeats):
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                t0 = time.perf_counter()
                images_per_s, loss[name] = runs[name]()
                wall[name].append(time.perf_counter() - t0)
                speed[name].append(images_per_s)
    med = {k: statistics.median(v) for k, v in speed.items()}
    best_one = max(med["one_process_2_threads"], med["one_process_1_thread"])   # the best 1 process does here
    print(json.dumps({
        "benchmark": "ddp_cpu", "model": "SimpleCNN", "data": f"synthetic.image_classification({args.n}), 32x32",
        "global_batch": args.batch_size, "cores": os.cpu_count(), "repeats": args.repeats,
        "images_per_s": {k: round(v) for k, v in med.items()},
        "wall_s_median": {k: round(statistics.median(v), 2) for k, v in wall.items()},
        "ratio": round(med["two_processes_1_thread"] / best_one, 3),
        "ratio_vs_1_thread": round(med["two_processes_1_thread"] / med["one_process_1_thread"], 3),
        "final_loss": {k: round(v, 6) for k, v in loss.items()},
        "note": "2 cores shared with other jobs; the timed epoch excludes start-up (wall_s includes it)",
    }))


if __name__ == "__main__":
    main()
