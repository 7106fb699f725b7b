"""ftkit.ui.figure_widget: the FigureWidget's front-end code. Its behaviour (drawn, redrawn after a reload, following
the sliders) is checked in a real browser: tests/test_browser.py."""
from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest

from ftkit.ui.figure_widget import _ANYWIDGET, FigureWidget


@pytest.mark.skipif(not _ANYWIDGET, reason="plotly < 6: the FigureWidget is an ipywidget with its own extension")
def test_a_small_loader_is_the_widgets_code_and_plotlys_code_travels_once_as_bytes():
    """plotly >= 6: what anywidget imports inside its start window is the few-KB loader; plotly's widget code (≈ 5 MB)
    travels once per kernel, as bytes (a binary buffer, not JSON), in the one model every figure refers to."""
    import ipywidgets
    from ftkit.ui.figure_widget import PlotlyCode
    first, second = (FigureWidget(go.Figure(go.Scatter(y=[1, 2]))) for _ in range(2))
    state = first.get_state()
    assert len(state["_esm"]) < 10_000 and 'get("_plotly_code")' in state["_esm"]
    assert len(json.dumps(state, default=str)) < 20_000                        # no copy of plotly's code in it
    holder = first._plotly_code
    assert isinstance(holder, PlotlyCode) and second._plotly_code is holder
    assert state["_plotly_code"] == f"IPY_MODEL_{holder.model_id}"
    code = holder.get_state()["code"]
    assert code.decode("utf-8") == str(go.FigureWidget._esm) and len(code) > 1_000_000
    _, buffer_paths, buffers = ipywidgets.widgets.widget._remove_buffers(holder.get_state())
    assert buffer_paths == [["code"]] and len(buffers[0]) == len(code)        # sent as a binary buffer
    holder.close()                                                            # e.g. Widget.close_all()
    third = FigureWidget(go.Figure())
    assert third._plotly_code is not holder and third._plotly_code.comm is not None
