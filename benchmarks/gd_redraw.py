"""One explorer redraw: race 6 real torch.optim optimizers × N steps and swap the figure's data in place.

    python benchmarks/gd_redraw.py [--steps 300] [--repeats 15] [--function rosenbrock]

Contenders, alternated, same figure update for both:
* ``ftkit``: :func:`ftkit.surfaces.race`: one (6, 2) float64 tensor, each optimizer owning a leaf view of its
  row, one closed-form NumPy gradient call per step for all rows, records written into preallocated arrays.
* ``naive``: per optimizer its own parameter, autograd forward/backward per step, ``.tolist()``/``.item()``.
``optim_share`` (a separate, instrumented pass) is the share of the ftkit redraw spent inside
``optimizer.step()``: the floor no batching can remove, since torch.optim steps one optimizer per call.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from unittest import mock

import numpy as np
import plotly.graph_objects as go
import torch

import ftkit.surfaces as surfaces
from ftkit.optim import make_optimizer
from ftkit.plots.surfaces import surface_figure, update_surface_figure

OPTIMIZERS = ("gd", "momentum", "nesterov", "rmsprop", "adam", "adamw")


def naive_race(surface, start, steps) -> dict[str, surfaces.OptimizerPath]:
    """The textbook loop: zero_grad, forward, backward, step, record — per optimizer, per step."""
    out = {}
    for name in OPTIMIZERS:
        p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        opt = make_optimizer(name, [p], lr=surface.lr[name])
        points, losses = [], []
        for _ in range(steps + 1):
            opt.zero_grad()
            loss = surface(p[0], p[1])
            points.append(p.detach().tolist())
            losses.append(loss.item())
            loss.backward()
            opt.step()
        out[name] = surfaces.OptimizerPath(name, name, surface.lr[name], {}, np.array(points[:steps + 1]),
                                        np.array(losses[:steps + 1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--function", default="rosenbrock")
    args = ap.parse_args()
    torch.set_num_threads(1)

    surface = surfaces.make_surface(args.function)
    try:
        fig = surface_figure(surface, labels=OPTIMIZERS, show_3d=True, figure_cls=go.FigureWidget)
        figure_kind = "FigureWidget"
    except ImportError:                                    # no anywidget: a plain figure takes the same updates
        fig = surface_figure(surface, labels=OPTIMIZERS, show_3d=True)
        figure_kind = "Figure"

    def redraw(run):
        trajectories = run()
        update_surface_figure(fig, surface, trajectories, with_surface=False)
        return trajectories

    contenders = {"ftkit": lambda: surfaces.race(surface, list(OPTIMIZERS), surface.start, args.steps),
                  "naive": lambda: naive_race(surface, surface.start, args.steps)}
    a, b = redraw(contenders["ftkit"]), redraw(contenders["naive"])   # warm-up; also: both give the same paths
    max_diff = max(float(np.abs(a[k].points - b[k].points).max()) for k in OPTIMIZERS)
    times = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():                           # alternate the two
            t0 = time.perf_counter()
            redraw(run)
            times[name].append(time.perf_counter() - t0)

    in_step = [0.0]

    def timed_factory(*a, **kw):
        opt = make_optimizer(*a, **kw)
        step = opt.step

        def timed_step(*sa, **skw):
            t0 = time.perf_counter()
            out = step(*sa, **skw)
            in_step[0] += time.perf_counter() - t0
            return out
        opt.step = timed_step
        return opt

    shares = []
    with mock.patch.object(surfaces, "make_optimizer", timed_factory):
        for _ in range(max(3, args.repeats // 3)):
            in_step[0] = 0.0
            t0 = time.perf_counter()
            redraw(contenders["ftkit"])
            shares.append(in_step[0] / (time.perf_counter() - t0))

    median, baseline = statistics.median(times["ftkit"]) * 1e3, statistics.median(times["naive"]) * 1e3
    print(json.dumps({
        "benchmark": "gd_redraw", "function": surface.name, "optimizers": len(OPTIMIZERS), "steps": args.steps,
        "repeats": args.repeats, "figure": figure_kind, "median_ms": round(median, 1),
        "baseline_naive_median_ms": round(baseline, 1), "speedup_vs_naive": round(baseline / median, 2),
        "optim_share": round(statistics.median(shares), 3),
        "optim_step_us": round(statistics.median(shares) * median * 1e3 / (len(OPTIMIZERS) * args.steps), 1),
        "target_ms": 50, "meets_target": median <= 50, "paths_max_abs_diff": max_diff,
        "torch": torch.__version__, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
