r"""Optimization paths of real networks (Li et al. 2018, §7): the weights recorded during ``fit``
(:class:`WeightRecorder`), projected on the two principal directions of :math:`θ_i - θ_{\text{final}}`
(:func:`pca_trajectory`), and how far that 2-D picture can be trusted (:func:`trajectory_check`).

The grids the path is drawn on are in :mod:`ftkit.optviz.landscape`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core import Callback
from .directions import Params, params_dot, parameters_of
from .landscape import evaluate_points

__all__ = ["WeightRecorder", "Trajectory", "pca_trajectory", "TrajectoryCheck", "trajectory_check"]


class WeightRecorder(Callback):
    """Keeps CPU copies of the parameters during ``fit``: at the start, then at every epoch end
    (``every=None``) or every ``every`` optimizer steps, and at the end if the last step was not recorded.

    ``weights[i]`` is a ``{name: tensor}`` dict taken after ``steps[i]`` optimizer steps.
    """

    def __init__(self, every: int | None = None):
        if every is not None and (isinstance(every, bool) or int(every) < 1):
            raise ValueError(f"every must be None (each epoch) or a number of steps >= 1, got {every!r}")
        self.every = every
        self.weights: list[Params] = []
        self.steps: list[int] = []

    def _record(self, state):
        if self.steps and self.steps[-1] == state.step:
            return
        self.weights.append({n: p.detach().to("cpu", copy=True) for n, p in state.model.named_parameters()})
        self.steps.append(state.step)

    def on_fit_start(self, state):
        self._record(state)

    def on_batch_end(self, state):
        if self.every is not None and state.step % self.every == 0:
            self._record(state)

    def on_epoch_end(self, state):
        if self.every is None:
            self._record(state)

    def on_fit_end(self, state):
        self._record(state)


@dataclass
class Trajectory:
    """Weights projected on two PCA directions: ``coords[i] = ((θ_i − θ_final)·u₁, (θ_i − θ_final)·u₂)``."""
    coords: np.ndarray                  # T × 2
    explained: np.ndarray               # share of the variance of θ_i along u₁ and u₂
    directions: tuple[Params, Params]   # u₁, u₂: unit vectors, as parameter dicts
    steps: list[int]

    def span(self, margin: float = 0.25) -> tuple[tuple[float, float], tuple[float, float]]:
        """x and y ranges that hold the path, widened by ``margin`` of its extent on each side."""
        lo, hi = self.coords.min(0), self.coords.max(0)
        pad = margin * np.maximum(hi - lo, 1e-3)
        return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def pca_trajectory(weights: list[Params], steps=None) -> Trajectory:
    r"""Li et al. §7: PCA of the matrix :math:`M = [θ_i - θ_{\text{final}}]_i` (rows centred, as scikit-learn's
    PCA), directions :math:`u_{1,2}` = its top right-singular vectors, explained variance :math:`s_k^2/\sum s^2`.
    ``θ_final = weights[-1]``; the path ends at (0, 0).
    """
    if len(weights) < 3:
        raise ValueError(f"need at least 3 weight snapshots for 2 PCA directions, got {len(weights)}; record more "
                         "often (WeightRecorder(every=...)) or train more epochs")
    final = weights[-1]
    names = list(final)
    flat = torch.stack([torch.cat([(w[n] - final[n]).reshape(-1).double() for n in names]) for w in weights])
    _, s, vh = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)
    coords = (flat @ vh[:2].T).numpy()
    explained = (s[:2] ** 2 / (s ** 2).sum()).numpy()
    sizes = [final[n].numel() for n in names]
    directions = tuple({n: part.view_as(final[n]).to(final[n].dtype) for n, part in zip(names, u.split(sizes))}
                       for u in vh[:2])
    return Trajectory(coords, explained, directions, list(steps) if steps is not None else list(range(len(weights))))


@dataclass
class TrajectoryCheck:
    """How far the PCA picture can be trusted, per snapshot ``i`` (Li et al.'s plots show only the projection).

    ``distance[i]`` = ‖(θ_i − θ*) − P(θ_i − θ*)‖, the distance of the snapshot from the plane (``relative``: as a share
    of ‖θ_i − θ*‖); ``loss`` = L(θ_i), the snapshot's true loss; ``projected_loss`` = L(θ* + c_{i1}u₁ + c_{i2}u₂),
    the value the contour shows under the drawn point."""
    steps: list[int]
    distance: np.ndarray
    relative: np.ndarray
    loss: np.ndarray
    projected_loss: np.ndarray


def trajectory_check(model: nn.Module, loss_fn, data, weights: list[Params], trajectory: Trajectory,
                     **options) -> TrajectoryCheck:
    """True loss and distance from the plane of every snapshot of ``trajectory`` (``weights`` as given to
    :func:`pca_trajectory`; ``model`` holds θ* = ``weights[-1]``'s architecture and buffers)."""
    if len(weights) != len(trajectory.coords):
        raise ValueError(f"{len(weights)} weight snapshots but the trajectory has {len(trajectory.coords)} points; "
                         "pass the same list as to pca_trajectory")
    final = parameters_of(weights[-1])
    offsets = [{n: w[n].to(final[n]) - final[n] for n in final} for w in weights]
    u1, u2 = trajectory.directions
    c = trajectory.coords
    norms = np.array([float(params_dot(o, o)) ** 0.5 for o in offsets])
    off_plane = [{n: o[n] - (float(a) * u1[n] + float(b) * u2[n]).to(o[n]) for n in o} for o, (a, b) in zip(offsets, c)]
    distance = np.array([float(params_dot(o, o)) ** 0.5 for o in off_plane])
    options = {"verbose": False, **options}
    true, _ = evaluate_points(model, loss_fn, data, final, offsets, np.eye(len(offsets)), **options)
    projected, _ = evaluate_points(model, loss_fn, data, final, [u1, u2], c, **options)
    return TrajectoryCheck(list(trajectory.steps), distance, np.divide(distance, norms, out=np.zeros_like(norms),
                                                                       where=norms > 0), true, projected)
