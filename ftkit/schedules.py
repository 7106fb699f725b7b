r"""Learning-rate schedules: ``make_scheduler(name, optimizer, **options)`` over ``torch.optim.lr_scheduler``.

Every schedule is a factor on each param group's lr at optimizer step :math:`s` of :math:`T` (``total_steps``),
stepped once per optimizer step by ``fit`` — except ``reduce_on_plateau``, which ``fit`` steps once per epoch on
the monitored value (its per-step calls without a value do nothing).

* ``constant``       1
* ``step``           :math:`γ^{\lfloor s/\mathrm{step\_size}\rfloor}`
* ``cosine``         :math:`η_{min}/η + (1 - η_{min}/η)(1 + \cos(π s/T))/2`
* ``linear_warmup``  :math:`(s+1)/W` for :math:`s < W`, then :math:`1 - (1-f)(s-W)/(T-W)` down to :math:`f`
* ``cosine_warmup``  :math:`(s+1)/W` for :math:`s < W`, then :math:`f + (1-f)(1 + \cos(π (s-W)/(T-W)))/2`
* ``one_cycle``      torch's ``OneCycleLR``
* ``reduce_on_plateau``  torch's ``ReduceLROnPlateau``: lr × ``factor`` after ``patience`` epochs without a better
  ``monitor`` value (``val_loss`` when there is a validation set, else ``train_loss``)

In ``fit``, a schedule is a name or a ``(name, options)`` pair — ``scheduler=("linear_warmup", {"warmup_ratio":
0.1})`` — and ``fit`` fills in ``total_steps``: no recipe counts steps, and a resume with another batch size
rebuilds the schedule for the new total.
"""
from __future__ import annotations

from typing import Any

import inspect
import math

import torch
from torch.optim import lr_scheduler

from .utils import check_int, check_keys, check_number, choose, normalize_name

__all__ = ["SCHEDULERS", "ReduceLROnPlateau", "make_scheduler", "schedule_spec", "peak_lr"]


def _constant(optimizer, total_steps: int | None = None):
    """lr stays put (``total_steps`` is accepted so every name works with ``fit``)."""
    return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _step(optimizer, step_size: int, gamma: float = 0.1, total_steps: int | None = None):
    r""":math:`η_s = η\,γ^{\lfloor s/\mathrm{step\_size}\rfloor}`."""
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=check_number("gamma", gamma))


def _cosine(optimizer, total_steps: int, eta_min: float = 0.0):
    r""":math:`η_s = η_{min} + (η - η_{min})(1 + \cos(π s/T))/2`, T = ``total_steps``."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=check_number("eta_min", eta_min))


def _warmup_steps(total_steps: int, warmup_steps: int, warmup_ratio: float | None, final_factor: float) -> int:
    if warmup_ratio is not None:
        if not 0 <= check_number("warmup_ratio", warmup_ratio) <= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
        warmup_steps = int(round(warmup_ratio * total_steps))
    warmup_steps = int(check_number("warmup_steps", warmup_steps))
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} exceeds total_steps={total_steps}; warm up for fewer steps")
    if not 0 <= check_number("final_factor", final_factor) <= 1:
        raise ValueError(f"final_factor must be in [0, 1] (a fraction of lr), got {final_factor}")
    return warmup_steps


def _linear_warmup(optimizer, total_steps: int, warmup_steps: int = 0, warmup_ratio: float | None = None,
                   final_factor: float = 0.0):
    """Warmup then linear decay, as a factor on lr at step s (W warmup steps, T total, f final factor):

    :math:`(s+1)/W` for s < W (lr/W at the first step, lr at step W-1: no step is wasted at lr 0),
    then :math:`1 - (1-f)(s-W)/(T-W)`, which falls to f at s = T (and stays there after).
    """
    warmup = _warmup_steps(total_steps, warmup_steps, warmup_ratio, final_factor)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        left = max(total_steps - warmup, 1)
        return max(final_factor, 1 - (1 - final_factor) * (step - warmup) / left)

    return lr_scheduler.LambdaLR(optimizer, factor)


def _cosine_warmup(optimizer, total_steps: int, warmup_steps: int = 0, warmup_ratio: float | None = None,
                   final_factor: float = 0.0):
    """Warmup then a half cosine (as ``transformers.get_cosine_schedule_with_warmup``, whose warmup starts at 0):

    :math:`(s+1)/W` for s < W, then :math:`f + (1-f)(1 + \\cos(π(s-W)/(T-W)))/2`, which reaches f at s = T.
    """
    warmup = _warmup_steps(total_steps, warmup_steps, warmup_ratio, final_factor)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        return final_factor + (1 - final_factor) * (1 + math.cos(math.pi * progress)) / 2

    return lr_scheduler.LambdaLR(optimizer, factor)


def _one_cycle(optimizer, total_steps: int, max_lr: float | None = None, **options):
    """``torch.optim.lr_scheduler.OneCycleLR``: lr climbs from max_lr/25 to max_lr (default: each group's lr)
    over 30% of the steps, then anneals (cosine) to max_lr/(25·10⁴). Momentum / β₁ cycles the other way,
    but only for optimizers that already use it (plain SGD stays plain; Adagrad has none)."""
    if max_lr is None:
        max_lr = [g["lr"] for g in optimizer.param_groups]
    else:
        check_number("max_lr", max_lr, positive=True)
    options.setdefault("cycle_momentum", all(g.get("momentum", 0) > 0 or "betas" in g
                                             for g in optimizer.param_groups))
    return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, **options)


class ReduceLROnPlateau(lr_scheduler.ReduceLROnPlateau):
    """torch's ``ReduceLROnPlateau`` that knows what it watches: ``monitor`` (an epoch-log key such as
    ``val_loss`` or ``val_accuracy``; ``None``: ``val_loss``, or ``train_loss`` without validation). ``fit`` steps
    it at each epoch end with that value; a per-step ``step()`` without a value does nothing."""

    def __init__(self, optimizer, monitor: str | None = None, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, **options):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' (a loss) or 'max' (an accuracy), got {mode!r}")
        if not 0 < check_number("factor", factor) < 1:
            raise ValueError(f"factor must be in (0, 1) (lr × factor on a plateau), got {factor}")
        patience = check_int("patience", patience, 0, meaning=" (epochs without improvement before lr drops)")
        super().__init__(optimizer, mode=mode, factor=factor, patience=patience, **options)
        self.monitor = monitor

    def step(self, metrics=None, epoch=None):  # noqa: D102 — see the class
        if metrics is None:
            return
        super().step(float(metrics))

    def state_dict(self):
        return {**super().state_dict(), "monitor": self.monitor}


def _reduce_on_plateau(optimizer, total_steps: int | None = None, **options):
    return ReduceLROnPlateau(optimizer, **options)


SCHEDULERS = {
    "constant": _constant,
    "step": _step,
    "cosine": _cosine,
    "linear_warmup": _linear_warmup,
    "cosine_warmup": _cosine_warmup,
    "one_cycle": _one_cycle,
    "reduce_on_plateau": _reduce_on_plateau,
}
_NEEDS_TOTAL = {"cosine", "linear_warmup", "cosine_warmup", "one_cycle"}
_TAKES = {"one_cycle": set(inspect.signature(lr_scheduler.OneCycleLR).parameters) - {"optimizer"},
          "reduce_on_plateau": {"monitor", "mode", "factor", "patience", "total_steps"}
          | set(inspect.signature(lr_scheduler.ReduceLROnPlateau).parameters) - {"optimizer", "verbose"}}


def _accepted(key: str) -> set[str]:
    return _TAKES.get(key) or set(inspect.signature(SCHEDULERS[key]).parameters) - {"optimizer"}


def make_scheduler(name: str | tuple[str, dict] | Any | None, optimizer: torch.optim.Optimizer,
                   **options: Any) -> Any:
    """``make_scheduler("linear_warmup", opt, total_steps=1000, warmup_ratio=0.1)``; stepped once per batch.

    ``None`` gives no scheduler; an existing scheduler passes through.
    """
    if name is None or not isinstance(name, str):
        return name
    build = choose("scheduler", name, SCHEDULERS)
    key = normalize_name(name)
    check_keys(options, _accepted(key), f"scheduler {key!r}")
    if key in _NEEDS_TOTAL:
        if "total_steps" not in options:
            raise ValueError(f"scheduler {name!r} needs total_steps= (batches per epoch × epochs)")
        total = options["total_steps"]
        if isinstance(total, int) and not isinstance(total, bool) and total <= 0:
            raise ValueError(f"total_steps must be > 0, got {total}")
        check_int("total_steps", total, meaning=" (optimizer steps of the whole run)")
    if key == "step":
        if "step_size" not in options:
            raise ValueError("scheduler 'step' needs step_size= > 0 (steps between decays)")
        check_int("step_size", options["step_size"], meaning=" (steps between decays)")
    return build(optimizer, **options)


def schedule_spec(scheduler) -> tuple[str, dict] | None:
    """``(name, options)`` of a schedule given to ``fit`` by name (``"cosine"``) or as a pair
    (``("linear_warmup", {"warmup_ratio": 0.1})``); ``None`` for a scheduler object or no scheduler."""
    if isinstance(scheduler, str):
        return scheduler, {}
    if isinstance(scheduler, tuple) and len(scheduler) == 2 and isinstance(scheduler[0], str):
        name, options = scheduler
        if not isinstance(options, dict):
            raise TypeError(f"a schedule pair is (name, options dict), e.g. ('linear_warmup', {{'warmup_ratio': 0.1}}); "
                            f"got options {options!r}")
        if "total_steps" in options:
            raise ValueError(f"fit counts total_steps itself (batches per epoch × epochs ÷ grad_accum): leave it out "
                             f"of {name!r}'s options")
        return name, dict(options)
    if isinstance(scheduler, (tuple, list)):
        raise TypeError(f"scheduler must be a name, a (name, options) pair or a scheduler object, got {scheduler!r}; "
                        "e.g. scheduler=('cosine_warmup', {'warmup_ratio': 0.1})")
    return None


def peak_lr(optimizer: torch.optim.Optimizer) -> float:
    """The highest lr the first param group's schedule reaches, read from what torch's schedulers write into the
    group: a warm-up starts low (``one_cycle`` at ``max_lr``/25, its ``initial_lr``; the others below their base lr,
    their ``initial_lr``), so the lr at the start of a fit is not the peak. Without a schedule, the group's lr."""
    group = optimizer.param_groups[0]
    return max(group.get(key) or 0.0 for key in ("lr", "initial_lr", "max_lr"))
