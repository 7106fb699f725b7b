"""The strategy ``fit``'s loop calls at its few points where processes meet: :class:`Local` for one process,
:class:`~ftkit.train.distributed.Distributed` for several. Both have the same methods, so the loop has one path.

``Local`` is written by hand rather than being an ``accelerate.Accelerator`` on one process: Accelerate keeps one
process-wide state, so a second ``fit`` in the same notebook with another device or ``amp`` setting fails
(measured, accelerate 1.15: ``Accelerator(cpu=True)`` then ``Accelerator(mixed_precision="bf16")`` raises
"AcceleratorState has already been initialized and cannot be changed"). Each method here is one or two lines.
"""
from __future__ import annotations

import warnings

from ..core import Events, StopTraining, TrainState
from ..utils import get_device
from .distributed import distributed_for
from .step import evaluate

__all__ = ["Local", "strategy_for", "raise_if_stopped"]


def strategy_for(accelerator=None, device="auto"):
    """:class:`Distributed` when several processes run (an ``accelerator`` with more than one, or ``WORLD_SIZE > 1``),
    else :class:`Local` on ``device``."""
    return distributed_for(accelerator, device) or Local(device)


def raise_if_stopped(state: TrainState) -> None:
    if state.stop:
        raise StopTraining(state.stop_reason or f"stopped at epoch {state.epoch}, step {state.step}")


class Local:
    """One process: nothing to split, sum or broadcast."""

    def __init__(self, device="auto"):
        self.device = get_device(device)

    # ---- before the loop
    def prepare(self, model, train_loader, val_loader):
        """(model to call, train loader, val loader): unchanged on one process."""
        return model, train_loader, val_loader

    def callbacks(self, callbacks: list) -> list:
        return callbacks

    events = staticmethod(Events)   # a StopTraining raised by a callback leaves the loop at once

    def after_resume(self, state) -> None: ...

    def sync_rng(self) -> None: ...

    # ---- every batch
    def check_stop(self, state) -> None:
        """After ``on_batch_start`` and ``on_batch_end``: a stop ends training here."""
        raise_if_stopped(state)

    def sync_batch(self, state, loss, n, outputs):
        """``(loss to backpropagate, batch loss, target count)``, or ``None`` to skip a batch with no target."""
        if int(n) == 0:
            if "empty" not in state.extra.setdefault("warned", set()):
                state.extra["warned"].add("empty")
                warnings.warn("a batch had every label -100 (nothing to learn from): it was skipped; its sentences "
                              "may be all padding or all cut by max_length", RuntimeWarning, stacklevel=4)
            return None
        return loss, loss, n

    @staticmethod
    def backward(model, loss, stepping: bool) -> None:
        loss.backward()

    # ---- the end of an epoch
    def reduce_metrics(self, tracker) -> None: ...

    def evaluate(self, model, loader, loss_fn, metrics, *, amp, prefix) -> dict:
        return evaluate(model, loader, loss_fn, metrics, device=self.device, amp=amp, prefix=prefix)

    def sync_stop(self, state) -> None:
        raise_if_stopped(state)

    def finish(self, state, tracker=None) -> None: ...
