"""The same ``fit()`` on several processes and GPUs, through Hugging Face Accelerate (DDP).

Nothing here is a home-made process group: Accelerate starts the processes (``notebook_launcher``, ``accelerate
launch``, ``torchrun``), sets up ``torch.distributed`` and wraps the model in ``DistributedDataParallel``. This module
adds what ``fit`` needs on top, so that N processes train exactly like one:

* **batch_size is the global batch.** Each global batch is split into N near-equal slices, one per process (the
  DataLoader's batch sampler is split, so each process loads only its samples; other loaders, e.g. the
  tensor-resident CIFAR loader, build the batch and keep their slice). Every sample is seen once per epoch, and a
  checkpoint's "batches done" means the same on any number of processes.
* **Exact gradients.** Each process scales its loss by ``N · n_local / n_global`` before DDP averages the gradients,
  so the step equals one process's step on the whole batch — also for an uneven last batch or ignored (-100) labels.
* **One small all-reduce per batch** carries the global loss, the target count, the stop flags and how many manual
  changes (learning rate…) rank 0 made; new changes are then broadcast, so every rank steps with the same lr and
  stops at the same step. Epoch metrics and validation are summed over the processes before they are logged.
* **Only the main process writes**: callbacks whose class sets ``main_process_only = True`` (progress bar, live
  plot, dashboard, checkpoints, CSV/TensorBoard logs) run on the main process only.

The processes come from :func:`ftkit.launch` (:mod:`ftkit.train.launcher`) in a notebook, or from ``accelerate launch`` /
``torchrun`` in a shell; ``fit`` notices them (``WORLD_SIZE``) and calls :class:`Distributed` at the same few points
where one process calls :class:`~ftkit.train.strategy.Local`.
"""
from __future__ import annotations

import os

import torch

from ..core import Events, StopTraining
from ..metrics import MetricTracker
from .sharding import shard
from .step import evaluate_sums

__all__ = ["Distributed", "distributed_for", "world_size"]


def world_size() -> int:
    """Processes in the running job according to the environment (torchrun, accelerate launch, our launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def distributed_for(accelerator, device="auto"):
    """A :class:`Distributed` when several processes run, else ``None`` (``fit`` then uses
    :class:`~ftkit.train.strategy.Local`).

    Without an ``accelerator`` one is made when the environment says several processes run (``WORLD_SIZE > 1``)."""
    if accelerator is None:
        if world_size() <= 1:
            return None
        from accelerate import Accelerator
        wants_cpu = str(device).startswith("cpu") or not torch.cuda.is_available()
        accelerator = Accelerator(cpu=wants_cpu)
    if accelerator.num_processes <= 1:
        return None
    return Distributed(accelerator)


# --------------------------------------------------------------------------- the strategy fit calls
class Distributed:
    """What ``fit``'s loop calls when several processes train: prepare, sync per batch, reduce, main-only writes.
    The same methods as :class:`~ftkit.train.strategy.Local`."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.is_main = accelerator.is_main_process
        device = accelerator.device   # Accelerate names CPU processes cpu:0, cpu:1…, which torch.load cannot map to
        self.device = torch.device("cpu") if device.type == "cpu" else device
        self.events_synced = 0        # how many of rank 0's manual changes every rank has applied
        self.checked_unused = False

    # ---- before the loop
    def prepare(self, model, train_loader, val_loader):
        """(DDP-wrapped model, sharded train loader, sharded val loader). Checks the global batch first."""
        train = shard(train_loader, self.rank, self.world, train=True)
        val = shard(val_loader, self.rank, self.world, train=False) if val_loader is not None else None
        return self.accelerator.prepare_model(model), train, val

    def callbacks(self, callbacks: list) -> list:
        """The callbacks this process runs: writers on the main process only."""
        return [cb for cb in callbacks if self.is_main or not getattr(cb, "main_process_only", False)]

    @staticmethod
    def events(callbacks) -> Events:
        """The callbacks' events, with a ``StopTraining`` raised by one of them turned into ``state.stop``: one
        process alone must not leave the loop (the others would wait for it); all stop together at the next sync."""
        return _DeferredStops(callbacks)

    def after_resume(self, state) -> None:
        """A mid-epoch resume restores the saved metric totals and torchmetrics states once (on rank 0), not once
        per process: the other processes start from zero, and the sums over the processes add up."""
        if not self.is_main and state.resume.get("metrics"):
            totals, counts = state.resume["metrics"]
            state.resume["metrics"] = ({k: 0.0 for k in totals}, {k: 0 for k in counts})
        if not self.is_main:
            state.resume.pop("metric_states", None)

    def sync_rng(self) -> None:
        """Every rank starts the epoch from rank 0's RNG: the same shuffle order, so the slices partition it."""
        from accelerate.utils import synchronize_rng_states
        synchronize_rng_states(["torch", "cuda"] if self.device.type == "cuda" else ["torch"])

    # ---- every batch
    def check_stop(self, state) -> None:
        """Nothing: one process alone must not leave the loop; stops are acted on together in :meth:`sync_batch`."""

    def sync_batch(self, state, loss, n_local, outputs):
        """One all-reduce after the forward: global loss and count, stop flags, rank 0's manual changes.

        Returns ``(loss to backpropagate, global batch loss, global count)`` or ``None`` when no process has a
        target in this batch (all skip it). Raises :class:`StopTraining` on every rank when any rank stopped."""
        n_local = float(n_local)
        events = len(state.history.events) if self.is_main else 0
        local = torch.stack([loss.detach().double() * n_local if n_local else loss.new_zeros((), dtype=torch.float64),
                             torch.tensor(n_local, dtype=torch.float64, device=loss.device)])
        flags = torch.tensor([float(bool(state.stop)), float(events)], dtype=torch.float64, device=loss.device)
        total, n_global, stops, main_events = self.accelerator.reduce(torch.cat([local, flags]), "sum").tolist()
        if main_events > self.events_synced:
            self._apply_changes(state, int(main_events))
        if stops:
            self._stop_all(state)
        if n_global == 0:
            return None
        if n_local == 0:   # this slice has only ignored labels: take part in the all-reduce with a zero gradient
            return outputs.float().sum() * 0.0, torch.tensor(total / n_global), n_global
        scale = self.world * n_local / n_global
        return (loss * scale if scale != 1.0 else loss), torch.tensor(total / n_global), n_global

    def backward(self, model, loss, stepping: bool) -> None:
        """``loss.backward()``; gradients are all-reduced only on the micro-batch that steps (``no_sync`` else)."""
        if stepping:
            loss.backward()
        else:
            with model.no_sync():
                loss.backward()
        if not self.checked_unused:
            self.checked_unused = True
            self._check_unused(model)

    def _check_unused(self, model) -> None:
        if getattr(model, "find_unused_parameters", False):
            return
        unused = [name for name, p in model.module.named_parameters() if p.requires_grad and p.grad is None]
        if unused:
            raise ValueError(
                f"{len(unused)} trainable parameters got no gradient in the first step ({', '.join(unused[:4])}"
                f"{', …' if len(unused) > 4 else ''}): DistributedDataParallel would wait for them forever. Freeze "
                "them (p.requires_grad_(False)) or remove them; if they are used only in some steps, pass fit("
                "accelerator=Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters="
                "True)])) — DDP's find_unused_parameters option (slower)")

    def _apply_changes(self, state, upto: int) -> None:
        from accelerate.utils import broadcast_object_list
        box = [state.history.events[self.events_synced:upto] if self.is_main else None]
        broadcast_object_list(box, from_process=0)
        if not self.is_main:
            for event in box[0]:
                value = tuple(event["new"]) if isinstance(event["new"], list) else event["new"]
                state.lr_schedule.set(state, source=event["source"], **{event["name"]: value})
        self.events_synced = upto

    def _stop_all(self, state) -> None:
        from accelerate.utils import gather_object
        reasons = [r for r in gather_object([state.stop_reason if state.stop else None]) if r]
        state.stop = True
        state.stop_reason = reasons[0] if reasons else f"stopped on another process at step {state.step}"
        raise StopTraining(state.stop_reason)

    def sync_stop(self, state) -> None:
        """At the end of an epoch: a stop set on any rank stops all of them."""
        if state.stop:
            self.accelerator.set_trigger()
        if self.accelerator.check_trigger():
            self._stop_all(state)

    # ---- sums over the processes
    def reduce_metrics(self, tracker) -> None:
        """Sum a MetricTracker's totals and counts over the processes, in place."""
        tracker.totals, tracker.counts = self._sum(tracker.totals, tracker.counts)

    def _sum(self, totals: dict, counts: dict) -> tuple[dict, dict]:
        names = list(totals)
        if not names:
            return totals, counts
        values = [float(totals[n]) for n in names] + [float(counts[n]) for n in names]
        summed = self.accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=self.device), "sum").tolist()
        return dict(zip(names, summed[:len(names)])), dict(zip(names, summed[len(names):]))

    def evaluate(self, model, loader, loss_fn, metrics, *, amp, prefix) -> dict:
        """``evaluate`` on this process's slice of ``loader``, summed over the processes."""
        tracker = MetricTracker(metrics)
        loss_sum, n_seen = evaluate_sums(model, loader, loss_fn, tracker, device=self.device, amp=amp)
        both = torch.tensor([float(loss_sum), float(n_seen)], dtype=torch.float64, device=self.device)
        loss_sum, n_seen = self.accelerator.reduce(both, "sum").tolist()
        self.reduce_metrics(tracker)
        if n_seen == 0:
            raise ValueError("evaluate got an empty loader (0 batches, or every label -100)")
        return {f"{prefix}loss": loss_sum / n_seen, **tracker.compute(prefix)}

    def finish(self, state, tracker=None) -> None:
        """Before ``on_fit_end`` (all ranks at the same step): a mid-epoch resume point gets the totals summed and
        the torchmetrics states merged over the processes — what one process would hold — so the checkpoint (written
        by rank 0) resumes exactly on any number of processes; a metric torchmetrics cannot merge marks the point as
        one a resume refuses, naming it."""
        resume = state.resume
        if resume.get("complete"):
            return
        if resume.get("metrics"):
            resume = {**resume, "metrics": self._sum(*resume["metrics"])}
        if "metric_states" in resume and tracker is not None:
            from accelerate.utils import gather_object
            parts = gather_object([resume["metric_states"]])
            merged, why = tracker.merged_states(parts)
            resume["metric_states"] = merged
            if why:
                resume["metric_states_unmerged"] = why
        state.resume = {**resume, "merged": True}   # a checkpoint without it holds process 0's share only


class _DeferredStops(Events):
    @staticmethod
    def _fire(hooks):
        def fire(state):
            try:
                for hook in hooks:
                    hook(state)
            except StopTraining as stop:
                state.stop, state.stop_reason = True, stop.reason
        return fire
