r"""Loss landscapes around a trained network (Li et al. 2018; Goodfellow et al. 2015).

A network's weights :math:`θ` are a point in millions of dimensions; we look at the loss along one or two
directions through the trained weights :math:`θ^*`:

* 1-D slice        :math:`L(θ^* + αδ)`, and 2-D grid :math:`L(θ^* + αδ + βη)` (:func:`loss_slice`, :func:`loss_surface`).
* interpolation    :math:`L\big((1-α)θ_0 + αθ_1\big)` between two weight sets, e.g. init → trained (:func:`interpolate`).
* trajectory       weights recorded during ``fit``, projected on two PCA directions: :mod:`ftkit.optviz.trajectory`.

**Directions** :math:`δ, η` are filter-normalized Gaussians (Li et al.; biases and norm-layer parameters stay
at their trained values by default): :mod:`ftkit.optviz.directions`.

**BatchNorm** (the policy): buffers (BatchNorm running mean/variance) are never perturbed, and the model is
evaluated in **eval mode** (``eval_mode=True``), so BatchNorm uses its trained running statistics and the loss of a point does not depend on the batching. After a
short run those statistics are an average over weights that have since moved; :func:`recalibrate_batchnorm`
recomputes them at the trained weights first (so eval mode sees the network that was trained).

**Batched evaluation**: each grid point is a full set of weights; ``torch.func.functional_call`` + ``vmap``
runs a chunk of points on the same images in one call (``method="vmap"``), a plain Python loop over points
(``method="loop"``) gives the same numbers. ``"auto"`` uses vmap and falls back to the loop where vmap cannot
run (a train-mode BatchNorm, an op without a batching rule). The loss of a point is the mean over the images
(``loss_fn`` must reduce by the mean); non-finite losses are stored as NaN (gaps in the figures).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from ..losses import make_loss
from ..core import eval_mode as _eval_mode
from ..utils import check_int
from .directions import Params, check_direction, parameters_of, random_direction

__all__ = ["Landscape", "check_data", "evaluate_points", "loss_slice", "loss_surface", "interpolate",
           "slices_over_seeds", "grid_levels", "progressive_surface", "recalibrate_batchnorm"]


@dataclass
class Landscape:
    """Losses on a 1-D or 2-D grid: ``losses[j, i]`` is the loss at ``(x[i], y[j])`` (1-D: ``losses[i]``)."""
    x: np.ndarray
    y: np.ndarray | None
    losses: np.ndarray
    method: str
    seconds: float

    @property
    def center(self) -> float:
        """Loss at the grid point closest to the origin (the unperturbed weights)."""
        i = int(np.abs(self.x).argmin())
        return float(self.losses[i] if self.y is None else self.losses[int(np.abs(self.y).argmin()), i])

    @property
    def points_per_s(self) -> float:
        return self.losses.size / self.seconds


# --------------------------------------------------------------------------- evaluation
def check_data(data) -> None:
    """``data`` must be ``(inputs, targets)``: two tensors with as many rows, at least one."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)):
        got = type(data).__name__ + (f" of {len(data)} items" if isinstance(data, (tuple, list)) else "")
        raise TypeError(f"data must be a tuple (inputs, targets) of tensors, e.g. the images and labels of a fixed "
                        f"subset (from a DataLoader: next(iter(loader))), got {got}")
    if len(data[0]) != len(data[1]) or len(data[0]) == 0:
        raise ValueError(f"data needs as many targets as inputs and at least one of each, got {len(data[0])} "
                         f"inputs and {len(data[1])} targets")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> int:
    """Recompute every BatchNorm layer's running mean/variance at the current weights: the plain average over
    ``inputs`` (batches of ``batch_size``, in train mode, no gradient), instead of the exponential average over the
    weights training went through. The model's mode and momenta come back afterwards. Returns the layers reset."""
    check_int("batch_size", batch_size, meaning=" (images per forward pass)")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(inputs) == 0:
        return 0
    was_training, momenta = model.training, [m.momentum for m in norms]
    device = next(model.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                          # None: a cumulative (plain) average over the batches
    try:
        model.train()
        for x in inputs.split(batch_size):
            model(x.to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


MAX_SPAN = 1e4  # grid coefficients beyond this are no landscape: weights ×10⁴ overflow the logits


def _axis(name: str, span, resolution) -> np.ndarray:
    resolution = check_int(f"{name} resolution", resolution, 2, " (points along the axis)")
    try:
        lo, hi = (float(v) for v in span)
    except (TypeError, ValueError):
        raise ValueError(f"{name} range must be two numbers (min, max), got {span!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name} range must have min < max (both finite), got ({lo:g}, {hi:g}); e.g. (-1, 1)")
    if max(abs(lo), abs(hi)) > MAX_SPAN:
        raise ValueError(f"{name} range ({lo:g}, {hi:g}) reaches beyond ±{MAX_SPAN:g}: the directions have the size "
                         "of the weights themselves (filter normalization), so ±1 already moves every filter by its "
                         "own norm, and this far out float32 overflows (the losses would be NaN); use e.g. (-1, 1)")
    return np.linspace(lo, hi, int(resolution))


def _has_train_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


TRAIN_BN_MESSAGE = (
    "the model has BatchNorm layers in training mode: they normalize with each batch's statistics and update "
    "their running mean/variance in place, which torch.func.vmap cannot batch over grid points. Use "
    "eval_mode=True (the default: BatchNorm uses its trained running statistics, the usual choice for loss "
    "landscapes) or method='loop' (one point at a time; the running statistics are restored afterwards)")


def evaluate_points(model: nn.Module, loss_fn, data, origin: Params, directions: list[Params], coords,
                    *, method: str = "auto", batch_size: int = 512, chunk_size: int | None = None,
                    eval_mode: bool = True, verbose: bool = True) -> tuple[np.ndarray, str]:
    r"""Mean loss over ``data = (inputs, targets)`` at :math:`θ_p = θ_0 + \sum_k c_{pk} d_k` for every row of ``coords``.

    Returns ``(losses, method used)``. ``chunk_size`` points share one vmap call. Default: about 16384 images
    per call on CUDA (a GPU needs big calls to stay busy: ≥ 0.9× a plain forward's images/s on an H100) and
    128 on CPU (a CPU is busy with one batch already; bigger calls only add memory traffic and run slower).
    ``verbose`` prints the estimated time (points × the time per point measured on the first chunk) before the
    rest is computed.
    """
    if method not in ("auto", "vmap", "loop"):
        raise ValueError(f"unknown method {method!r}; choose one of: auto, loop, vmap")
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, meaning=" (grid points per vmap call) or None for the default")
    check_int("batch_size", batch_size, meaning=" (images per forward pass)")
    check_data(data)
    loss_fn = make_loss(loss_fn)
    check_direction(origin, parameters_of(model), "the origin")
    for k, d in enumerate(directions):
        check_direction(d, origin, f"direction {k}")
    device = next(model.parameters()).device
    origin = {n: w.to(device) for n, w in origin.items()}
    directions = [{n: d[n].to(origin[n]) for n in origin} for d in directions]
    coords = torch.as_tensor(np.asarray(coords, dtype=np.float64)).reshape(-1, len(directions))
    bs = max(1, min(int(batch_size), len(data[0])))
    batches = [(x.to(device), y.to(device)) for x, y in zip(data[0].split(bs), data[1].split(bs))]
    n_images = len(data[0])

    # parameters no direction moves stay unbatched (one copy shared by every point)
    moving = [n for n in origin if any(bool(d[n].any()) for d in directions)]
    fixed = {n: w for n, w in origin.items() if n not in moving}
    stacked = {n: torch.stack([d[n].reshape(-1) for d in directions]) for n in moving}  # k × numel

    def params_at(c: torch.Tensor) -> Params:  # c: P × k coefficients
        c = c.to(device, torch.float32)
        return {n: origin[n] + (c @ stacked[n]).view(len(c), *origin[n].shape) for n in moving}

    guard = _eval_mode(model, eval_mode, keep_buffers=True)   # BN on running stats; buffers restored at the end
    guard.__enter__()
    requested = method
    if method == "vmap" and _has_train_bn(model):
        raise ValueError(TRAIN_BN_MESSAGE)
    if method == "auto":
        method = "loop" if _has_train_bn(model) else "vmap"
    chunk = max(1, (16384 if device.type == "cuda" else 128) // bs) if chunk_size is None else chunk_size

    def forward(p, x):
        return functional_call(model, {**fixed, **p}, (x,))

    vmap_loss = True

    def chunk_losses_vmap(c):
        nonlocal vmap_loss
        p = params_at(c)
        total = torch.zeros(len(c), dtype=torch.float64, device=device)
        for x, y in batches:
            out = vmap(forward, in_dims=(0, None))(p, x)
            if vmap_loss:
                try:
                    per_point = vmap(loss_fn, in_dims=(0, None))(out, y)
                except (RuntimeError, ValueError, TypeError):  # data-dependent checks/masks: loop over points
                    vmap_loss = False
            if not vmap_loss:
                per_point = torch.stack([loss_fn(o, y) for o in out])
            total += per_point.double() * len(x)
        return total / n_images

    def chunk_losses_loop(c):
        out = torch.zeros(len(c), dtype=torch.float64, device=device)
        for i in range(len(c)):
            p = {n: w[0] for n, w in params_at(c[i:i + 1]).items()}
            out[i] = sum(loss_fn(forward(p, x), y).double() * len(x) for x, y in batches) / n_images
        return out

    losses, t0 = [], time.perf_counter()
    try:
        with torch.no_grad():
            start = 0
            while start < len(coords):
                c = coords[start:start + (chunk if method == "vmap" else 1)]
                try:
                    losses.append((chunk_losses_vmap if method == "vmap" else chunk_losses_loop)(c).cpu())
                except RuntimeError as e:
                    if method != "vmap" or start:
                        raise
                    why = str(e).splitlines()[0]
                    if requested == "vmap":
                        raise RuntimeError(f"vmap could not run this model ({why}); use method='loop'") from e
                    warnings.warn(f"vmap could not run this model ({why}); using the plain loop over grid points",
                                  RuntimeWarning, stacklevel=2)
                    method, t0 = "loop", time.perf_counter()
                    continue
                if start == 0 and verbose:
                    per_point = (time.perf_counter() - t0) / len(c)
                    print(f"ftkit.optviz.landscape: {len(coords)} points × {1e3 * per_point:.2f} ms/point ≈ "
                          f"{per_point * len(coords):.1f} s ({method}, {n_images} images per point)")
                start += len(c)
    finally:
        guard.__exit__(None, None, None)
    losses = torch.cat(losses).numpy()
    _check_finite(losses, coords)
    return np.where(np.isfinite(losses), losses, np.nan), method


def _check_finite(losses: np.ndarray, coords: torch.Tensor) -> None:
    """Non-finite losses become NaN (gaps in a figure) — said once, with where and what to change; none finite
    at all is an error (a figure of nothing)."""
    bad = ~np.isfinite(losses)
    if not bad.any():
        return
    reach = float(coords.abs().max())
    fix = (f"the grid reaches coefficient {reach:.3g}, where the weights overflow: use a smaller span, e.g. (-1, 1)"
           if reach > 1e3 else "the model or loss overflows there: try a smaller span or check the model")
    if bad.all():
        raise ValueError(f"every one of the {len(losses)} grid points gave a non-finite loss (inf/NaN); {fix}")
    warnings.warn(f"{int(bad.sum())} of {len(losses)} grid points gave a non-finite loss and are NaN (gaps in the "
                  f"figure); {fix}", RuntimeWarning, stacklevel=3)


def loss_slice(model: nn.Module, loss_fn, data, direction: Params, span=(-1.0, 1.0), resolution: int = 41,
               **options) -> Landscape:
    """1-D slice :math:`L(θ^* + αδ)` for α in ``span`` (``options``: see :func:`evaluate_points`)."""
    alphas = _axis("slice", span, resolution)
    t0 = time.perf_counter()
    losses, method = evaluate_points(model, loss_fn, data, parameters_of(model), [direction], alphas, **options)
    return Landscape(alphas, None, losses, method, time.perf_counter() - t0)


def loss_surface(model: nn.Module, loss_fn, data, directions: tuple[Params, Params], span=(-1.0, 1.0),
                 resolution=21, yspan=None, **options) -> Landscape:
    """2-D grid :math:`L(θ^* + αδ + βη)`; ``resolution`` is one number or ``(nx, ny)``, ``yspan`` defaults to ``span``."""
    if not (isinstance(directions, (tuple, list)) and len(directions) == 2):
        raise ValueError("directions must be a pair (δ, η), e.g. random_directions(model, seed)")
    nx, ny = resolution if isinstance(resolution, (tuple, list)) else (resolution, resolution)
    alphas, betas = _axis("x", span, nx), _axis("y", span if yspan is None else yspan, ny)
    coords = np.stack(np.meshgrid(alphas, betas), -1).reshape(-1, 2)  # row j = β_j, column i = α_i
    t0 = time.perf_counter()
    losses, method = evaluate_points(model, loss_fn, data, parameters_of(model), list(directions), coords,
                                     **options)
    return Landscape(alphas, betas, losses.reshape(ny, nx), method, time.perf_counter() - t0)


def interpolate(model: nn.Module, theta0, theta1, loss_fn, data, span=(-0.5, 1.5), resolution: int = 41,
                **options) -> Landscape:
    """Goodfellow's line :math:`L\big((1-α)θ_0 + αθ_1\big) = L\big(θ_0 + α(θ_1-θ_0)\big)`; α=0 is θ₀, α=1 is θ₁.

    ``theta0``/``theta1``: models or parameter dicts shaped like ``model``'s (its buffers are used for both).
    """
    alphas = _axis("interpolation", span, resolution)
    p0, p1 = parameters_of(theta0), parameters_of(theta1)
    check_direction(p1, p0, "theta1")
    t0 = time.perf_counter()
    losses, method = evaluate_points(model, loss_fn, data, p0, [{n: p1[n] - p0[n].to(p1[n]) for n in p0}],
                                     alphas, **options)
    return Landscape(alphas, None, losses, method, time.perf_counter() - t0)


def slices_over_seeds(model: nn.Module, loss_fn, data, seeds=(0, 1, 2, 3, 4), span=(-1.0, 1.0),
                      resolution: int = 41, perturb_bias_bn: bool = False, **options) -> dict[int, Landscape]:
    """One filter-normalized 1-D slice per direction seed: how much the picture depends on the random draw."""
    return {int(s): loss_slice(model, loss_fn, data, random_direction(model, s, perturb_bias_bn=perturb_bias_bn),
                               span, resolution, **options) for s in seeds}


# --------------------------------------------------------------------------- progressive grids
def grid_levels(resolution: int, coarsest: int = 5) -> list[np.ndarray]:
    """Index sets into a ``resolution``-point axis, coarse to fine, each containing the previous one:
    ``coarsest``, 2·coarsest − 1, … points, then all of them. Every coarse point is a point of the final grid."""
    levels, m = [], min(coarsest, resolution)
    while True:
        idx = np.unique(np.round(np.linspace(0, resolution - 1, m)).astype(int))
        if levels:
            idx = np.union1d(idx, levels[-1])
        levels.append(idx)
        if m >= resolution:
            return levels
        m = min(2 * m - 1, resolution)


def progressive_surface(model: nn.Module, loss_fn, data, directions: tuple[Params, Params], span=(-1.0, 1.0),
                        resolution=21, yspan=None, *, coarsest: int = 5, on_level=None, verbose: bool = True,
                        **options) -> Landscape:
    """:func:`loss_surface`, coarse to fine: the ``coarsest``² grid first, then each finer level computes only its
    new points. ``on_level(landscape)`` receives the grid of each level (e.g. to redraw a figure in place). Before
    the finer levels it prints the estimate: remaining points × seconds per point measured on the coarse grid.
    The final grid equals :func:`loss_surface`'s point for point."""
    if not (isinstance(directions, (tuple, list)) and len(directions) == 2):
        raise ValueError("directions must be a pair (δ, η), e.g. random_directions(model, seed)")
    nx, ny = resolution if isinstance(resolution, (tuple, list)) else (resolution, resolution)
    alphas, betas = _axis("x", span, nx), _axis("y", span if yspan is None else yspan, ny)
    coarsest = check_int("coarsest", coarsest, 2, " (points per axis of the first grid)")
    lx, ly = grid_levels(nx, coarsest), grid_levels(ny, coarsest)
    lx, ly = lx + [lx[-1]] * (len(ly) - len(lx)), ly + [ly[-1]] * (len(lx) - len(ly))
    losses = np.full((ny, nx), np.nan)
    done = np.zeros((ny, nx), bool)
    origin, t0, method = parameters_of(model), time.perf_counter(), None
    for level, (ix, iy) in enumerate(zip(lx, ly)):
        mask = np.zeros_like(done)
        mask[np.ix_(iy, ix)] = True
        todo = np.argwhere(mask & ~done)                   # rows of (j, i)
        t_level = time.perf_counter()
        values, method = evaluate_points(model, loss_fn, data, origin, list(directions),
                                         np.stack([alphas[todo[:, 1]], betas[todo[:, 0]]], 1),
                                         verbose=False, **options)
        losses[todo[:, 0], todo[:, 1]], done = values, done | mask
        if level == 0 and verbose:
            per_point = (time.perf_counter() - t_level) / len(todo)
            rest = nx * ny - len(todo)
            print(f"ftkit.optviz.landscape: coarse {len(ix)}×{len(iy)} grid in {time.perf_counter() - t_level:.1f} s; "
                  f"{nx}×{ny}: {rest} more points × {1e3 * per_point:.1f} ms/point ≈ {rest * per_point:.0f} s")
        if on_level is not None:
            on_level(Landscape(alphas[ix], betas[iy], losses[np.ix_(iy, ix)].copy(), method,
                               time.perf_counter() - t0))
    return Landscape(alphas, betas, losses, method, time.perf_counter() - t0)
