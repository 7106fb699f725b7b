"""Everything that shows a training live, in one place.

- :mod:`ftkit.ui.live`: the capability probe (is a widget front-end connected?) and :class:`LiveFigure`, the
  throttled ``FigureWidget`` with a static fallback that :class:`LivePlot`, the dashboard and the
  gradient-descent explorer share.
- :mod:`ftkit.ui.dashboard`: :class:`TrainingDashboard` (LR slider, Stop, Pause/Resume, LR finder, smoothing).
- :mod:`ftkit.ui.run`: ``fit_live`` / ``await fit_live_async`` with ``dashboard="auto"``.

``ftkit.ui`` re-exports the same names.
"""
from .dashboard import TrainingDashboard
from .live import Frontend, LiveFigure, LivePlot, last_probe, probe_frontend, probe_frontend_sync
from .run import fit_live, fit_live_async

__all__ = ["TrainingDashboard", "LiveFigure", "LivePlot", "Frontend", "probe_frontend", "probe_frontend_sync",
           "last_probe", "fit_live", "fit_live_async"]
