"""Small shared helpers: seeding, device choice and the package's one set of value checks.

torch loads on first use (seeding, a device): ``ftkit.notebook``'s checks and the sweep's processes run without it.

Processes that run notebooks: ``skip_iri_grammar`` (they start 2 s sooner), ``poll_kernels_in_slices`` (a missed
wakeup costs a second, not a cell's timeout).

Files: ``atomic_write`` (never a torn file) and ``check_writable`` (a folder proven writable before work starts).
The checks (``check_number``, ``check_int`` with ``whole_number``, ``choose``, ``check_keys``, ``did_you_mean``) word each mistake one
way; ``fit``, the factories (``make_optimizer``, ``make_loss``, ``make_scheduler``) and ``ftkit.notebook.setup``
all use them."""
from __future__ import annotations

import contextlib
import difflib
import glob
import math
import os
import random
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["seed_everything", "DEVICE_NAMES", "parse_device", "get_device", "check_number", "check_int",
           "whole_number", "normalize_name", "did_you_mean", "choose", "check_keys", "atomic_write", "check_writable",
           "skip_iri_grammar", "poll_kernels_in_slices", "kernel_channel_class"]


# Writers that live in rooms above the bases (plotly pages), registered by the package root (ftkit/__init__.py):
# the dependency points down, and ``History.export_html`` still reads as a method.
EXPORTERS: dict = {}


def seed_everything(seed: int = 0, deterministic: bool = False) -> int:
    """Seed Python, NumPy and torch (CPU and every CUDA device) with one number.

    ``deterministic=True`` also asks cuDNN/cuBLAS for deterministic kernels (slower on GPU);
    on CPU the default kernels are already deterministic.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed!r}; e.g. seed_everything(0)"
                         + (" (a string: write the number without quotes)" if isinstance(seed, str) else ""))
    import torch
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # reaches child processes only (this one's hash seed is fixed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed


DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def parse_device(device) -> str:
    """The device's name if it is written as ``get_device`` takes it — ``"auto"``, ``"cpu"``, ``"cpu:N"`` (what torch
    prints for a tensor's device), ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device`` (any case, spaces
    around it ignored) — without asking whether it is there; else one error listing them, with ``"gpu"`` pointed to
    ``"cuda"`` and ``"meta"`` (shapes without data) explained."""
    text = str(device) if _is_torch_device(device) else device
    if isinstance(text, str):
        word = text.strip().lower()
        base, colon, index = word.partition(":")
        if base in DEVICE_NAMES and (not colon or base in ("cpu", "cuda", "mps") and index.isdigit()):
            return word
        if base == "meta":
            raise ValueError(f"device {device!r} holds no data (shapes only), so nothing can be trained or evaluated "
                             "on it; use 'auto', 'cpu' or 'cuda'")
    hint = ""
    if isinstance(text, str):
        word = text.strip().lower()
        hint = ("; did you mean 'cuda'? (PyTorch calls an NVIDIA GPU 'cuda')" if word.startswith("gpu")
                else did_you_mean(word, DEVICE_NAMES))
    raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:0' or 'mps'{hint}")


def _is_torch_device(value) -> bool:
    """``value`` is a ``torch.device`` (without importing torch: one can exist only once torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.device)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda → mps → cpu; ``"cpu"`` (or ``"cpu:N"``), ``"cuda"``, ``"cuda:N"`` or ``"mps"`` must be
    there."""
    import torch
    if isinstance(device, torch.device) and device.type != "meta":
        return device
    name = parse_device(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use device='auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ValueError(f"device {device!r} asked for, but this machine has {n} CUDA GPU{'s' if n != 1 else ''} "
                         f"(cuda:0 to cuda:{n - 1}); use one of them, or 'cuda' for the first")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} asked for, but MPS (Apple GPU) is not available here; "
                         "use device='auto' or 'cpu'")
    return dev


def check_number(name: str, value, *, positive: bool = False, allow_zero: bool = True) -> float:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite, non-negative number."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, (str, bytes)):  # float("0.1") works, but the string itself would travel on
        raise ValueError(f"{name} must be a number, got {value!r} (a string: write it without quotes)")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if x < 0 or (x == 0 and (positive or not allow_zero)):
        need = "> 0" if (positive or not allow_zero) else ">= 0"
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return x


def whole_number(minimum: int | None = 1, maximum: int | None = None) -> str:
    """The one wording of what a count must be: ``"a whole number >= 1"``, ``"a whole number from 1 to 5"``,
    ``"a whole number"`` (no bound). :func:`check_int` and ``ftkit.notebook.Int`` both say it this way."""
    if minimum is not None and maximum is not None:
        return f"a whole number from {minimum} to {maximum}"
    if minimum is not None:
        return f"a whole number >= {minimum}"
    return "a whole number" + (f" <= {maximum}" if maximum is not None else "")


def check_int(name: str, value, minimum: int | None = 1, meaning: str = "", *, maximum: int | None = None) -> int:
    """``value`` as an int, or ``ValueError``: ``"epochs must be a whole number >= 1, got 2.5"`` (``meaning``,
    e.g. ``" (batches per optimizer step)"``, goes after the bound). Ints and numpy integers only: bools, floats
    (even 3.0) and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {whole_number(minimum, maximum)}{meaning}, got {value!r}")
    return int(value)


def normalize_name(name):
    """The one spelling rule for registry keys: case and dashes are forgiven (``"Linear-Warmup"`` →
    ``"linear_warmup"``); anything that is not a string passes through unchanged."""
    return name.strip().lower().replace("-", "_") if isinstance(name, str) else name


def did_you_mean(word, choices) -> str:
    """``"; did you mean 'cosine'?"`` for the closest of ``choices`` to ``word``, or ``""``: the one wording of the
    hint every check gives where a name is chosen."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1) if isinstance(word, str) else []
    return f"; did you mean {close[0]!r}?" if close else ""


def choose(kind: str, name: str, registry: dict):
    """Look ``name`` up in ``registry`` (after :func:`normalize_name`) or fail listing the choices (timm style)
    and the nearest one."""
    key = normalize_name(name)
    if key not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(registry))}"
                         + did_you_mean(key, sorted(registry)))
    return registry[key]


def check_keys(keys, accepted, where: str, owner: str = "it") -> None:
    """Raise ``ValueError`` at the first of ``keys`` not in ``accepted``: ``"make_optimizer has an unknown option
    'weight_decy': did you mean 'weight_decay'? optimizer 'adamw' takes …"``."""
    for key in keys:
        if key not in accepted:
            hint = did_you_mean(key, sorted(accepted))
            raise ValueError(f"{where} has an unknown option {key!r}: {hint[2:] + ' ' if hint else ''}{owner} takes "
                             f"{', '.join(sorted(accepted))}")


# --------------------------------------------------------------------------- files
def atomic_write(path, data: bytes | None = None, *, save=None) -> str:
    """Write ``data`` (or call ``save(file)``) to a temp file beside ``path``, fsync, then rename over ``path``:
    readers see the old file or the new one, never a torn one. Temp files left by killed writers are removed."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for orphan in glob.glob(glob.escape(path) + ".tmp-*"):
        pid = orphan.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.remove(orphan)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            save(f) if save is not None else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def check_writable(folder, who: str, example: str) -> str:
    """Create ``folder`` and prove a file can be written in it (a probe file, removed); else one clear error
    at ``fit`` start, before anything trains. Root ignores permission bits, so only a real write tells."""
    folder = os.fspath(folder) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ftkit-write-test-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f"{who} cannot write to the folder {folder!r} ({type(e).__name__}: {e.strerror or e}); "
                              f"give a folder you can write to, e.g. {example}. Nothing has been trained yet") from None
    return folder


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def skip_iri_grammar() -> None:
    """For a process that reads, writes or runs notebooks (nbformat, papermill) and nothing that checks IRIs:
    jsonschema, which nbformat imports, builds rfc3987-syntax's IRI grammar when it is imported (1.9 CPU-s measured
    on a 2-core machine, at each such process's start) although nbformat's schema has no IRI to check. Call it
    before the first nbformat import; jsonschema then leaves the ``iri`` format unchecked, as it does where that
    package is absent."""
    sys.modules.setdefault("rfc3987_syntax", None)


def poll_kernels_in_slices(every: float = 1.0) -> None:
    """For a process that runs notebooks through jupyter_client's asyncio client (papermill, nbclient): wait for
    kernel messages in slices of ``every`` seconds.

    pyzmq's asyncio poll can miss the wakeup of a message that arrives while the machine is loaded (ZeroMQ signals
    new messages on an edge-triggered descriptor); the message then waits for the poll's own timeout. Under
    papermill that is a cell's reply waiting for the cell timeout, or an output waiting for the next message. Seen
    in ftkit's test suite: a cell replied in 0.04 s, and papermill read the reply 120 s later, at its timeout. Each
    slice ends with the same check of the socket that the full timeout would, so the only change is that a missed
    wakeup costs at most ``every`` seconds. Safe to call more than once."""
    from queue import Empty

    from jupyter_client.asynchronous.client import AsyncKernelClient
    channel = kernel_channel_class(AsyncKernelClient)
    get_msg = channel.get_msg
    if getattr(get_msg, "in_slices", False):
        return

    async def get_msg_in_slices(self, timeout: float | None = None):
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = every if end is None else max(0.0, min(every, end - time.monotonic()))
            try:
                return await get_msg(self, timeout=left)
            except Empty:
                if end is not None and time.monotonic() >= end:
                    raise

    get_msg_in_slices.in_slices = True
    channel.get_msg = get_msg_in_slices


def kernel_channel_class(client_class) -> type:
    """The class of a jupyter_client kernel client's channels: ``AsyncZMQSocketChannel`` for the asyncio client in
    jupyter_client 8, ``ZMQSocketChannel`` in 7 (Colab's)."""
    return client_class.class_traits()["shell_channel_class"].default_value
