"""Each process's slice of every batch: ``shard(loader, rank, world, train=...)``.

``batch_size`` is the global batch: each global batch is cut into ``world`` near-equal slices (the first
``n % world`` one larger), one per process, so every sample is seen once per epoch on any number of processes and a
checkpoint's "batches done" means the same everywhere. A ``DataLoader``'s batch sampler is split (each process loads
only its samples); other loaders (the tensor-resident CIFAR loader, lists of batches) are iterated whole and sliced.
:class:`ftkit.train.distributed.Distributed` calls it when it prepares the loaders.
"""
from __future__ import annotations

__all__ = ["shard", "check_global_batch", "slice_bounds"]


def shard(loader, rank: int, world: int, *, train: bool):
    """This process's part of every batch of ``loader``: slice ``rank`` of ``world`` near-equal slices.

    A ``DataLoader`` gets a split batch sampler (only this slice is loaded); anything else (``TensorLoader``, a list
    of batches) is iterated whole and sliced. ``train=True`` checks that every slice gets samples.

    Written by hand, not ``accelerator.prepare(loader)``: Accelerate's loaders give each process whole per-process
    batches and fill an uneven last batch with samples repeated from the start (``even_batches``), so the last step
    is not one process's step on that batch. The case that pins this: ``test_two_processes_equal_one_with_the_same_
    global_batch`` in tests/test_train_distributed.py (100 samples, batch 16, a last batch of 4; ≤ 1e-5 from one process).
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


def slice_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
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
            start, stop = slice_bounds(len(batch), self.rank, self.world)
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
            start, stop = slice_bounds(n, self.rank, self.world)
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
