"""``ftkit.launch``: run a training function on N processes from a notebook, through Accelerate's launcher.

    def train_fn():                       # builds data, loaders, model, optimizer; calls ftkit.fit
        ...
    history = ftkit.launch(train_fn, num_processes=2)   # one process per GPU, or CPU processes with gloo

The workers are forked from the kernel (``notebook_launcher``), so the kernel must not have touched CUDA before
(accelerate #940): ``launch`` checks that first and names the cells that look guilty. A worker that raises is
reported with its rank and error, and the others are stopped. Under ``accelerate launch`` or ``torchrun`` the
processes already exist and ``launch`` simply calls ``train_fn``. What ``fit`` does on several processes is in
:mod:`ftkit.train.distributed`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import importlib
import os
import re
import socket
import tempfile
import time
import traceback

import torch

from .distributed import world_size
from ..utils import check_int

__all__ = ["launch", "why_not_launch", "launch_section"]


def launch(train_fn: Callable[..., Any], *args: Any, num_processes: int | None = None, device: str = "auto",
           port: int | None = None) -> Any:
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
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // num_processes))
        env = {"ACCELERATE_USE_CPU": "false" if use_cuda else "true", "OMP_NUM_THREADS": threads}
        old = {k: os.environ.get(k) for k in env}
        kernel = _kernel_state()
        os.environ.update(env)
        try:
            with _without_launch_banner():
                notebook_launcher(worker, args, num_processes=num_processes, use_port=str(port or _free_port()))
        except Exception as e:
            raise _worker_error(tmp, num_processes, e) from None
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
            _restore_kernel_state(kernel)
        path = os.path.join(tmp, "result.pt")
        # not a user file: rank 0 of this very call wrote train_fn's result (any object) into a private temp folder
        return torch.load(path, weights_only=False) if os.path.exists(path) else None


def why_not_launch(num_processes: int, device: str = "auto") -> str | None:
    """``None`` when ``launch(train_fn, num_processes=num_processes, device=device)`` would really run that many
    processes here; otherwise one sentence saying why not (a notebook prints it instead of pretending)."""
    try:
        use_cuda = _wants_cuda(device)
    except ValueError as e:
        return str(e)
    if use_cuda:
        count, what = torch.cuda.device_count(), "GPU"
    else:
        count, what = os.cpu_count() or 1, "CPU core"
    if num_processes < 2:
        return (f"num_processes={num_processes}: data-parallel training needs at least 2 processes (one process "
                "is the plain training above)")
    if num_processes > count:
        return (f"this machine has {count} {what}{'s' * (count != 1)}, fewer than the {num_processes} processes "
                f"asked for" + (": one process per GPU is what makes it faster; with one GPU there is nothing to "
                                "split (use device 'cpu' to see the mechanics on CPU processes)" if use_cuda else ""))
    return None


def launch_section(train_fn, enabled: bool, num_processes: int, device="auto"):
    """``(history, seconds)`` of ``launch(train_fn, num_processes=..., device=...)`` for a notebook's optional
    multi-process section; when it is off (``enabled=False``) or could not really run that many processes here,
    one printed line says why and the result is ``(None, None)``."""
    why = why_not_launch(num_processes, device) if enabled else "ddp = False (set ddp = True in the parameters cell)"
    if why:
        print("This section did not run:", why)
        return None, None
    t0 = time.perf_counter()
    history = launch(train_fn, num_processes=num_processes, device=device)
    return history, time.perf_counter() - t0


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


def _kernel_state() -> tuple:
    """What a launch may change in the calling process (a 1-process launch runs train_fn right here)."""
    import tqdm.auto
    return torch.get_num_threads(), tqdm.auto.tqdm


def _restore_kernel_state(state: tuple) -> None:
    import tqdm.auto
    threads, bar = state
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    tqdm.auto.tqdm = bar


def _text_progress_bars() -> None:
    """A forked worker cannot reach the notebook front-end (its widget messages are dropped): text bars instead,
    on stdout (tqdm's default, stderr, shows as a pink error block in a notebook)."""
    import sys
    import tqdm.auto
    import tqdm.std

    class StdoutBar(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("file", sys.stdout)
            super().__init__(*args, **kwargs)
    tqdm.auto.tqdm = StdoutBar


class _without_launch_banner:
    """Drop accelerate's "Launching training on 2 CUDAs." line: it names the device type accelerate guesses (CUDA
    on a machine without a GPU), while ``launch`` has already printed what it really starts. Everything else
    written to stdout passes through unchanged."""

    def __enter__(self):
        import sys
        self.stdout = sys.stdout
        outer = self

        class Filter:
            dropped = False

            def write(self, text):
                if text.startswith("Launching training on") or (self.dropped and text == "\n"):
                    self.dropped = not self.dropped     # the banner, then print's own newline
                    return len(text)
                return outer.stdout.write(text)

            def __getattr__(self, name):
                return getattr(outer.stdout, name)
        sys.stdout = Filter()
        return self

    def __exit__(self, *exc):
        import sys
        sys.stdout = self.stdout
        return False


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
        from ..env import input_cells
        cells = input_cells()
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
