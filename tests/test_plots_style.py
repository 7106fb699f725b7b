"""The figure style and the figure check: every problem the check looks for is caught on a figure that has it and
absent from ftkit's figures; the explorer's widget state is valid JSON, named, categorical with fixed ranges, and
what a reloaded page would get is the current figure."""
from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from ftkit.plots.style import figure_problems, json_safe, text_sides


def test_the_check_catches_each_problem():
    bad = go.Figure(go.Scatter(x=[1, 2], y=[1, 2]))                           # an unnamed legend entry
    assert any("without a name" in p for p in figure_problems(bad))
    nan = {"data": [{"type": "scatter", "name": "a", "y": [1.0, float("nan")]}], "layout": {}}
    assert any("NaN/inf" in p for p in figure_problems(nan))
    stepped = [[0, "black"], [0.5, "black"], [0.5, "grey"], [1, "grey"]]
    heat = go.Figure(go.Heatmap(z=[[0, 1]], colorscale=stepped))               # categories without a range
    assert any("categorical heatmap" in p for p in figure_problems(heat))
    assert figure_problems(go.Figure(go.Heatmap(z=[[0, 1]], colorscale=stepped, zmin=-0.5, zmax=1.5,
                                                zauto=False))) == []
    # the rate-vs-lr labels: add_vline's annotation in data units on a log axis lands far outside
    log = go.Figure(go.Scatter(x=[0.06, 4.0], y=[0.5, 0.9], name="rate"))
    log.add_vline(x=2.0, annotation_text="gd edge 2")
    log.update_xaxes(type="log")
    assert any("outside its axis" in p for p in figure_problems(log))
    log.layout.annotations = []
    log.add_annotation(x=np.log10(2.0), y=0.9, text="gd edge 2", showarrow=False)
    assert figure_problems(log) == []


def test_json_safe_and_text_sides():
    assert json_safe(np.array([[1.0, np.nan], [np.inf, 2.0]])) == [[1.0, None], [None, 2.0]]
    assert json.dumps(json_safe([1.0, float("-inf")]), allow_nan=False) == "[1.0, null]"
    assert text_sides([0, 10, 90, 100], 0, 100) == ["top right", "top right", "top left", "top left"]


def test_ftkit_figures_pass_the_check_and_share_one_style():
    from ftkit.optviz import basins, make_surface, race
    from ftkit.plots.descent import basin_figure, rate_figure, surface_figure
    himmelblau, booth = make_surface("himmelblau"), make_surface("booth")
    paths = race(himmelblau, ["gd", "momentum", "adam"], start=(0, -4), steps=40)
    diverged = race(booth, {"gd": {"lr": 0.6}}, steps=40)
    figures = [surface_figure(himmelblau, paths, grid=15, show_3d=True, title="six"),
               surface_figure(booth, diverged, grid=15, title="diverged"),
               basin_figure(basins(himmelblau, ["gd", "nesterov"], n=4, steps=60), title="basins"),
               rate_figure(np.array([0.06, 1.0, 4.0]), {"gd": [0.5, np.nan, 0.9]}, {"gd": [0.5, 0.6, 0.9]},
                           {"gd": 2.0}, {"gd": (1.0, 0.5)}, title="rate")]
    for fig in figures:
        assert figure_problems(fig) == [], fig.layout.title.text
        assert fig.layout.width is None and fig.layout.legend.x is None      # follows the cell; the template's …
        assert fig.layout.template.layout.legend.x == 1.02                    # … legend, outside the plots
        assert fig.layout.xaxis.exponentformat == "power"
    [edge] = [a for a in figures[3].layout.annotations if "edge" in a.text]
    assert edge.x == pytest.approx(np.log10(2.0))                             # data units of the log axis
    scene = figures[0].layout.scene                                            # 3-D ranges: the surface's box
    assert list(scene.xaxis.range) == [-5, 5] and scene.zaxis.autorange is False
    notes = [a for a in figures[1].layout.annotations if a.name == "notes"][0]
    assert "diverged" in notes.text.lower() and notes.xref == "x domain"      # inside the plot, not on a title


def test_explorer_state_is_json_named_categorical_and_survives_a_reload():
    pytest.importorskip("anywidget")
    from ftkit.ui.gd_explorer import GDExplorer
    explorer = GDExplorer("himmelblau", optimizers=("gd", "nesterov"), steps=60, grid=15, basin_grid=4, lr=0.05)
    for fig in (explorer.figure, explorer.basin_figure):
        from ipywidgets.widgets.widget import _remove_buffers
        state = _remove_buffers(fig.get_state())[0]   # what a reloaded page receives, as ipywidgets sends it
        json.dumps({k: state[k] for k in ("_widget_data", "_widget_layout")}, allow_nan=False)
        assert len(state["_widget_data"]) == len(fig.data)
        assert figure_problems(go.Figure(fig)) == []
    legend = [t.name for t in explorer.figure.data if t.type == "scatter" and t.showlegend is not False
              and t.visible is not False]
    assert legend[:2] == ["minimum", "start"] and None not in legend
    heat = [t for t in explorer.basin_figure.data if t.meta == "basin:gd"][0]
    assert (heat.zmin, heat.zmax, heat.zauto) == (-0.5, 11.5, False)
    # the colours agree with the status line: category 0 (black) is exactly the diverged share
    z = np.array(heat.z)
    share = explorer.basins.share("gd")
    assert np.mean(z == 0) == pytest.approx(share.get(-2, 0.0))
    assert np.mean(z == 1) == pytest.approx(share.get(-1, 0.0))
    before = [list(t.x) for t in explorer.figure.data if t.meta == "path:gd"][0]
    explorer.lr.value = 0.01                                                    # a slider move …
    after = explorer.figure._widget_data                                        # the synced (reload) state
    path = [t for t in after if t.get("meta") == "path:gd"][0]
    assert list(np.asarray(path["x"], dtype=float)) != before                  # … is in the reload state too


def test_figure_problems_sees_a_key_line_over_the_title_and_a_line_across_bar_values():
    from ftkit.optviz.races import basins
    from ftkit.plots.classification import per_class_figure
    from ftkit.plots.descent import basin_figure
    fig = basin_figure(basins("himmelblau", ["gd", "momentum"], n=6, steps=100), title="basins")
    assert figure_problems(fig) == []
    assert list(fig.layout.xaxis.tickvals) == [-2.5, 0.0, 2.5]     # inside each panel: no "2−2" at the seams
    fig.update_layout(margin=dict(t=90))                            # the old margin: the key line ran into the title
    [problem] = figure_problems(fig)
    assert "'basins': the annotation 'colours: one per minimum" in problem and "overlaps the title" in problem
    bars = per_class_figure([0.5, 0.45, 0.3], ["cat", "dog", "ship"], overall=0.45)
    assert figure_problems(bars) == [] and list(bars.data[0].x) == ["cat<br>50.0%", "dog<br>45.0%", "ship<br>30.0%"]
    old = go.Figure(go.Bar(x=["cat", "dog"], y=[0.5, 0.45], text=["50%", "45%"], name="accuracy"))
    old.add_hline(y=0.45)                                           # the overall line through the 45 % label
    assert figure_problems(old) == ["'untitled': bar values near 0.45 are printed where the horizontal line at 0.45 "
                                    "crosses them"]


def test_the_loss_panel_names_its_quantity_in_its_title_not_beside_its_ticks():
    from ftkit.optviz import make_surface, race
    from ftkit.plots.descent import surface_figure
    s = make_surface("booth")
    fig = surface_figure(s, race(s, ["gd"], steps=20), grid=20)
    assert fig.layout.yaxis2.type == "log" and not fig.layout.yaxis2.title.text
    assert [a.text for a in fig.layout.annotations if (a.text or "").startswith("loss")] == ["loss f(w) − f* (log scale)"]


def test_bars_that_differ_by_little_get_a_zoomed_axis_that_says_so():
    """03's S0-07 bars (1.6256 / 1.6252 / 1.6252) look equal on an axis from 0: the axis zooms onto their tops and a
    note says it does not start at 0; bars that differ a lot keep the axis from 0."""
    from ftkit.plots.articles import bars_figure
    close = bars_figure({"reported": 1.6256, "fresh A": 1.6252, "fresh B": 1.6252}, yaxis_title="loss")
    low, high = close.layout.yaxis.range
    assert 1.62 < low < 1.6252 < 1.6256 < high < 1.63
    assert "not 0" in close.layout.annotations[0].text and figure_problems(close.to_plotly_json()) == []
    apart = bars_figure({"a": 0.2, "b": 0.9})
    assert apart.layout.yaxis.range is None and not apart.layout.annotations
