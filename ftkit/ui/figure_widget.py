"""A plotly ``FigureWidget`` that survives a browser reload.

plotly's ``FigureWidget`` sends every change (restyle, relayout, new traces) as a one-off message and keeps its
synced state (``_widget_data``, ``_widget_layout``) as it was when the widget was created or displayed. After a
page reload, the front-end rebuilds the widget from that state: a figure whose traces were added or changed since
comes back empty, and later restyles address traces the page no longer has (nothing moves). This subclass keeps
the synced state pointing at the figure's live data after each change — no copy and no extra message — so a
reload redraws the figure as it is now.

On plotly >= 6 the figure is an anywidget whose front-end code (plotly.js and the widget, about 5 MB) is parsed once
per widget, inside anywidget's start window (2 s in anywidget 0.11): on a reloaded page with three figures, or on
a busy machine, a figure that misses it never draws and ignores every later change. Here the widget's code is a
small loader (``figure_widget.js``): plotly's code is imported once per page after the window, and receives the
changes that arrived meanwhile. The code itself travels once per kernel, as bytes, in one :class:`PlotlyCode`
model every figure refers to: not as 5 MB of JSON inside each figure's state. A reloaded page asks the kernel for
every widget's state in one reply and gives up on it after 4 s (ipywidgets 8), and a view whose model is not back
within 2 s shows "model not found": with the explorer's three figures that reply was 15 MB of JSON, and a busy
machine missed both limits.
"""
from __future__ import annotations

from pathlib import Path

import ipywidgets
import plotly.graph_objects as go
import traitlets

__all__ = ["FigureWidget", "PlotlyCode", "plotly_code"]


# plotly >= 6: its FigureWidget is an anywidget, whose front-end code is the class's ``_esm`` (before: an ipywidget
# with its own JupyterLab extension)
_ANYWIDGET = hasattr(go.FigureWidget, "_esm")


class PlotlyCode(ipywidgets.Widget):
    """plotly's widget code as bytes, in a model with no view: one per kernel (:func:`plotly_code`), shared by every
    :class:`FigureWidget`."""
    code = traitlets.Bytes().tag(sync=True)


_code: PlotlyCode | None = None


def plotly_code() -> PlotlyCode:
    """This kernel's :class:`PlotlyCode`, made on the first figure (plotly reads its file then) and again if it was
    closed (``Widget.close_all()``)."""
    global _code
    if _code is None or _code.comm is None:
        _code = PlotlyCode(code=str(go.FigureWidget._esm).encode("utf-8"))
    return _code


class FigureWidget(go.FigureWidget):
    """``go.FigureWidget`` whose state, as a reloaded page asks for it, is the current figure."""

    if _ANYWIDGET:
        _esm = (Path(__file__).parent / "figure_widget.js").read_text(encoding="utf-8")
        _plotly_code = traitlets.Instance(PlotlyCode).tag(sync=True, **ipywidgets.widget_serialization)

        @traitlets.default("_plotly_code")
        def _shared_code(self):
            return plotly_code()

    def _keep(self):
        # set the trait values directly: assigning them would send the whole figure again to the page
        self._trait_values["_widget_data"] = self._data
        self._trait_values["_widget_layout"] = self._layout_obj._props

    def _send_restyle_msg(self, *args, **kwargs):
        super()._send_restyle_msg(*args, **kwargs)
        self._keep()

    def _send_relayout_msg(self, *args, **kwargs):
        super()._send_relayout_msg(*args, **kwargs)
        self._keep()

    def _send_update_msg(self, *args, **kwargs):
        super()._send_update_msg(*args, **kwargs)
        self._keep()

    def _send_addTraces_msg(self, *args, **kwargs):
        super()._send_addTraces_msg(*args, **kwargs)
        self._keep()

    def _send_deleteTraces_msg(self, *args, **kwargs):
        super()._send_deleteTraces_msg(*args, **kwargs)
        self._keep()

    def _send_moveTraces_msg(self, *args, **kwargs):
        super()._send_moveTraces_msg(*args, **kwargs)
        self._keep()
