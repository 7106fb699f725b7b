"""A plotly ``FigureWidget`` that survives a browser reload.

plotly's ``FigureWidget`` sends every change (restyle, relayout, new traces) as a one-off message and keeps its
synced state (``_widget_data``, ``_widget_layout``) as it was when the widget was created or displayed. After a
page reload, the front-end rebuilds the widget from that state: a figure whose traces were added or changed since
comes back empty, and later restyles address traces the page no longer has (nothing moves). This subclass keeps
the synced state pointing at the figure's live data after each change — no copy and no extra message — so a
reload redraws the figure as it is now.
"""
from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["FigureWidget"]


class FigureWidget(go.FigureWidget):
    """``go.FigureWidget`` whose state, as a reloaded page asks for it, is the current figure."""

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
