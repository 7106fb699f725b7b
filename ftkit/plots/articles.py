"""Figures of docs/seed_errors.md's measured errors: what an article prints or computes next to the truth.

Plain data in (lists of numbers per label), so the same figure serves every notebook section that shows an
article's number beside the measured one.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["lines_figure", "side_by_side_figure", "bars_figure"]

_DASH = ("solid", "dash", "dot", "dashdot", "longdash")


def _add(fig, series: dict, x=None, row=None, col=None, log_y: bool = False):
    for i, (label, ys) in enumerate(series.items()):
        xs = list(x) if x is not None else list(range(1, len(ys) + 1))
        fig.add_trace(go.Scatter(x=xs[:len(ys)], y=list(ys), name=label, mode="lines+markers" if len(ys) <= 30 else "lines",
                                 line=dict(dash=_DASH[i % len(_DASH)])), row=row, col=col)
    if log_y:
        fig.update_yaxes(type="log", row=row, col=col)


def lines_figure(series: dict, *, x=None, title: str = "", xaxis_title: str = "epoch", yaxis_title: str = "",
                 log_y: bool = False, height: int = 360) -> go.Figure:
    """One line per label (``label -> values``), x = 1, 2, … unless ``x`` is given; an article's printed column
    and the measured one read on the same axes."""
    fig = go.Figure()
    _add(fig, series, x, log_y=log_y)
    return fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, height=height)


def side_by_side_figure(left: dict, right: dict, *, titles=("", ""), x=None, xaxis_title: str = "epoch",
                        yaxis_titles=("", ""), title: str = "", height: int = 380) -> go.Figure:
    """Two panels of lines (e.g. loss left, accuracy right)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
    _add(fig, left, x, row=1, col=1)
    _add(fig, right, x, row=1, col=2)
    fig.update_xaxes(title_text=xaxis_title)
    fig.update_yaxes(title_text=yaxis_titles[0], row=1, col=1)
    fig.update_yaxes(title_text=yaxis_titles[1], row=1, col=2)
    return fig.update_layout(title=title, height=height)


def bars_figure(values: dict, *, title: str = "", yaxis_title: str = "", fmt: str = ".4f", height: int = 340,
                zoom: bool | None = None) -> go.Figure:
    """One bar per label, its value printed on it (``fmt``): a reported number beside the measured one.

    Bars that differ by less than 5 % of their size (1.6256 against 1.6252) look equal on an axis from 0, so by
    default (``zoom=None``) such an axis is zoomed onto the bars' tops and a note on the figure says that it does
    not start at 0; ``zoom=False`` keeps the axis from 0, ``zoom=True`` always zooms."""
    ys = [float(v) for v in values.values()]
    fig = go.Figure(go.Bar(x=list(values), y=ys, text=[format(v, fmt) for v in ys], textposition="outside",
                           cliponaxis=False, name=yaxis_title or title or "value", showlegend=False))
    fig.update_layout(title=title, yaxis_title=yaxis_title, height=height)
    low, high = (min(ys), max(ys)) if ys else (0.0, 0.0)
    spread, size = high - low, max((abs(v) for v in ys), default=0.0)
    if zoom is None:
        zoom = size > 0 and spread < 0.05 * size and min(ys) > 0
    if zoom:
        pad = spread if spread > 0 else 0.01 * size
        fig.update_yaxes(range=[low - 2 * pad, high + 2 * pad])
        fig.add_annotation(text=f"y axis zoomed: it starts at {low - 2 * pad:{fmt}}, not 0 (the bars differ by "
                                f"{spread:{fmt}})", xref="paper", yref="paper", x=0, y=1.0, xanchor="left",
                           yanchor="bottom", showarrow=False, font=dict(size=11))
    return fig
