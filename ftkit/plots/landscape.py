"""Loss-landscape figures: 1-D curves, the spread over direction seeds, contours (with a training path), 3-D
surfaces and side-by-side comparisons. ``log=True`` shows log10(loss); NaN losses stay NaN and show as gaps."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..landscape import Landscape, Trajectory

__all__ = ["landscape_z", "curve_figure", "seed_spread_figure", "contour_figure", "surface3d_figure",
           "compare_figure"]

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def landscape_z(losses, log: bool = False) -> np.ndarray:
    """What the figures draw: the losses, or log10 of them (NaN for non-finite or non-positive losses)."""
    losses = np.asarray(losses, dtype=float)
    if not log:
        return np.where(np.isfinite(losses), losses, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(losses) & (losses > 0), np.log10(losses), np.nan)


def _ztitle(log: bool) -> str:
    return "log10 loss" if log else "loss"


def curve_figure(curves: dict[str, Landscape], *, log: bool = False, title: str | None = None,
                 xaxis_title: str = "α") -> go.Figure:
    """One line per 1-D landscape (slices or interpolations); NaN points break the line."""
    fig = go.Figure()
    for i, (label, land) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=land.x, y=landscape_z(land.losses, log), name=label, mode="lines",
                                 line=dict(color=_COLORS[i % len(_COLORS)]), connectgaps=False))
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title=_ztitle(log), height=380)
    return fig


def seed_spread_figure(slices: dict[str, dict[int, Landscape]], *, log: bool = False,
                       title: str | None = None) -> go.Figure:
    """Per label, a thin line per direction seed and the mean ± one standard deviation across seeds."""
    fig = go.Figure()
    for i, (label, by_seed) in enumerate(slices.items()):
        color = _COLORS[i % len(_COLORS)]
        x = next(iter(by_seed.values())).x
        z = np.stack([landscape_z(s.losses, log) for s in by_seed.values()])
        mean, std = np.nanmean(z, 0), np.nanstd(z, 0)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([mean + std, (mean - std)[::-1]]),
                                 fill="toself", fillcolor=color, opacity=0.2, line=dict(width=0), legendgroup=label,
                                 name=f"{label}: mean ± std", hoverinfo="skip"))
        for seed, row in zip(by_seed, z):
            fig.add_trace(go.Scatter(x=x, y=row, mode="lines", line=dict(color=color, width=0.7), opacity=0.5,
                                     legendgroup=label, showlegend=False, name=f"{label} seed {seed}"))
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", line=dict(color=color, width=3), legendgroup=label,
                                 name=f"{label}: mean of {len(z)} seeds"))
    fig.update_layout(title=title, xaxis_title="α (filter-normalized direction)", yaxis_title=_ztitle(log),
                      height=400)
    return fig


def _axis_titles(trajectory: Trajectory | None) -> tuple[str, str]:
    if trajectory is None:
        return "α (direction δ)", "β (direction η)"
    e = trajectory.explained
    return f"PC1 ({100 * e[0]:.1f} % of the variance)", f"PC2 ({100 * e[1]:.1f} % of the variance)"


def _contour(land: Landscape, log: bool, **kw) -> go.Contour:
    return go.Contour(x=land.x, y=land.y, z=landscape_z(land.losses, log), colorscale="Viridis", ncontours=30,
                      connectgaps=False, line=dict(width=0.5), **kw)


def contour_figure(land: Landscape, *, trajectory: Trajectory | None = None, log: bool = False,
                   title: str | None = None) -> go.Figure:
    """Contour of a 2-D landscape; with ``trajectory``, the training path on top and PCA axes with their variance."""
    fig = go.Figure(_contour(land, log, colorbar=dict(title=_ztitle(log))))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="θ* (trained)",
                             marker=dict(symbol="x", size=11, color="white", line=dict(width=1, color="black"))))
    if trajectory is not None:
        c = trajectory.coords
        fig.add_trace(go.Scatter(x=c[:, 0], y=c[:, 1], mode="lines+markers", name="training path",
                                 text=[f"step {s}" for s in trajectory.steps], line=dict(color="#d62728", width=2),
                                 marker=dict(size=6)))
        fig.add_trace(go.Scatter(x=c[:1, 0], y=c[:1, 1], mode="markers", name="init",
                                 marker=dict(symbol="star", size=13, color="gold", line=dict(width=1, color="black"))))
    xt, yt = _axis_titles(trajectory)
    fig.update_layout(title=title, xaxis_title=xt, yaxis_title=yt, height=520, width=620,
                      legend=dict(orientation="h", y=-0.15))
    return fig


def surface3d_figure(land: Landscape, *, log: bool = False, title: str | None = None) -> go.Figure:
    """The 2-D landscape as a 3-D surface (NaN: holes)."""
    fig = go.Figure(go.Surface(x=land.x, y=land.y, z=landscape_z(land.losses, log), colorscale="Viridis",
                               colorbar=dict(title=_ztitle(log))))
    fig.update_layout(title=title, height=560, scene=dict(xaxis_title="α", yaxis_title="β", zaxis_title=_ztitle(log)))
    return fig


def compare_figure(lands: dict[str, Landscape], *, log: bool = False, title: str | None = None) -> go.Figure:
    """Contours side by side, each with its own colour scale (losses of different kinds differ in units)."""
    k = len(lands)
    fig = make_subplots(rows=1, cols=k, subplot_titles=list(lands), horizontal_spacing=0.12)
    for i, land in enumerate(lands.values()):
        right = (i + 1) / k - 0.12 / 2 * (i + 1 < k)
        fig.add_trace(_contour(land, log, colorbar=dict(title=_ztitle(log), x=right, len=0.9)), row=1, col=i + 1)
        fig.update_xaxes(title_text="α", row=1, col=i + 1)
        fig.update_yaxes(title_text="β", row=1, col=i + 1)
    fig.update_layout(title=title, height=450, width=520 * k)
    return fig
