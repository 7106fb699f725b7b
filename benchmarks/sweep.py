"""Sweep parallelism: 4 trials of a tiny notebook with --workers 2 against the same 4 one after another, and the
fixed cost of one trial (its process, papermill, the kernel start, ftkit's import) measured on trials with no work.

Prints one JSON line: serial and parallel seconds, their ratio (goal <= 0.65 on 2 cores), the fixed cost per
trial (median of the no-work trials' own seconds, and their wall time / trial), the machine's cores and load.
    python benchmarks/sweep.py [--work 150] [--steps 20] [--trials 4] [--repeats 1]
With --repeats R the serial and parallel sweeps alternate (serial first, then parallel first, ...) and the ratio is
the median of the R pairs' ratios, so a load that drifts during the run weighs on both sides.
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
    ap.add_argument("--repeats", type=int, default=1, help="serial/parallel pairs, alternating their order")
    args = ap.parse_args(argv)
    lrs = ",".join(f"{0.01 * (i + 1):g}" for i in range(args.trials))          # one grid point per trial
    busy = [f"lr={lrs}", f"steps={args.steps}", f"work={args.work}"]
    serials, parallels = [], []
    with tempfile.TemporaryDirectory(prefix="ftkit-sweep-bench-") as tmp:
        for r in range(args.repeats):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for workers in order:
                wall, table = timed(busy, workers, os.path.join(tmp, f"w{workers}-{r}"))
                (serials if workers == 1 else parallels).append((wall, table))
        idle, t0 = timed([f"lr={lrs}", "steps=1", "work=0"], 1, os.path.join(tmp, "fixed"))
    t1 = serials[0][1]
    assert all(t.loss.tolist() == t1.loss.tolist() for _, t in serials + parallels)   # the same trials, numbers
    ratios = [p / s for (s, _), (p, _) in zip(serials, parallels)]
    fixed = statistics.median(t0.seconds)
    print(json.dumps({
        "benchmark": "sweep", "trials": args.trials, "work": args.work, "steps": args.steps, "repeats": args.repeats,
        "serial_s": [round(s, 2) for s, _ in serials], "parallel_s": [round(p, 2) for p, _ in parallels],
        "ratio": round(statistics.median(ratios), 3),
        "goal": 0.65, "fixed_cost_per_trial_s": round(fixed, 2), "fixed_wall_per_trial_s": round(idle / args.trials, 2),
        "trial_s_serial_median": round(statistics.median(t1.seconds), 2),
        "cores": len(os.sched_getaffinity(0)), "load_avg_1min": round(os.getloadavg()[0], 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
