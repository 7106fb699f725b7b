"""Sweeps: run a notebook over a grid or a search of its parameters (each trial one papermill run in its own
kernel; the study in SQLite; local processes or Ray tasks), and compare the runs in one view.

``ftkit.sweep(...)`` is :func:`sweep` (this module is callable); ``python -m ftkit sweep`` is its command line
(:mod:`ftkit.sweep.cli`); :func:`view` / :func:`compare_runs` read a sweep folder, finished or still running.
Needs the ``sweep`` extra (``pip install 'ftkit[sweep]'``: Optuna, Ray)."""
from __future__ import annotations

import sys
import types

from .space import Param, SweepError, parse_param
from .study import locate_notebook, results_table, sweep
from .trial import read_metric

__all__ = ["sweep", "view", "compare_runs", "load_sweep", "best_parameters", "Param", "SweepError", "parse_param",
           "read_metric", "results_table", "locate_notebook"]


def __getattr__(name):        # the view needs plotly (ftkit.plots): loaded on first use
    if name in ("view", "compare_runs", "load_sweep", "best_parameters", "SweepView"):
        from . import compare as module
        return getattr(module, name)
    raise AttributeError(f"module 'ftkit.sweep' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``ftkit.sweep(...)`` runs :func:`sweep`; ``ftkit.sweep.view`` etc. stay attributes of the module."""

    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
