"""Resume bookkeeping, in one place: loading a checkpoint into a ``fit``, and the resume point that every finished
optimizer step moves forward (``state.resume``, which :func:`~ftkit.train.checkpoint.save_checkpoint` writes).

The resume point is ``{"epoch", "batches", "loss_sum", "n_seen", "metrics", "epoch_rng"}`` while an epoch runs and
``{"epoch", "complete": True}`` after it. A mid-epoch resume restores the epoch's RNG state so the loader draws the
same order, skips the finished batches, then restores the RNG to where the interrupted run stood.
"""
from __future__ import annotations

import math
import warnings

from ..core import TrainState
from .checkpoint import load_checkpoint, restore_rng, rng_state

__all__ = ["Resume"]


class Resume:
    """Owns ``state.resume`` for one ``fit``: :meth:`load` (from ``resume_from``), :meth:`epoch` (where an epoch
    starts), :meth:`step_done` (after each finished optimizer step) and :meth:`epoch_done`."""

    def __init__(self, state: TrainState, strategy):
        self.s, self.strategy = state, strategy

    def load(self, path) -> int:
        """Restore model, optimizer, schedule, history, callbacks and RNG; return the epoch to start at."""
        state = self.s
        lr_given = [g["lr"] for g in state.optimizer.param_groups]
        ckpt = load_checkpoint(path, state.model, state.optimizer, map_location=state.device)
        done = ckpt.get("resume") or {"epoch": ckpt["epoch"], "complete": True}
        start = done["epoch"] + 1 if done.get("complete") else done["epoch"]
        if start > state.epochs:
            raise ValueError(f"{path!r} already finished epoch {ckpt['epoch']}, and epochs={state.epochs} is the total "
                             f"to reach, not a number of extra epochs: pass epochs > {ckpt['epoch']} to train on")
        if ckpt.get("scheduler") is not None and state.scheduler is None:
            raise ValueError(f"{path!r} was trained with a learning-rate schedule (lr now "
                             f"{ckpt['optimizer']['param_groups'][0]['lr']:.3g}); pass the same scheduler= to continue "
                             "it (a named one is rebuilt for the new total and continued at the saved step), or "
                             "scheduler='constant' to go on at the initial lr")
        state.history.steps, state.history.epochs = ckpt["history"]["steps"], ckpt["history"]["epochs"]
        state.history.events = ckpt["history"].get("events", [])
        state.step = ckpt["step"]
        state.lr_schedule.resume(ckpt, state.step)
        lr_now = [g["lr"] for g in state.optimizer.param_groups]
        if state.scheduler is None and not ckpt.get("lr_override") and any(
                not math.isclose(a, b) for a, b in zip(lr_given, lr_now)):
            warnings.warn(f"resuming with the checkpoint's lr {lr_now[0]:.3g} (the optimizer given had "
                          f"{lr_given[0]:.3g}): resume continues the saved run exactly; to change the lr, use "
                          "ParamControl.set(lr=...) or the dashboard", stacklevel=4)
        for cb in state.callbacks:
            if cb.state_key in ckpt.get("callbacks", {}):
                cb.load_state_dict(ckpt["callbacks"][cb.state_key])
        state.resume = {**done, "rng": ckpt["rng"]}
        restore_rng(ckpt["rng"])
        self.strategy.after_resume(state)
        return start

    def epoch(self, epoch: int, loader, tracker):
        """``(enumerate(batches), loss_sum, n_seen)`` for ``epoch``: from its start, or — resumed mid-epoch — from
        the batch after its last finished step, with the saved totals put back into ``tracker``."""
        s = self.s
        resume = s.resume if s.resume.get("epoch") == epoch and not s.resume.get("complete") else {}
        tracker.reset()
        if resume.get("metrics"):
            tracker.totals, tracker.counts = resume["metrics"]
        done = resume.get("batches", 0)
        if done and resume.get("epoch_rng") is not None:
            restore_rng(resume["epoch_rng"])
        else:
            s.resume = {"epoch": epoch, "batches": 0, "epoch_rng": rng_state()}
        # accelerate.skip_first_batches is not used: it makes accelerate's process-wide PartialState in the notebook
        # process (which ftkit.launch then forks) and it rebuilds DataLoaders only (TensorLoader and lists of batches
        # need this path anyway). The done batches are drawn and dropped, so the loader's RNG draws match.
        it = iter(loader)
        for _ in range(done):
            next(it, None)
        if done and resume.get("rng") is not None:
            restore_rng(resume["rng"])
        return enumerate(it, start=done), resume.get("loss_sum", 0.0), resume.get("n_seen", 0)

    def step_done(self, batches: int, loss_sum, n_seen, tracker) -> None:
        """A clean point to resume from: after a finished optimizer step, ``batches`` into the epoch."""
        s = self.s
        s.resume = {"epoch": s.epoch, "batches": batches, "loss_sum": loss_sum, "n_seen": n_seen,
                    "metrics": (dict(tracker.totals), dict(tracker.counts)), "epoch_rng": s.resume.get("epoch_rng")}

    def epoch_done(self, epoch: int) -> None:
        self.s.resume = {"epoch": epoch, "complete": True}

