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
* **Only the main process writes**: progress bar, live plot, dashboard, checkpoints, CSV/TensorBoard logs.

    history = ftkit.launch(train_fn, num_processes=2)      # from a notebook; returns rank 0's result
    accelerate launch --num_processes 2 train.py            # or torchrun --nproc_per_node 2 train.py
"""
from __future__ import annotations

import importlib
import os
import re
import socket
import tempfile
import time
import traceback

import torch

from .core import StopTraining
from .utils import check_int

__all__ = ["launch", "Distributed", "distributed_for", "shard", "WRITERS"]

# callbacks that write (files, plots, terminal): kept on the main process only; set ``main_process_only`` on a
# callback class to decide yourself
WRITERS = ("ProgressBar", "LivePlot", "ModelCheckpoint", "CSVLogger", "TensorBoardLogger", "TrainingDashboard")


def world_size() -> int:
    """Processes in the running job according to the environment (torchrun, accelerate launch, our launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def distributed_for(accelerator, device="auto"):
    """The strategy ``fit`` uses: ``None`` on one process (the loop is unchanged), else a :class:`Distributed`.

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
    """What ``fit``'s loop calls when several processes train: prepare, sync per batch, reduce, main-only writes."""

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
        return [cb for cb in callbacks if self.is_main or not main_process_only(cb)]

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

    def backward(self, model, loss, stepping: bool, params) -> None:
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
        flag = torch.tensor([float(bool(state.stop))], dtype=torch.float64, device=self.device)
        if self.accelerator.reduce(flag, "sum").item():
            self._stop_all(state)

    # ---- sums over the processes
    def reduce_metrics(self, tracker) -> None:
        """Sum a MetricTracker's totals and counts over the processes, in place."""
        names = [name for name, _ in tracker.metrics]
        if not names:
            return
        values = [float(tracker.totals[n]) for n in names] + [float(tracker.counts[n]) for n in names]
        summed = self.accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=self.device), "sum").tolist()
        tracker.totals = dict(zip(names, summed[:len(names)]))
        tracker.counts = dict(zip(names, summed[len(names):]))

    def evaluate(self, model, loader, loss_fn, metrics, *, amp, prefix) -> dict:
        """``evaluate`` on this process's slice of ``loader``, summed over the processes."""
        from .metrics import MetricTracker
        from .train import evaluate_sums
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
            from .metrics import MetricTracker
            tracker = MetricTracker([])
            tracker.metrics = [(name, None) for name in resume["metrics"][0]]
            tracker.totals, tracker.counts = map(dict, resume["metrics"])
            self.reduce_metrics(tracker)
            state.resume = {**resume, "metrics": (tracker.totals, tracker.counts)}


def main_process_only(callback) -> bool:
    flag = getattr(callback, "main_process_only", None)
    if flag is not None:
        return bool(flag)
    return any(k.__name__ in WRITERS for k in type(callback).__mro__)


# --------------------------------------------------------------------------- sharding
def shard(loader, rank: int, world: int, *, train: bool):
    """This process's part of every batch of ``loader``: slice ``rank`` of ``world`` near-equal slices.

    A ``DataLoader`` gets a split batch sampler (only this slice is loaded); anything else (``TensorLoader``, a list
    of batches) is iterated whole and sliced. ``train=True`` checks that every slice gets samples."""
    from torch.utils.data import DataLoader
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
                yield _slice(batch, start, stop)


def _check_slice(n: int, world: int, last: bool) -> None:
    """A training batch must give each process samples, and (but the last) the same number."""
    if n < world:
        raise ValueError(f"a batch of {n} sample{'s' * (n > 1)} cannot feed {world} processes (some would get none); "
                         "use a larger batch_size, or drop_last=True for a short last batch")
    if n % world and not last:
        check_global_batch(None, world, batch_size=n, n=n)


def _batch_len(batch):
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else None
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        n = _batch_len(item)
        if n is not None:
            return n
    return None


def _slice(batch, start, stop):
    if isinstance(batch, torch.Tensor):
        return batch[start:stop] if batch.dim() else batch
    if isinstance(batch, dict):
        return type(batch)({k: _slice(v, start, stop) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice(v, start, stop) for v in batch)
    return batch


# --------------------------------------------------------------------------- launch
def launch(train_fn, *args, num_processes: int | None = None, device: str = "auto", port: int | None = None):
    """Run ``train_fn(*args)`` on ``num_processes`` processes (one per GPU, or CPU processes with ``gloo``) through
    Accelerate's ``notebook_launcher``, and return what rank 0's ``train_fn`` returned (e.g. its History).

    Inside ``train_fn`` build the data, model and optimizer, then call ``ftkit.fit`` as usual: it sees the processes
    and trains data-parallel. Under ``accelerate launch`` or ``torchrun`` (processes already started) ``train_fn``
    simply runs. A failing process is reported with its rank and error; the others are stopped.
    """
    if world_size() > 1:                       # already one of several processes: run in place
        _pin_gpu()
        return train_fn(*args)
    use_cuda = _wants_cuda(device)
    count = torch.cuda.device_count() if use_cuda else (os.cpu_count() or 1)
    if num_processes is None and use_cuda:
        num_processes = count
    if num_processes is None:
        raise ValueError("give num_processes=…, e.g. ftkit.launch(train_fn, num_processes=2) (no GPU here: CPU "
                         "processes with the gloo backend)")
    check_int("num_processes", num_processes)
    if num_processes > count:
        what = f"{count} GPU{'s' * (count != 1)}" if use_cuda else f"{count} CPU cores"
        raise ValueError(f"num_processes={num_processes} but this machine has {what}; use at most {count}"
                         + ("" if use_cuda else " (several machines: accelerate launch with a config, see README)"))
    if use_cuda and num_processes > 1 and torch.cuda.is_initialized():
        raise RuntimeError(_cuda_initialized_message())
    from accelerate import notebook_launcher
    if num_processes > 1:
        print(f"ftkit.launch: {num_processes} processes, " + ("one per GPU (nccl)" if use_cuda else "CPU (gloo)"))
    importlib.import_module("torch._dynamo")   # DDP and accelerate import it: once here, not in every forked process
    with tempfile.TemporaryDirectory(prefix="ftkit-launch-") as tmp:
        worker = _Worker(train_fn, tmp, num_processes, use_cuda)
        env = {"ACCELERATE_USE_CPU": "false" if use_cuda else "true",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, count // num_processes))}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            notebook_launcher(worker, args, num_processes=num_processes, use_port=str(port or _free_port()))
        except Exception as e:
            raise _worker_error(tmp, num_processes, e) from None
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        path = os.path.join(tmp, "result.pt")
        return torch.load(path, weights_only=False) if os.path.exists(path) else None


class _Worker:
    """Runs in each process: ``train_fn``, then rank 0's result (or any rank's error) into a file for the parent."""

    def __init__(self, train_fn, tmp, num_processes, use_cuda):
        self.train_fn, self.tmp, self.num_processes, self.use_cuda = train_fn, tmp, num_processes, use_cuda
        self.__name__ = self.__qualname__ = getattr(train_fn, "__name__", "train_fn")   # torch elastic names by it

    def __call__(self, *args):
        rank = int(os.environ.get("RANK", "0"))
        if self.use_cuda:
            _pin_gpu()
        if self.num_processes > 1:
            _text_progress_bars()
        if not self.use_cuda and self.num_processes > 1:   # share the cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.num_processes))
        try:
            result = self.train_fn(*args)
        except BaseException as e:   # named by time: the first error is the cause, the others' are its echo
            with open(os.path.join(self.tmp, f"error-{time.time_ns():020d}-{rank}.txt"), "w") as f:
                f.write(f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
            raise
        if rank == 0:
            torch.save(result, os.path.join(self.tmp, "result.pt"))
        return result


def _text_progress_bars() -> None:
    """A forked worker cannot reach the notebook front-end (its widget messages are dropped): text bars instead."""
    import tqdm.auto
    import tqdm.std
    tqdm.auto.tqdm = tqdm.std.tqdm


def _pin_gpu() -> None:
    """Make this process's GPU the current one *before* train_fn builds anything: loaders and models made with
    device='auto'/'cuda' then land on it (Accelerate would set it only when fit creates the Accelerator)."""
    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())


def _worker_error(tmp, num_processes, error) -> RuntimeError:
    reports = sorted(f for f in os.listdir(tmp) if f.startswith("error-"))
    if not reports:
        return RuntimeError(f"the launch of {num_processes} processes failed ({type(error).__name__}: "
                            f"{str(error).strip()[:500]})")
    rank = int(reports[0].split("-")[2].split(".")[0])
    with open(os.path.join(tmp, reports[0])) as f:
        text = f.read()
    first, _, tb = text.partition("\n\n")
    others = f" (then rank {', '.join(r.split('-')[2].split('.')[0] for r in reports[1:])})" if reports[1:] else ""
    return RuntimeError(f"process {rank} of {num_processes} failed: {first}{others}; the other processes were "
                        f"stopped.\n{tb.strip()[-1500:]}")


def _wants_cuda(device) -> bool:
    device = str(device)
    if device == "auto":
        return torch.cuda.is_available()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but CUDA is not available here; use device='cpu'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"launch runs on device='cuda' or 'cpu' (or 'auto'), got {device!r}")
    return device.startswith("cuda")


def _cuda_initialized_message() -> str:
    cells = _cells_touching_cuda()
    where = ("; the cells that touched it are probably " + "; ".join(cells)) if cells else ""
    return ("CUDA was already initialized in this kernel, so the worker processes forked from it cannot use the GPU "
            "(accelerate #940)" + where + ". Restart the kernel, move that code (building the model or loaders on "
            "the GPU, .to('cuda'), .cuda(), torch.cuda calls) into train_fn, and call ftkit.launch before any cell "
            "uses the GPU")


def _cells_touching_cuda(cells=None, limit: int = 3) -> list[str]:
    """Input cells (of the running IPython kernel) that look like they used the GPU: ``In[4]: model.to(device)``."""
    if cells is None:
        try:
            from IPython import get_ipython
            cells = get_ipython().user_ns.get("In", []) if get_ipython() is not None else []
        except Exception:
            return []
    pattern = re.compile(r"cuda|\.to\(\s*device|device\s*=\s*['\"]?(auto|cuda)|TensorLoader|make_loaders")
    found = []
    for number, cell in enumerate(cells):
        line = next((ln.strip() for ln in str(cell).splitlines() if pattern.search(ln)), None)
        if line and "launch(" not in cell:
            found.append(f"In[{number}]: {line[:60]}")
    return found[-limit:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
