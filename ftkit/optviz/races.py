r"""Optimizer races on 2-D surfaces: paths from one start, basin maps from a grid of starts, rate sweeps.

``race(surface, ["gd", "adam"], start, steps)`` advances every run at once with the batched engine of
:mod:`ftkit.optviz.gd_engine`, which equals ``torch.optim`` (``engine="torch"`` runs one real optimizer per run instead;
``scratch=True`` the from-scratch twins). Options:

* ``noise=σ, seed=…``: each gradient gets :math:`\mathcal N(0, σ^2 I)` added, the model of mini-batch SGD
  (a gradient from a random sample is the full gradient plus zero-mean noise). Every optimizer sees the same draw.
* ``schedule="step" | "cosine"`` (``schedule_options={"step_size": 100, "gamma": 0.5}``): the lr per step,
  as ``torch.optim.lr_scheduler`` StepLR / CosineAnnealingLR (to 0 at the last step) compute it.

A run is cut where it leaves the box ``bound`` × the domain around its centre, or its loss stops being finite;
the path keeps the steps before and ``note`` says where: a diverging run is never drawn as an overflow.

``basins(surface, optimizers, n=16)`` starts every optimizer from an n × n grid and records which minimum each
start settles in (within ``radius``) and after how many steps it stays there: a basin-of-attraction map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .gd_engine import resolve_schedule, resolve_spec, run_batched, run_torch
from ..optim import OPTIMIZERS
from .surfaces import Surface, convergence_rate, make_surface, predicted_rate
from ..utils import check_int, check_number, choose, normalize_name

__all__ = ["OptimizerPath", "BasinMap", "race", "optimizer_path", "basins", "rate_sweep", "tuned_lrs", "ENGINES",
           "TUNING_LRS"]

ENGINES = {"batched": run_batched, "torch": run_torch}


@dataclass
class OptimizerPath:
    """One optimizer's path: ``points (k+1, 2)`` and ``losses (k+1,)`` for steps 0…k.

    A run that leaves the bound box (or whose loss stops being finite) is cut before that step:
    ``diverged`` is set and ``note`` says where.
    """
    label: str
    optimizer: str
    lr: float
    options: dict
    points: np.ndarray
    losses: np.ndarray
    diverged: bool = False
    note: str = ""

    @property
    def steps(self) -> int:
        return len(self.points) - 1

    def steps_to(self, surface: Surface, tol: float | None = None) -> int | None:
        """First step whose point lies within ``tol`` of a minimum, or None."""
        near = np.flatnonzero(surface.distance(self.points) < (surface.tol if tol is None else tol))
        return int(near[0]) if near.size else None


def _check_start(surface: Surface, start) -> tuple[float, float]:
    if start is None:
        x, y = surface.start
    else:
        try:
            x, y = (float(v) for v in start)
        except (TypeError, ValueError):
            raise ValueError(f"start must be a pair of numbers (x, y), got {start!r}") from None
    if not (math.isfinite(x) and math.isfinite(y) and surface.in_domain((x, y))):
        (x0, x1), (y0, y1) = surface.domain
        raise ValueError(f"start ({x:g}, {y:g}) is outside the plotted domain x∈[{x0:g}, {x1:g}], "
                         f"y∈[{y0:g}, {y1:g}] of {surface.name!r}; pick a start inside it")
    with np.errstate(all="ignore"):
        f, fx, fy = (float(np.asarray(v).reshape(-1)[0]) for v in surface.value_and_grad(np.array([x]), np.array([y])))
    if not all(map(math.isfinite, (f, fx, fy))):
        raise ValueError(f"f or its gradient is not finite at the start ({x:g}, {y:g}) of {surface.name!r} "
                         f"(f={f}, ∇f=({fx}, {fy})); pick another start")
    return x, y


def _specs(surface: Surface, runs) -> tuple[list[str], list[tuple], list[dict]]:
    """Labels, engine specs and the user's options for ``runs`` (a name, a list of names or a dict)."""
    if isinstance(runs, str):
        runs = [runs]
    if not isinstance(runs, dict):
        runs = {name: {} for name in runs}
    if not runs:
        raise ValueError("runs is empty; name at least one optimizer, e.g. ['gd', 'adam']")
    labels, specs, user_options = [], [], []
    for label, spec in runs.items():
        spec = dict(spec)
        name, lr = spec.pop("optimizer", label), spec.pop("lr", None)
        if lr is None:
            choose("optimizer", name, OPTIMIZERS)              # an unknown name fails first, listing the choices
            key = normalize_name(name)
            if key not in surface.lr:
                raise ValueError(f"no suggested lr for {name!r} on {surface.name!r}; pass one, e.g. "
                                 f"{{{label!r}: {{'lr': 0.01}}}}")
            lr = surface.lr[key]
        lr = check_number(f"lr of {label!r}", lr, positive=True)
        labels.append(label)
        specs.append(resolve_spec(name, lr, spec))
        user_options.append(spec)
    return labels, specs, user_options


def _advance(surface: Surface, specs, starts, steps, *, engine, scratch, noise, seed, schedule, schedule_options):
    """Run the engine (``points (steps+1, K, S, 2)``, ``losses (steps+1, K, S)``) after checking every knob."""
    run = choose("engine", "torch" if scratch else engine, ENGINES)
    sigma = check_number("noise σ", noise)
    sched = resolve_schedule(schedule, steps, schedule_options)
    draw = None
    if sigma > 0:
        draw = sigma * np.random.default_rng(check_int("seed", seed, minimum=0)).standard_normal((steps, len(starts), 2))
    extra = {"scratch": True} if scratch else {}
    return run(surface.value_and_grad, starts, specs, steps, schedule=sched, noise=draw, **extra)


def _first_bad(surface: Surface, points: np.ndarray, losses: np.ndarray, bound: float):
    """Index of the first step outside the box / non-finite per run (steps+1 where none), the box centre, half."""
    (dx0, dx1), (dy0, dy1) = surface.domain
    centre = np.array([(dx0 + dx1) / 2, (dy0 + dy1) / 2])
    half = bound * np.array([(dx1 - dx0) / 2, (dy1 - dy0) / 2])
    first = np.full(points.shape[1], len(points))
    with np.errstate(invalid="ignore"):
        # one pass for every run (NaN and inf fail `<=`), the step-by-step search only for the runs that fail
        far = np.maximum(points.max(axis=0) - centre, centre - points.min(axis=0))   # (runs, 2)
        suspects = np.flatnonzero(~(far <= half).all(-1) | ~np.isfinite(losses).all(0))
        if suspects.size:
            p, f = points[:, suspects], losses[:, suspects]
            bad = ~np.isfinite(f) | ~(np.abs(p - centre) <= half).all(-1)
            first[suspects] = np.where(bad.any(0), bad.argmax(0), len(points))
    return first, centre, half


def race(fn, runs, start=None, steps: int = 100, *, engine: str = "batched", scratch: bool = False,
         bound: float = 10.0, noise: float = 0.0, seed: int = 0, schedule: str = "constant",
         schedule_options: dict | None = None) -> dict[str, OptimizerPath]:
    """Run several optimizers from the same ``start`` for ``steps`` steps on surface ``fn``.

    ``runs`` is a name, a list of names (each at the surface's suggested lr) or a dict
    ``label -> {"optimizer": name (default: label), "lr": float (default: suggested), **options}`` whose
    options are torch.optim's. ``engine="torch"`` (or ``scratch=True``) steps one real optimizer per run.
    """
    surface = make_surface(fn)
    steps, bound = check_int("steps", steps), check_number("bound", bound, positive=True)
    x0, y0 = _check_start(surface, start)
    labels, specs, user_options = _specs(surface, runs)
    points, losses = _advance(surface, specs, [(x0, y0)], steps, engine=engine, scratch=scratch, noise=noise,
                              seed=seed, schedule=schedule, schedule_options=schedule_options)
    points, losses = points[:, :, 0], losses[:, :, 0]
    first_bad, centre, half = _first_bad(surface, points, losses, bound)
    out = {}
    for i, (label, spec, options) in enumerate(zip(labels, specs, user_options)):
        k = int(first_bad[i])                                  # first bad step (never 0: the start is checked)
        note = ""
        if k <= steps:
            note = (f"{label} diverged: left the box |x-{centre[0]:g}| ≤ {half[0]:g}, |y-{centre[1]:g}| ≤ "
                    f"{half[1]:g} at step {k} (lr={spec.lr:g}); drawn up to step {k - 1}")
        out[label] = OptimizerPath(label, spec.name, spec.lr, options, points[:k, i].copy(), losses[:k, i].copy(),
                                   k <= steps, note)
    return out


def optimizer_path(fn, optimizer_name: str, start=None, lr: float | None = None, steps: int = 100, *,
               scratch: bool = False, **options) -> OptimizerPath:
    """One optimizer's path: ``optimizer_path("booth", "momentum", (-8, -6), lr=0.02, steps=100, momentum=0.9)``."""
    return race(fn, {optimizer_name: {"lr": lr, **options}}, start, steps, scratch=scratch)[optimizer_name]


# --------------------------------------------------------------------------- many starts: basin maps
@dataclass
class BasinMap:
    """Where each start of an ``n × n`` grid ends, per optimizer.

    ``minimum[k, i, j]``: index into ``targets`` of the minimum that optimizer ``labels[k]`` settles in from
    start ``(xs[j], ys[i])`` (−1: settles nowhere within ``radius``, −2: diverged, cut); ``steps[k, i, j]``:
    the step from which it stays within ``radius`` of it (NaN where it settles nowhere).
    """
    labels: list[str]
    xs: np.ndarray
    ys: np.ndarray
    targets: np.ndarray
    minimum: np.ndarray
    steps: np.ndarray
    radius: float
    total_steps: int

    def share(self, label: str) -> dict[int, float]:
        """Share of starts per outcome (minimum index, −1 nowhere, −2 diverged) for one optimizer."""
        m = self.minimum[self.labels.index(label)]
        values, counts = np.unique(m, return_counts=True)
        return {int(v): float(c) / m.size for v, c in zip(values, counts)}


def _targets(surface: Surface, finals: np.ndarray, moved: np.ndarray, radius: float) -> np.ndarray:
    """The surface's minima (and local minima); for a function without any, the settled end points clustered."""
    known = list(surface.minima) + list(surface.local_minima)
    if known:
        return np.array(known, dtype=float)
    found: list[np.ndarray] = []
    for p in finals[moved < radius * 1e-3]:                     # settled: the last step hardly moved
        if not any(np.hypot(*(p - q)) < radius for q in found):
            found.append(p)
    return np.array(found).reshape(-1, 2)


def basins(fn, runs, n: int = 16, steps: int = 300, *, radius: float | None = None, engine: str = "batched",
           bound: float = 10.0, noise: float = 0.0, seed: int = 0, schedule: str = "constant",
           schedule_options: dict | None = None) -> BasinMap:
    """Start every optimizer of ``runs`` (as in :func:`race`) from the centres of an ``n × n`` grid over the
    domain; classify where each run settles. ``radius`` defaults to 2 % of the domain's mean width."""
    surface = make_surface(fn)
    n, steps = check_int("n", n, minimum=2), check_int("steps", steps)
    bound = check_number("bound", bound, positive=True)
    (x0, x1), (y0, y1) = surface.domain
    radius = 0.01 * ((x1 - x0) + (y1 - y0)) if radius is None else check_number("radius", radius, positive=True)
    xs, ys = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n, y0 + (np.arange(n) + 0.5) * (y1 - y0) / n
    gx, gy = np.meshgrid(xs, ys)
    starts = np.c_[gx.ravel(), gy.ravel()]                    # start s = i·n + j is (xs[j], ys[i])
    labels, specs, _ = _specs(surface, runs)
    points, losses = _advance(surface, specs, starts, steps, engine=engine, scratch=False, noise=noise, seed=seed,
                              schedule=schedule, schedule_options=schedule_options)
    K, S = len(specs), len(starts)
    points, losses = points.reshape(steps + 1, K * S, 2), losses.reshape(steps + 1, K * S)
    first_bad, _, _ = _first_bad(surface, points, losses, bound)
    diverged = first_bad <= steps
    finals = points[-1]
    with np.errstate(all="ignore"):
        moved = np.where(diverged, np.inf, np.hypot(*(points[-1] - points[-2]).T))
        targets = _targets(surface, finals[~diverged], moved[~diverged], radius)
        minimum = np.full(K * S, -1)
        settle = np.full(K * S, np.nan)
        if len(targets):
            d_end = np.hypot(*(finals[:, None, :] - targets[None]).transpose(2, 0, 1))   # (R, M)
            nearest = d_end.argmin(1)
            ok = (d_end[np.arange(K * S), nearest] < radius) & ~diverged
            minimum[ok] = nearest[ok]
            # the step from which each settled run stays within radius of its minimum
            goal = targets[nearest]                                             # (R, 2)
            dx, dy = points[..., 0] - goal[:, 0], points[..., 1] - goal[:, 1]   # (steps+1, R) each
            outside = dx * dx + dy * dy >= radius * radius
            last_out = np.where(outside.any(0), steps - outside[::-1].argmax(0), -1)
            settle[ok] = last_out[ok] + 1
    minimum[diverged] = -2
    return BasinMap(labels, xs, ys, targets, minimum.reshape(K, n, n), settle.reshape(K, n, n), radius, steps)


# --------------------------------------------------------------------------- rate sweeps
def rate_sweep(fn, optimizer: str, lrs, steps: int = 300, start=None, tail: float = 0.5,
               **options) -> dict[str, np.ndarray]:
    """Race ``optimizer`` at each lr; return ``lr``, ``predicted`` and ``measured`` rates (of the distance to
    the minimum, over the run's tail; a diverged run is measured up to its cut) and ``diverged`` flags."""
    surface = make_surface(fn)
    lrs = np.asarray(lrs, dtype=float)
    runs = race(surface, {str(i): {"optimizer": optimizer, "lr": float(lr), **options} for i, lr in enumerate(lrs)},
                start, steps)
    measured = []
    for path in runs.values():
        try:
            measured.append(convergence_rate(surface.distance(path.points), tail))
        except ValueError:                                    # cut after < 4 steps: too short to fit
            measured.append(np.nan)
    return {"lr": lrs, "predicted": np.array([predicted_rate(surface, optimizer, lr, **options) for lr in lrs]),
            "measured": np.array(measured), "diverged": np.array([p.diverged for p in runs.values()])}


# --------------------------------------------------------------------------- a fair lr for each optimizer
TUNING_LRS = tuple(float(f"{10 ** e:.3g}") for e in np.arange(-4, 1.001, 0.25))   # 1e-4 … 10, quarter decades


def tuned_lrs(fn, runs, start=None, steps: int = 300, *, lrs=TUNING_LRS, **options) -> dict[str, float]:
    r"""Each run's best learning rate on a log grid: the lr whose path ends lowest, :math:`f_T - f_{\text{best}}`
    counted as 0 below :math:`10^{-10}` (:math:`f_{\text{best}}`: the lowest loss any run of the sweep reached); ties
    go to the fastest, the lowest mean of :math:`\log_{10}(f_t - f_{\text{best}} + 10^{-12})` over the steps. Diverged
    runs are never chosen.

    ``runs`` as in :func:`race` (each run's own lr is ignored, its other options kept); ``options``: :func:`race`'s
    (noise, seed, schedule, ...). One batched race of ``len(runs) × len(lrs)`` runs.
    """
    surface = make_surface(fn)
    lrs = [check_number("lrs", lr, positive=True) for lr in lrs]
    labels, _, user_options = _specs(surface, runs)
    names = [(dict(runs[label]).get("optimizer", label) if isinstance(runs, dict) else label) for label in labels]
    sweep = {f"{label}@{i}": {**opts, "optimizer": name, "lr": lr}
             for label, name, opts in zip(labels, names, user_options) for i, lr in enumerate(lrs)}
    paths = race(surface, sweep, start, steps, **{"engine": "batched", **options})
    finite = [p.losses[np.isfinite(p.losses)] for p in paths.values() if not p.diverged]
    best = min((float(f.min()) for f in finite if f.size), default=0.0)
    out = {}
    for label in labels:
        scores = []
        for i in range(len(lrs)):
            p = paths[f"{label}@{i}"]
            with np.errstate(all="ignore"):
                gap = np.maximum(p.losses - best, 0)
                final = float(gap[-1]) if gap[-1] > 1e-10 else 0.0
                score = (final, float(np.mean(np.log10(gap + 1e-12))))
            scores.append((np.inf, np.inf) if p.diverged or not all(map(np.isfinite, score)) else score)
        if min(scores)[0] == np.inf:
            raise ValueError(f"{label} diverged at every lr from {lrs[0]:g} to {lrs[-1]:g} on {surface.name!r}; "
                             "pick a start nearer a minimum or fewer steps")
        out[label] = lrs[min(range(len(lrs)), key=scores.__getitem__)]
    return out
