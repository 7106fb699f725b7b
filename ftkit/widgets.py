"""The training dashboard and live views: ``from ftkit.widgets import fit_live_async, TrainingDashboard``.

The code lives in the :mod:`ftkit.ui` package (``live``: the front-end probe and the shared live figure;
``dashboard``: the controls; ``run``: ``fit_live`` / ``fit_live_async``); this module keeps the short import.
"""
from .ui import (Frontend, LiveFigure, LivePlot, TrainingDashboard, fit_live, fit_live_async, last_probe,
                 probe_frontend, probe_frontend_sync)

__all__ = ["TrainingDashboard", "fit_live", "fit_live_async", "LiveFigure", "LivePlot", "Frontend",
           "probe_frontend", "probe_frontend_sync", "last_probe"]
