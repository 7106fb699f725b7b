"""The learning-rate range test (Smith 2015; fastai's ``lr_find``): train a few steps while the lr grows
exponentially from ``start_lr`` to ``end_lr``, watch the smoothed loss, and suggest an lr from the stretch where
it falls.

**The suggestion** ("valley", as fastai's default since 2021): the smoothed loss starts flat (the lr is too small
to move anything), falls, reaches its minimum and blows up. The valley is the fall: from where the loss has lost
5 % of its total drop to its minimum. The suggestion is the lr in its middle on the log axis (the geometric mean of
both ends): large enough to learn fast, a safe factor below the lr at the minimum, which is already close to
divergence. When that middle is below a tenth of the lr at the minimum (the fall starts at tiny lrs, as for SGD on a
regression, where progress adds up over the steps), the suggestion is that tenth instead (fastai's "minimum/10", taken
on a centred mean that does not lag): ``max(valley middle, minimum/10)``. Measured (under load, CPU) against fastai's
rules on the same curves — standardized linear regression with SGD over 8 data seeds: fastai's valley 0.012–0.031
(loss after 64 steps 0.15–1.2), the valley middle alone 0.001–0.105 (up to 9.5), this rule 0.05–0.105 (0.0105–0.027;
the best lr of the sweep 0.1, 0.0098–0.0107); on the small CNN fastai's minimum/10 was the worst in one of two seeds.
The steepest point is not used: on a noisy flat start the steepest wiggle sits anywhere. When the
curve never falls by more than its noise (or 2 %), there is no suggestion (``suggestion is None``) and
:meth:`LRFinderResult.advice` says so and what to try.

The lr of step ``i`` (of ``n = num_steps``) is :math:`\\eta_i = \\eta_{start}\\,(\\eta_{end}/\\eta_{start})^{i/(n-1)}`
(every param group keeps its ratio to group 0). The run stops early once the smoothed loss exceeds ``diverge``
× its best. Afterwards the model, the optimizer and the RNG are restored exactly: ``lr_find`` changes nothing,
so the training that follows is the one you would have had without it. It reuses :func:`ftkit.fit` with
``max_steps``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

import copy
import math
from dataclasses import dataclass, field

from ..core import Callback
from ..metrics import ema
from .checkpoint import restore_rng, rng_state
from .loop import fit
from ..utils import check_int, check_number

__all__ = ["lr_find", "LRFinderResult"]


@dataclass
class LRFinderResult:
    """``lrs`` tried, ``losses`` (EMA-smoothed, debiased) and ``raw_losses``; ``suggestion`` (the middle of the
    valley, see the module notes; None when the loss never fell) and ``suggestions`` (``valley``, ``minimum/10``);
    ``valley``: the (start, end) lrs of the fall; ``message``: why there is no suggestion."""
    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggestion: float | None
    suggestions: dict = field(default_factory=dict)
    smooth: float = 0.98
    stopped_early: bool = False
    valley: tuple | None = None
    message: str = ""

    def advice(self) -> str:
        """One line a beginner can act on: the lr to use, or why there is none and what to try."""
        if self.suggestion is None:
            return self.message
        return (f"suggested lr {self.suggestion:.2g} (the middle of the loss's fall, {self.valley[0]:.2g} → "
                f"{self.valley[1]:.2g}); set your lr to it")

    def __repr__(self):
        return (f"LRFinderResult({len(self.lrs)} steps, lr {self.lrs[0]:.2g} → {self.lrs[-1]:.2g}: "
                + self.advice() + ")")


class _Ramp(Callback):
    """Sets the lr of each step on the exponential ramp and stops once the smoothed loss diverges."""

    def __init__(self, start_lr, end_lr, num_steps, smooth, diverge):
        self.start, self.ratio, self.n = start_lr, end_lr / start_lr, num_steps
        self.smooth, self.diverge = smooth, diverge
        self.avg, self.best, self.stopped = 0.0, math.inf, False

    def on_fit_start(self, state):
        lr0 = state.optimizer.param_groups[0]["lr"] or 1.0
        self.scale = [g["lr"] / lr0 if lr0 else 1.0 for g in state.optimizer.param_groups]

    def on_batch_start(self, state):
        lr = self.start * self.ratio ** (min(state.step, self.n - 1) / (self.n - 1))
        for group, scale in zip(state.optimizer.param_groups, self.scale):
            group["lr"] = lr * scale

    def on_batch_end(self, state):
        if not math.isfinite(state.loss):
            self.stopped, state.stop = True, True
            return
        self.avg = self.smooth * self.avg + (1 - self.smooth) * state.loss
        smoothed = self.avg / (1 - self.smooth ** len(state.history.steps))
        self.best = min(self.best, smoothed)
        if len(state.history.steps) > 5 and smoothed > self.diverge * self.best:
            self.stopped, state.stop, state.stop_reason = True, True, "lr_find: the loss diverged"


def lr_find(model: nn.Module, train_loader: Iterable[Any], loss: Any, optimizer: torch.optim.Optimizer, *,
            start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100, smooth: float = 0.98,
            diverge: float = 4.0, device: str | torch.device = "auto", **fit_kwargs: Any) -> LRFinderResult:
    """Run the LR range test on ``model`` (same arguments as :func:`ftkit.fit`) and restore everything after.

    Returns an :class:`LRFinderResult`; ``ftkit.plots.lr_find_figure(result)`` plots it. ``fit_kwargs`` go to ``fit`` (e.g.
    ``grad_clip``, ``amp``). The loader is cycled if it has fewer than ``num_steps`` batches.
    """
    check_number("start_lr", start_lr, positive=True)
    check_number("end_lr", end_lr, positive=True)
    if start_lr >= end_lr:
        raise ValueError(f"lr_find needs start_lr < end_lr (an increasing ramp), got start_lr={start_lr:g}, "
                         f"end_lr={end_lr:g}; e.g. start_lr=1e-7, end_lr=10")
    check_int("num_steps", num_steps)
    if num_steps < 5:
        raise ValueError(f"lr_find needs num_steps >= 5 to draw a curve, got {num_steps}; ~100 is usual")
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth must be in [0, 1), got {smooth!r}")
    if hasattr(train_loader, "__len__") and len(train_loader) == 0:
        raise ValueError("lr_find got an empty train_loader (0 batches): check the dataset size, batch_size and "
                         "drop_last; nothing was changed")
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"lr_find needs the optimizer object you will train with (it is restored afterwards), got "
                        f"{optimizer!r}; build it first, e.g. make_optimizer('adamw', model, lr=1e-3)")
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), rng_state(), model.training)
    ramp = _Ramp(start_lr, end_lr, num_steps, smooth, diverge)
    try:
        history = fit(model, train_loader, loss, optimizer, None, max_steps=num_steps, device=device,
                      callbacks=[ramp, *fit_kwargs.pop("callbacks", ())], progress=False, **fit_kwargs)
    finally:
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        restore_rng(saved[2])
        model.train(saved[3])
    rows = [r for r in history.steps if math.isfinite(r["loss"])]
    if len(rows) < 3:
        raise ValueError(f"lr_find got only {len(rows)} finite losses (the loss diverged at once): lower start_lr "
                         f"(now {start_lr:g}); the model was restored")
    lrs, raw = [r["lr"] for r in rows], [r["loss"] for r in rows]
    losses = ema(raw, smooth)
    suggestion, suggestions, valley, message = _suggest(lrs, losses, raw, smooth)
    return LRFinderResult(lrs, losses, raw, suggestion, suggestions, smooth=smooth, stopped_early=ramp.stopped,
                          valley=valley, message=message)


def _suggest(lrs, losses, raw, smooth):
    """(suggestion, {'valley': …, 'minimum/10': …}, (valley start lr, end lr), message); see the module notes.

    The valley is found on a *centred* running mean of the raw losses (±``w`` steps): the EMA drawn in the figure
    lags a falling curve by ~smooth/(1 − smooth) steps (49 at 0.98, several decades of lr), which would push
    the valley to the right; a centred mean does not lag."""
    n = len(raw)
    w = max(2, n // 25)
    c = [sum(raw[max(0, i - w):i + w + 1]) / len(raw[max(0, i - w):i + w + 1]) for i in range(n)]
    head = sorted(raw[:max(3, n // 10)])
    start = head[len(head) // 2]                  # the loss before anything moves: a median, robust to a spike
    low = min(range(n), key=c.__getitem__)
    drop = start - c[low]
    spread = (sum((x - start) ** 2 for x in head) / len(head)) ** 0.5     # the raw noise of the flat start
    if drop <= max(4 * spread / math.sqrt(2 * w + 1), 0.02 * abs(start)):
        message = (f"no suggestion: the loss never fell (from {start:.3g} its lowest smoothed value is "
                   f"{c[low]:.3g} at lr {lrs[low]:.2g}); try a smaller start_lr, check the data and labels, or "
                   "train a few steps first")
        return None, {}, None, message
    begin = low
    while begin > 0 and c[begin - 1] < start - 0.05 * drop:              # back to where the fall began
        begin -= 1
    middle = math.sqrt(lrs[begin] * lrs[low])
    suggestion = max(middle, lrs[low] / 10)   # a fall that starts at tiny lrs (SGD on a regression) pulls the middle
    shown = min(range(n), key=losses.__getitem__)  # fastai's other rule, on the curve the figure draws
    return suggestion, {"valley": middle, "minimum/10": lrs[shown] / 10, "centred minimum/10": lrs[low] / 10}, \
        (lrs[begin], lrs[low]), ""
