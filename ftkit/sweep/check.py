"""Refuse a sweep before its first trial: a parameter the notebook does not have, or a value its own checks refuse.

The notebook's ``parameters`` cell and the cell after it that calls ``ftkit.notebook.setup(globals(), ...)`` run
here, in this process, once per value to check (every choice, both ends of every range), with the values injected
the way papermill injects them. So the sweep refuses exactly what a papermill run of that notebook would refuse in
its setup cell, with the same message, seconds before a kernel would have started."""
from __future__ import annotations

import ast
import contextlib
import difflib
import io
import os
import tempfile

from .space import Param, SweepError

__all__ = ["NotebookCells", "read_cells", "check_parameters", "RESERVED"]

RESERVED = ("output_dir",)      # the sweep sets these per trial


class NotebookCells:
    """The parameters cell's source and names, and the setup cell's source (None when the notebook has none)."""

    def __init__(self, path: str, parameters: str, names: list[str], setup: str | None):
        self.path, self.parameters, self.names, self.setup = path, parameters, names, setup


def read_cells(path) -> NotebookCells:
    import nbformat
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SweepError(f"notebook {path!r} not found (working directory {os.getcwd()!r})")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:   # nbformat raises several kinds for a file that is not a notebook
        raise SweepError(f"{path!r} is not a notebook nbformat can read ({type(e).__name__}: {e})") from None
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise SweepError(f"{path!r} has no cell tagged 'parameters': papermill (and so a sweep) has nothing to set. "
                         "Tag the cell that assigns the parameters (View → Cell Toolbar → Tags)")
    cell = code[tagged[0]].source
    try:
        tree = ast.parse(cell)
    except SyntaxError as e:
        raise SweepError(f"{path!r}: its parameters cell is not plain Python ({e})") from None
    names = [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    setup = next((c.source for c in code[tagged[0] + 1:] if "setup(globals()" in c.source), None)
    return NotebookCells(path, cell, names, setup)


def _check_names(cells: NotebookCells, params: list[Param]) -> None:
    for p in params:
        if p.name in RESERVED:
            raise SweepError(f"--param {p.name}: the sweep sets {p.name} itself (each trial writes to "
                             f"DIR/trials/NNNN/); leave it out")
        if p.name not in cells.names:
            near = difflib.get_close_matches(p.name, cells.names, n=1)
            raise SweepError(f"--param {p.name}: {os.path.basename(cells.path)} has no parameter {p.name!r}"
                             + (f"; did you mean {near[0]!r}?" if near else "")
                             + f". Its parameters: {', '.join(cells.names)}")
    if "output_dir" not in cells.names:
        raise SweepError(f"{os.path.basename(cells.path)} has no output_dir parameter: a sweep reads each trial's "
                         "metrics from output_dir/metrics.json, so the notebook must take one")


def _run_setup(cells: NotebookCells, values: dict, cwd: str) -> None:
    """The parameters cell, the injected values, then the setup cell, as a kernel would run them."""
    from ftkit.notebook import ParameterError
    injected = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    ns = {"__name__": "__main__", "In": ["", cells.parameters, injected, cells.setup]}
    here = os.getcwd()
    out = io.StringIO()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(cells.parameters, "<parameters cell>", "exec"), ns)
            ns.update(values)
            exec(compile(cells.setup, "<setup cell>", "exec"), ns)
    except ParameterError as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items() if k not in RESERVED)
        raise SweepError(f"{os.path.basename(cells.path)} refuses {shown}: {e}") from None
    except Exception as e:
        raise SweepError(f"{os.path.basename(cells.path)}'s setup cell failed before any trial "
                         f"({type(e).__name__}: {e})") from None
    finally:
        os.chdir(here)


def check_parameters(notebook, params: list[Param], cwd=None) -> NotebookCells:
    """Refuse (``SweepError``) a ``--param`` the notebook does not have, or any value of it (every choice, both ends
    of a range) that the notebook's setup cell refuses. A notebook without a setup cell gets the name check only."""
    cells = read_cells(notebook)
    _check_names(cells, params)
    if cells.setup is None:
        return cells
    cwd = os.fspath(cwd or os.getcwd())
    with tempfile.TemporaryDirectory(prefix="ftkit-sweep-check-") as tmp:
        base = {p.name: p.endpoints()[0] for p in params}
        tried = []
        for p in params:
            for value in p.endpoints():
                values = {**base, p.name: value, "output_dir": tmp}
                if values not in tried:
                    tried.append(values)
                    _run_setup(cells, values, cwd)
    return cells
