"""Sweep parallelism: 4 trials of a tiny notebook with --workers 2 against the same 4 one after another, and the
fixed cost of one trial (its process, papermill, the kernel start, ftkit's import) measured on trials with no work.

Prints one JSON line: serial and parallel seconds, their ratio (goal <= 0.65 on 2 cores), the fixed cost per
trial (median of the no-work trials' own seconds, and their wall time / trial), the machine's cores and load.
    python benchmarks/sweep.py [--work 150] [--steps 20] [--trials 4]
The tiny notebook (tests/assets/tiny_sweep.ipynb) does ``steps × work`` 200×200 matrix products: real CPU work,
not sleep, so two trials at once really compete for the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ftkit.sweep import sweep  # noqa: E402

TINY = ROOT / "tests" / "assets" / "tiny_sweep.ipynb"


def timed(params, workers, out):
    start = time.perf_counter()
    table = sweep(TINY, params, metric="loss", out=out, workers=workers, progress=False)
    wall = time.perf_counter() - start
    assert (table.state == "COMPLETE").all(), table.error.tolist()
    return wall, table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=int, default=150, help="matrix products per step")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--trials", type=int, default=4)
    args = ap.parse_args(argv)
    lrs = ",".join(f"{0.01 * (i + 1):g}" for i in range(args.trials))          # one grid point per trial
    busy = [f"lr={lrs}", f"steps={args.steps}", f"work={args.work}"]
    with tempfile.TemporaryDirectory(prefix="ftkit-sweep-bench-") as tmp:
        serial, t1 = timed(busy, 1, os.path.join(tmp, "serial"))
        parallel, t2 = timed(busy, 2, os.path.join(tmp, "parallel"))
        idle, t0 = timed([f"lr={lrs}", "steps=1", "work=0"], 1, os.path.join(tmp, "fixed"))
    assert t1.loss.tolist() == t2.loss.tolist()              # the same trials, the same numbers
    fixed = statistics.median(t0.seconds)
    print(json.dumps({
        "benchmark": "sweep", "trials": args.trials, "work": args.work, "steps": args.steps,
        "serial_s": round(serial, 2), "parallel_s": round(parallel, 2), "ratio": round(parallel / serial, 3),
        "goal": 0.65, "fixed_cost_per_trial_s": round(fixed, 2), "fixed_wall_per_trial_s": round(idle / args.trials, 2),
        "trial_s_serial_median": round(statistics.median(t1.seconds), 2),
        "cores": len(os.sched_getaffinity(0)), "load_avg_1min": round(os.getloadavg()[0], 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
