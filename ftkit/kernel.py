"""The running IPython kernel, read in one place: is there one, can a busy cell serve widget messages, what did the
cells say, is this Colab. ``ftkit.notebook`` (the parameters cell), ``ftkit.train.launcher`` (cells that touched
CUDA) and ``ftkit.ui`` (the live dashboard) all ask here. Imports nothing from ftkit; IPython only when there.
"""
from __future__ import annotations

import importlib.util
import sys

__all__ = ["ipython_shell", "ipython_kernel", "can_poll", "ui_events", "input_cells", "in_colab"]


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
