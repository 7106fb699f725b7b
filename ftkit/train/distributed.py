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
from .step import evaluate_sums

__all__ = ["Distributed", "distributed_for", "shard"]


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
        """A mid-epoch resume restores the saved metric totals once (on rank 0), not once per process."""
        if not self.is_main and state.resume.get("metrics"):
            totals, counts = state.resume["metrics"]
            state.resume["metrics"] = ({k: 0.0 for k in totals}, {k: 0 for k in counts})

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

    def finish(self, state) -> None:
        """Before ``on_fit_end`` (all ranks at the same step): a mid-epoch resume point gets the summed totals."""
        resume = state.resume
        if resume.get("metrics") and not resume.get("complete"):
            state.resume = {**resume, "metrics": self._sum(*resume["metrics"])}


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


# --------------------------------------------------------------------------- sharding
def shard(loader, rank: int, world: int, *, train: bool):
    """This process's part of every batch of ``loader``: slice ``rank`` of ``world`` near-equal slices.

    A ``DataLoader`` gets a split batch sampler (only this slice is loaded); anything else (``TensorLoader``, a list
    of batches) is iterated whole and sliced. ``train=True`` checks that every slice gets samples.

    Written by hand, not ``accelerator.prepare(loader)``: Accelerate's loaders give each process whole per-process
    batches and fill an uneven last batch with samples repeated from the start (``even_batches``), so the last step
    is not one process's step on that batch. The case that pins this: ``test_two_processes_equal_one_with_the_same_
    global_batch`` in tests/test_distributed.py (100 samples, batch 16, a last batch of 4; ≤ 1e-5 from one process).
    It also serves ``TensorLoader`` and lists of batches, which Accelerate does not shard."""
    from torch.utils.data import DataLoader, DistributedSampler
    if isinstance(getattr(loader, "sampler", None), DistributedSampler):
        raise ValueError("the loader already has a DistributedSampler, and fit splits every batch over the processes "
                         "itself: pass the plain loader (shuffle=True, batch_size = the global batch)")
    if train:
        check_global_batch(loader, world)
    if isinstance(loader, DataLoader) and loader.batch_sampler is not None:
        kwargs = {k: getattr(loader, k) for k in _LOADER_KWARGS if hasattr(loader, k)}
        return DataLoader(loader.dataset, batch_sampler=_SplitBatchSampler(loader.batch_sampler, rank, world, train),
                          **kwargs)
    return _SplitBatches(loader, rank, world, train=train)


_LOADER_KWARGS = ("num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn", "multiprocessing_context",
                  "generator", "prefetch_factor", "persistent_workers", "pin_memory_device", "in_order")


def check_global_batch(loader, world: int, batch_size=None, n=None, drop_last=False) -> None:
    """Fail before training when the global batch cannot be split into ``world`` slices with samples in each."""
    batch_size = batch_size or getattr(loader, "batch_size", None)
    dataset = getattr(loader, "dataset", None)
    if n is None:
        n = len(dataset) if hasattr(dataset, "__len__") else (
            len(loader.labels) if hasattr(loader, "labels") else None)
    drop_last = drop_last or bool(getattr(loader, "drop_last", False))
    if not batch_size:
        return  # checked batch by batch instead
    if batch_size % world:
        lower, upper = batch_size // world * world, (batch_size // world + 1) * world
        raise ValueError(f"batch_size={batch_size} does not split evenly over {world} processes: batch_size is the "
                         f"global batch and each process takes batch_size/{world} of it; use a multiple of {world}, "
                         f"e.g. {lower or upper} or {upper}")
    last = n % batch_size if n else 0
    if last and not drop_last and last < world:
        raise ValueError(f"the last batch of each epoch has {last} sample{'s' * (last > 1)} ({n} samples, "
                         f"batch_size={batch_size}), fewer than the {world} processes, so some would get none; pass "
                         f"drop_last=True to the loader or pick a batch_size that leaves at least {world}")


def _bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Slice ``rank`` of ``n`` items in ``world`` near-equal parts (the first ``n % world`` one larger)."""
    q, r = divmod(n, world)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


class _SplitBatchSampler:
    """Each batch of the wrapped batch sampler, cut to this rank's slice; every rank draws the same batches."""

    def __init__(self, batch_sampler, rank, world, train):
        self.batch_sampler, self.rank, self.world, self.train = batch_sampler, rank, world, train

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        total = len(self.batch_sampler) if hasattr(self.batch_sampler, "__len__") else None
        for i, batch in enumerate(self.batch_sampler):
            batch = list(batch)
            if self.train:
                _check_slice(len(batch), self.world, last=total is not None and i == total - 1)
            start, stop = _bounds(len(batch), self.rank, self.world)
            if stop > start:
                yield batch[start:stop]


class _SplitBatches:
    """Iterate a loader whole and keep this rank's slice of each batch (tensors, tuples, lists and dicts of them)."""

    def __init__(self, loader, rank, world, train):
        self.loader, self.rank, self.world, self.train = loader, rank, world, train

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):   # batch_size, dataset… of the wrapped loader
        return getattr(self.__dict__["loader"], name)

    def __iter__(self):
        from accelerate.utils import slice_tensors
        total = len(self.loader) if hasattr(self.loader, "__len__") else None
        for i, batch in enumerate(self.loader):
            n = _batch_len(batch)
            if n is None:
                yield batch   # nothing to slice (no tensor with a batch axis)
                continue
            if self.train:
                _check_slice(n, self.world, last=total is not None and i == total - 1)
            start, stop = _bounds(n, self.rank, self.world)
            if stop > start:
                yield slice_tensors(batch, slice(start, stop))


def _check_slice(n: int, world: int, last: bool) -> None:
    """A training batch must give each process samples, and (but the last) the same number."""
    if n < world:
        raise ValueError(f"a batch of {n} sample{'s' * (n > 1)} cannot feed {world} processes (some would get none); "
                         "use a larger batch_size, or drop_last=True for a short last batch")
    if n % world and not last:
        check_global_batch(None, world, batch_size=n, n=n)


def _batch_len(batch):
    """The batch size (accelerate's ``find_batch_size``), or ``None`` when no tensor with a batch axis comes first."""
    from accelerate.utils import find_batch_size
    try:
        return find_batch_size(batch)
    except (TypeError, ValueError, IndexError):
        return None
