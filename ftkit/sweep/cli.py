"""``python -m ftkit sweep NOTEBOOK --param NAME=V1,V2 ... --metric NAME --out DIR``: see :func:`ftkit.sweep.sweep`.

Exit status: 0 when every trial finished (failed trials included: they are results), 2 for a command the sweep
refuses before any trial (a bad option, a parameter the notebook does not have or refuses, a folder another sweep
holds), 130 after Ctrl-C (the study and results.csv stay consistent; the same command resumes)."""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "parser"]

EXAMPLES = """examples:
  python -m ftkit sweep notebooks/06_language_model.ipynb --param lr=1e-3,3e-3 --param n_embd=32,64 \\
      --param max_steps=240 --metric val_loss --workers 2 --out sweeps/lm
  python -m ftkit sweep notebooks/06_language_model.ipynb --param lr=log:1e-4..1e-2 --param n_layer=int:1..4 \\
      --sampler tpe --trials 20 --metric val_loss --out sweeps/lm-tpe
  python -m ftkit sweep NOTEBOOK ... --backend ray --address HEAD_IP:6379 --gpus-per-trial 1

Values are read as notebook parameters: numbers, True/False/None, text, JSON for lists
(--param 'losses=["mse"],["cross_entropy"]' is two choices). The notebook writes output_dir/metrics.json; --metric
names one of its top-level numbers. Run the same command again to resume."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):        # one line that says what was wrong and how to see the options
        self.exit(2, f"ftkit sweep: {message}\n(python -m ftkit sweep --help lists the options)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ftkit sweep", description="Run a notebook over a grid or a search of its "
                "parameters: each trial one papermill run in its own kernel, the study in DIR/study.db.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebook", help="the notebook to run (its parameters cell is what --param sets)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="one value: fixed; several: a grid axis / choice; log:A..B, lin:A..B, int:A..B, intlog:A..B: "
                        "a range (random/tpe). Repeat for each parameter")
    p.add_argument("--metric", required=True, help="a key of the notebook's metrics.json (a number)")
    p.add_argument("--direction", default="min", choices=("min", "max"), help="min (default) or max")
    p.add_argument("--trials", type=int, help="trials in the sweep when done (random/tpe, default 10; grid: a cap)")
    p.add_argument("--sampler", default="grid", choices=("grid", "random", "tpe"), help="default: grid")
    p.add_argument("--workers", type=int, default=1, help="trials at once (default 1)")
    p.add_argument("--threads", type=int, help="CPU threads per trial (default: cores // workers)")
    p.add_argument("--backend", default="local", choices=("local", "ray"), help="local processes (default) or Ray")
    p.add_argument("--address", help="a Ray cluster's address (with --backend ray); default: a local Ray instance")
    p.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs each Ray task reserves (default 0)")
    p.add_argument("--cwd", help="working directory of every trial's kernel (default: this one)")
    p.add_argument("--trial-timeout", type=float, metavar="SECONDS",
                   help="stop a trial that runs longer (kernel start included) and record it failed (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random/TPE sampler (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep folder (study.db, results.csv, trials/)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .space import SweepError
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.param:
        print("ftkit sweep: give at least one --param NAME=V1,V2,...", file=sys.stderr)
        return 2
    from .study import sweep
    try:
        table = sweep(args.notebook, args.param, metric=args.metric, out=args.out, direction=args.direction,
                      trials=args.trials, sampler=args.sampler, workers=args.workers, backend=args.backend,
                      address=args.address, threads=args.threads, gpus_per_trial=args.gpus_per_trial, cwd=args.cwd,
                      seed=args.seed, progress=not args.no_progress, trial_timeout=args.trial_timeout)
    except SweepError as e:
        print(f"ftkit sweep: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ftkit sweep: stopped; {os.path.join(args.out, 'results.csv')} and the study are consistent, "
              "unfinished trials are marked failed (rerun). Run the same command to resume.", file=sys.stderr)
        return 130
    done = table[table.state == "COMPLETE"]
    print(f"{len(done)} of {len(table)} trials complete, {int((table.state == 'FAIL').sum())} failed → "
          f"{os.path.join(args.out, 'results.csv')}")
    if len(done):
        best = done.sort_values(args.metric, ascending=args.direction == "min").iloc[0]
        print(f"best {args.metric} {best[args.metric]:.6g}: trial {int(best['number'])} ({best['notebook']})")
    return 0
