"""Everything that shows a training live, in one place.

- :mod:`ftkit.ui.live`: the capability probe (do core widgets render? does plotly's widget JavaScript load?) and
  :class:`LiveFigure` — a ``FigureWidget``, or a plain plotly figure updated through its display handle where no
  third-party widget JavaScript runs (Colab, classic Notebook; ``FTKIT_LIVE_FIGURE=static|widget`` forces it) —
  that :class:`LivePlot`, the dashboard and the gradient-descent explorer share.
- :mod:`ftkit.ui.dashboard`: :class:`TrainingDashboard` (LR slider and box, Stop, Pause/Resume, LR finder,
  smoothing), core ipywidgets only (7 and 8).
- :mod:`ftkit.ui.run`: ``fit_live`` / ``await fit_live_async`` with ``dashboard="auto"``, one flow for both.

``ftkit.ui`` re-exports the same names.
"""
from .dashboard import TrainingDashboard
from .live import Frontend, LiveFigure, LivePlot, last_probe, live_figure_path, probe_frontend, probe_frontend_sync
from .run import fit_live, fit_live_async

__all__ = ["TrainingDashboard", "LiveFigure", "LivePlot", "Frontend", "probe_frontend", "probe_frontend_sync",
           "last_probe", "live_figure_path", "fit_live", "fit_live_async"]
