"""One explorer redraw on the batched engine versus the torch.optim path, both timed in the same run.

    python benchmarks/gd_redraw.py [--steps 300] [--repeats 15] [--starts 16] [--function himmelblau]

Two redraws, each = race + in-place figure update (a FigureWidget when anywidget is there):
* ``paths``: 6 optimizers (gd, momentum, nesterov, rmsprop, adam, adamw) × ``steps`` from one start, the
  path/loss/3-D figure updated (goal: median ≤ 50 ms).
* ``basins``: the same 6 optimizers × ``starts²`` starts × ``steps``, the basin-map figure updated
  (goal: median ≤ 150 ms for 16² = 256 starts).
Contenders, alternated: ``engine="batched"`` (ftkit.optviz.gd_engine: every run in one (runs, 2) array) and
``engine="torch"`` (one real torch.optim optimizer per run, the reference the tests compare with). The torch
basin redraw (1,536 optimizers) takes tens of seconds, so it is timed ``--torch-basin-repeats`` times (default 1).
``max_abs_diff`` checks that both paths drew the same thing. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import torch  # noqa: E402

from ftkit.plots.descent import basin_figure, surface_figure, update_basin_figure, update_surface_figure  # noqa: E402
from ftkit.optviz.races import basins, race  # noqa: E402
from ftkit.optviz.surfaces import make_surface  # noqa: E402

OPTIMIZERS = ("gd", "momentum", "nesterov", "rmsprop", "adam", "adamw")


def _figure(make, **kw):
    try:
        return make(figure_cls=go.FigureWidget, **kw), "FigureWidget"
    except ImportError:                                    # no anywidget: a plain figure takes the same updates
        return make(**kw), "Figure"


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--starts", type=int, default=16, help="basin grid: starts × starts per optimizer")
    ap.add_argument("--function", default="himmelblau")
    ap.add_argument("--torch-basin-repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)

    surface = make_surface(args.function)
    paths_fig, kind = _figure(surface_figure, surface=surface, labels=OPTIMIZERS, show_3d=True)
    basins_fig, _ = _figure(basin_figure, labels=OPTIMIZERS)

    def paths(engine):
        result = race(surface, list(OPTIMIZERS), surface.start, args.steps, engine=engine)
        update_surface_figure(paths_fig, surface, result, with_surface=False)
        return result

    def basin_map(engine):
        result = basins(surface, list(OPTIMIZERS), args.starts, args.steps, engine=engine)
        update_basin_figure(basins_fig, result)
        return result

    a, b = paths("batched"), paths("torch")                # warm-up; and: both draw the same paths
    path_diff = max(float(np.abs(a[k].points - b[k].points).max()) for k in OPTIMIZERS)
    times = {"batched": [], "torch": []}
    for _ in range(args.repeats):                          # alternate the two
        for engine in times:
            times[engine] += _time(lambda: paths(engine), 1)

    basin_batched = basin_map("batched")
    basin_times = {"batched": _time(lambda: basin_map("batched"), args.repeats)}
    t0 = time.perf_counter()
    basin_torch = basin_map("torch")
    basin_times["torch"] = [time.perf_counter() - t0] + _time(lambda: basin_map("torch"),
                                                              max(args.torch_basin_repeats - 1, 0))
    same_basins = bool(np.array_equal(basin_batched.minimum, basin_torch.minimum))

    ms = lambda v: round(statistics.median(v) * 1e3, 1)  # noqa: E731
    paths_ms, basins_ms = ms(times["batched"]), ms(basin_times["batched"])
    print(json.dumps({
        "benchmark": "gd_redraw", "function": surface.name, "optimizers": len(OPTIMIZERS), "steps": args.steps,
        "repeats": args.repeats, "figure": kind,
        "paths_median_ms": paths_ms, "paths_torch_optim_median_ms": ms(times["torch"]),
        "paths_speedup": round(ms(times["torch"]) / paths_ms, 1), "paths_target_ms": 50,
        "paths_meets_target": paths_ms <= 50, "paths_max_abs_diff": path_diff,
        "basin_starts": args.starts ** 2, "basins_median_ms": basins_ms,
        "basins_torch_optim_median_ms": ms(basin_times["torch"]), "basins_torch_repeats": len(basin_times["torch"]),
        "basins_speedup": round(ms(basin_times["torch"]) / basins_ms, 1), "basins_target_ms": 150,
        "basins_meets_target": basins_ms <= 150, "basins_same_minima": same_basins,
        "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
