"""Where ftkit runs: the IPython kernel (if any) and the installed packages, read in one place.

**The kernel** — is there one, can a busy cell serve widget messages, what did the cells say, is this Colab:
``ftkit.notebook`` (the parameters cell), ``ftkit.train.launcher`` (cells that touched CUDA) and ``ftkit.ui`` (the
live dashboard) all ask here. IPython is imported only when it is there.

**The packages** — checked where they are used, with one line that says what to install:
* :func:`require` imports an optional package (``transformers``, ``peft``, ``tensorboard``, ...) and, where it is
  missing, raises one :class:`MissingExtraError` naming the ``pip install "ftkit[extra]"`` that fixes it.
* :func:`check_versions` compares the installed versions with the floors in ``pyproject.toml`` (copied in
  :data:`FLOORS`; a test keeps the two equal) and raises one :class:`OldPackageError` naming each package that is
  too old, the version needed and the ``%pip install`` that fixes it. :func:`ftkit.notebook.setup` calls it before
  any data loads, so a Colab runtime with an older preinstalled package stops at once, not at its first figure.

    transformers = require("transformers")     # transformers is not installed: pip install "ftkit[nlp]"
    check_versions()                                  # nothing, or one error listing what to upgrade

Imports nothing from ftkit.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from types import ModuleType

__all__ = ["ipython_shell", "ipython_kernel", "can_poll", "ui_events", "input_cells", "in_colab", "EXTRAS", "FLOORS", "MissingExtraError", "OldPackageError", "require", "check_versions", "version_of"]


# ----------------------------------------------------------------------------------------------- the kernel

def ipython_shell():
    """The running IPython shell (a kernel's or a terminal's), or None."""
    if "IPython" not in sys.modules:      # nothing imported IPython: no shell can be running
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def ipython_kernel():
    """The running ipykernel, or None (plain Python, a terminal IPython)."""
    return getattr(ipython_shell(), "kernel", None)


def can_poll(kernel) -> bool:
    """True where jupyter-ui-poll can serve widget messages from a busy cell: kernels with ``do_one_iteration``
    (ipykernel 6, Colab). ipykernel 7 removed it; there only an awaiting cell is served."""
    return hasattr(kernel, "do_one_iteration")


def ui_events():
    """jupyter-ui-poll's ``ui_events`` (a sync and async context manager): serve widget messages from a busy cell."""
    try:
        from jupyter_ui_poll import ui_events as events
    except ImportError:
        raise ImportError("the dashboard needs jupyter-ui-poll on this kernel to keep widgets live while training: "
                          "pip install jupyter-ui-poll (or ftkit[notebooks])") from None
    return events()


def input_cells(namespace: dict | None = None) -> list[str]:
    """The sources of the cells run so far (IPython's ``In``), oldest first; ``[]`` outside IPython. ``namespace``:
    a notebook's globals (their ``In``/``_ih``), else the running shell's."""
    if namespace is None:
        shell = ipython_shell()
        namespace = getattr(shell, "user_ns", None) or {}
    cells = namespace.get("In") or namespace.get("_ih")
    return [str(c) for c in cells] if isinstance(cells, list) else []


def in_colab() -> bool:
    """True in a Google Colab runtime (its ``google.colab`` package is there)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):     # no ``google`` package at all
        return False


# --------------------------------------------------------------------------------------------- the packages
# import name -> (distribution on PyPI, the ftkit extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "transformers": ("transformers", "nlp"),
    "tokenizers": ("tokenizers", "nlp"),
    "peft": ("peft", "nlp"),
    "datasets": ("datasets", "nlp"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "bitsandbytes": ("bitsandbytes", "qlora"),
    "jupyter_ui_poll": ("jupyter-ui-poll", "colab"),
    "optuna": ("optuna", "sweep"),
    "papermill": ("papermill", "notebooks"),
}

# distribution -> the lowest version ftkit supports (pyproject.toml's floors, base and extras)
FLOORS: dict[str, str] = {
    "torch": "2.6", "torchvision": "0.21", "numpy": "2.0", "pandas": "2.2.2", "tqdm": "4.66", "plotly": "5.24",
    "ipywidgets": "7.7", "anywidget": "0.9", "accelerate": "1.0",
    "transformers": "5.0", "tokenizers": "0.22", "peft": "0.18", "datasets": "3.0",
    "tensorboard": "2.18", "wandb": "0.17", "bitsandbytes": "0.45", "jupyter-ui-poll": "1.0", "optuna": "4.0",
}


class MissingExtraError(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that installs it."""


class OldPackageError(ImportError):
    """An installed package is older than ftkit's floor for it; the message says how to upgrade."""


def require(module: str, extra: str | None = None, *, purpose: str = "") -> ModuleType:
    """Import ``module`` (``"transformers"``, ``"peft.utils"``, ``"torch.utils.tensorboard"``) or raise one
    :class:`MissingExtraError`: ``<package> is not installed: pip install "ftkit[<extra>]"`` (with ``purpose``:
    ``<purpose> needs <package>, which is not installed: ...``).

    ``extra`` defaults to the one :data:`EXTRAS` lists for the module's top-level package. An ImportError raised
    *inside* an installed package (a broken dependency of it) is not hidden: it propagates as it is."""
    top = module.split(".")[0]
    if module == "torch.utils.tensorboard" or module.startswith("torch.utils.tensorboard."):
        top = "tensorboard"     # torch ships the writer; the tensorboard package is what may be missing
    package, default_extra = EXTRAS.get(top, (top, None))
    extra = extra or default_extra
    try:
        missing = importlib.util.find_spec(top) is None     # looks for the package without importing it
    except ValueError:                                      # in sys.modules without a spec (a stand-in): present
        missing = sys.modules.get(top) is None
    if missing:
        fix = f'pip install "ftkit[{extra}]"' if extra else f"pip install {package}"
        what = f"{purpose} needs {package}, which is not installed" if purpose else f"{package} is not installed"
        raise MissingExtraError(f"{what}: {fix}", name=top)
    return importlib.import_module(module)


def version_of(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """``"2.11.0+cu128"`` -> ``(2, 11, 0)``; pre-releases count as their release (``"5.0.0rc1"`` -> ``(5, 0, 0)``)."""
    numbers = re.match(r"\d+(?:\.\d+)*", version)
    parts = tuple(int(x) for x in numbers.group(0).split(".")) if numbers else (0,)
    return parts + (0,) * (4 - len(parts))


def check_versions(packages=None, *, floors: dict[str, str] | None = None, notebook: bool | None = None) -> None:
    """Raise one :class:`OldPackageError` when an installed package (of ``packages``, default every one in
    :data:`FLOORS`) is older than its floor; packages that are not installed are skipped (:func:`require` speaks
    for those where they are used). ``notebook`` (default: in a kernel) writes the fix as ``%pip install``."""
    floors = FLOORS if floors is None else floors
    if notebook is None:
        notebook = "ipykernel" in sys.modules
    old = []
    for name in (packages or floors):
        have = version_of(name)
        if have is not None and _release(have) < _release(floors[name]):
            old.append((name, have, floors[name]))
    if not old:
        return
    pins = " ".join(f'"{name}>={need}"' for name, _, need in old)
    what = "; ".join(f"{name} {have} is installed, ftkit needs {name} >= {need}" for name, have, need in old)
    restart = " then restart the session (Colab: Runtime > Restart session)" if notebook else ""
    raise OldPackageError(f"{what}: {'%' if notebook else ''}pip install -U {pins}{restart}")
