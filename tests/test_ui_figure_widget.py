"""ftkit.ui.figure_widget: the FigureWidget's front-end code. Its behaviour (drawn, redrawn after a reload, following
the sliders) is checked in a real browser: tests/test_browser.py."""
from __future__ import annotations

import plotly.graph_objects as go
import pytest

from ftkit.ui.figure_widget import _ANYWIDGET, FigureWidget


@pytest.mark.skipif(not _ANYWIDGET, reason="plotly < 6: the FigureWidget is an ipywidget with its own extension")
def test_a_small_loader_is_the_widgets_code_and_plotlys_code_travels_beside_it():
    """plotly >= 6: what anywidget imports inside its start window is the few-KB loader; plotly's widget code (≈ 5 MB)
    travels as _plotly_esm, and the loader imports that, once per page."""
    state = FigureWidget(go.Figure(go.Scatter(y=[1, 2]))).get_state()
    assert len(state["_esm"]) < 10_000 and 'model.get("_plotly_esm")' in state["_esm"]
    assert state["_plotly_esm"] == str(go.FigureWidget._esm) and len(state["_plotly_esm"]) > 1_000_000
