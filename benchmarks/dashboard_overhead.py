"""The training dashboard's cost: fit() with a TrainingDashboard (readout, slider sync and the live figure
redrawn every ``every_ms``) versus plain fit(), same SimpleCNN, data and seed, alternated in one run.

``--path widget`` (default): the figure is a plotly FigureWidget. ``--path static``: the path without widget
JavaScript (Colab, classic Notebook): a plain figure whose whole JSON is sent through a display handle (here a
sink that serializes it, as the kernel would), paced by its own cost; the sends run in the training thread
here, the worst case (``fit_live`` sends from the cell's thread).

Prints one JSON line: the median time ratio dashboard/plain of the training (goal <= 1.03), the share of the
dashboard run spent inside the dashboard's own callbacks (``hooks_share``: what the ratio measures, without the
noise of a shared machine), both final losses (must match: the dashboard only watches), the median cost of one
figure redraw and of building the dashboard (once per cell, timed apart). Outside a kernel the widgets send no
messages, so this is the Python-side cost.
    python benchmarks/dashboard_overhead.py [--n 2048] [--batch-size 64] [--repeats 5] [--every-ms 500]
                                            [--path widget|static]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.data import synthetic
from ftkit.models import SimpleCNN
from ftkit.plots.training import training_figure
from ftkit.ui.live import LiveFigure
from ftkit.ui import TrainingDashboard


def run(x, y, batch_size, epochs, dashboard=None):
    ftkit.seed_everything(0)
    model = SimpleCNN()
    opt = ftkit.make_optimizer("sgd", model, lr=0.05, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    history = ftkit.fit(model, loader, "cross_entropy", opt, epochs, device="cpu", progress=False,
                        callbacks=[dashboard] if dashboard else [])
    return history.steps[-1]["loss"]


class TimedView(LiveFigure):
    """A live FigureWidget (as in a notebook) that records how long each redraw takes."""
    durations: list = []

    def update(self, draw, force=False):
        t0 = time.perf_counter()
        done = super().update(draw, force)
        if done:
            TimedView.durations.append(time.perf_counter() - t0)
        return done


class Sink:
    """A display handle that serializes what it is sent (the kernel's cost of one display update)."""

    def update(self, obj, raw=False):
        json.dumps(obj)


HOOKS = ("on_fit_start", "on_batch_start", "on_batch_end", "on_epoch_end", "on_fit_end")
hook_seconds: list = []   # per dashboard run: time spent inside its callbacks (robust to a loaded machine)


def dashboard(every_ms, path="widget"):
    dash = TrainingDashboard(every_ms=every_ms)
    dash.view = TimedView(training_figure(ftkit.History(), ("loss",)), every_ms, live=True, path=path)  # as in a kernel
    if path == "static":
        dash.view.handle = Sink()
    hook_seconds.append(0.0)

    def timed(hook):
        def run_hook(state):
            t0 = time.perf_counter()
            hook(state)
            hook_seconds[-1] += time.perf_counter() - t0
        return run_hook
    for name in HOOKS:
        setattr(dash, name, timed(getattr(dash, name)))
    return dash


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--every-ms", type=int, default=500)
    ap.add_argument("--path", choices=("widget", "static"), default="widget")
    args = ap.parse_args()
    x, y = synthetic.image_classification(args.n)
    times, losses, built = {"plain": [], "dashboard": []}, {}, []
    for r in range(args.repeats + 1):  # alternate; round 0 is a warm-up
        for name in (("plain", "dashboard") if r % 2 else ("dashboard", "plain")):
            t0 = time.perf_counter()
            dash = dashboard(args.every_ms, args.path) if name == "dashboard" else None   # built once per cell, timed apart
            t1 = time.perf_counter()
            losses[name] = run(x, y, args.batch_size, args.epochs, dash)
            if r:
                times[name].append(time.perf_counter() - t1)
                built += [t1 - t0] if dash else []
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"benchmark": "dashboard_overhead", "model": "SimpleCNN", "images": args.n,
                      "batch_size": args.batch_size, "every_ms": args.every_ms, "path": args.path, "threads": torch.get_num_threads(),
                      "plain_s": round(med["plain"], 4), "dashboard_s": round(med["dashboard"], 4),
                      "ratio": round(med["dashboard"] / med["plain"], 4), "goal": 1.05 if args.path == "static" else 1.03,
                      "hooks_share": round(statistics.median(hook_seconds[1:]) / med["dashboard"], 4),
                      "redraw_ms_median": round(1000 * statistics.median(TimedView.durations), 2),
                      "build_s_median": round(statistics.median(built), 3),
                      "redraws": len(TimedView.durations), "final_loss_plain": losses["plain"],
                      "final_loss_dashboard": losses["dashboard"],
                      "losses_match": losses["plain"] == losses["dashboard"]}))


if __name__ == "__main__":
    main()
