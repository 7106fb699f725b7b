"""Loss-landscape figures: 1-D curves, the spread over direction seeds, contours (with a training path), 3-D
surfaces and side-by-side comparisons; a contour refined in place while a grid is computed; how far a PCA path
can be trusted; sharpness against the stability edge. ``log=True`` shows log10(loss); NaN losses show as gaps."""
from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from ..optviz.landscape import Landscape, progressive_surface
from ..optviz.trajectory import Trajectory, TrajectoryCheck
from ..optviz.surfaces import gd_rate

__all__ = ["landscape_z", "curve_figure", "seed_spread_figure", "contour_figure", "surface3d_figure",
           "compare_figure", "LiveContour", "progressive_contour", "trajectory_check_figure", "sharpness_figure"]

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
    fig.update_layout(title=title, xaxis_title=xt, yaxis_title=yt, height=540)
    return fig


def surface3d_figure(land: Landscape, *, log: bool = False, title: str | None = None) -> go.Figure:
    """The 2-D landscape as a 3-D surface (NaN: holes)."""
    fig = go.Figure(go.Surface(x=land.x, y=land.y, z=landscape_z(land.losses, log), colorscale="Viridis",
                               colorbar=dict(title=_ztitle(log))))
    fig.update_layout(title=title, height=560, margin=dict(l=10, r=10, t=60, b=10),
                      scene=dict(xaxis_title="α", yaxis_title="β", zaxis_title=_ztitle(log),
                                 camera=dict(eye=dict(x=1.5, y=1.5, z=1.0), center=dict(x=0, y=0, z=-0.1))))
    return fig


def compare_figure(lands: dict[str, Landscape], *, log: bool = False, title: str | None = None,
                   same_scale: bool = False) -> go.Figure:
    """Contours side by side, each with its own colour scale (losses of different kinds differ in units), or with
    ``same_scale=True`` one scale and one colour bar for all (the same loss on two networks: equal colours, equal
    losses; the contour levels are the same too)."""
    k = len(lands)
    fig = make_subplots(rows=1, cols=k, subplot_titles=list(lands), horizontal_spacing=0.12)
    shared = {}
    if same_scale:
        z = np.concatenate([landscape_z(land.losses, log).ravel() for land in lands.values()])
        lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
        shared = dict(zmin=lo, zmax=hi, contours=dict(start=lo, end=hi, size=(hi - lo) / 30 or 1), autocontour=False)
    for i, land in enumerate(lands.values()):
        right = (i + 1) / k - 0.12 / 2 * (i + 1 < k)
        bar = dict(colorbar=dict(title=_ztitle(log), x=1.0 if same_scale else right, len=0.9),
                   showscale=not same_scale or i + 1 == k)
        fig.add_trace(_contour(land, log, **bar, **shared), row=1, col=i + 1)
        fig.update_xaxes(title_text="α", row=1, col=i + 1)
        fig.update_yaxes(title_text="β", row=1, col=i + 1)
    fig.update_layout(title=title, height=450)
    return fig


# --------------------------------------------------------------------------- progressive grids
class LiveContour:
    """A contour redrawn in place at each level of :func:`~ftkit.optviz.landscape.progressive_surface` (``on_level``).

    The coarse grid is shown within seconds, each finer level replaces it through an IPython display handle
    (``update_display_data``): live in JupyterLab, Colab and VS Code while the cell is still running, with no
    widget to wire. Under papermill the saved notebook keeps only the final, static figure (a ``FigureWidget`` would
    leave a dead widget view there); without a kernel (a script, pytest) nothing is shown and :meth:`close`
    returns the final figure. Nothing ever waits for a front-end.
    """

    def __init__(self, *, trajectory: Trajectory | None = None, log: bool = False, title: str | None = None):
        self.trajectory, self.log, self.title = trajectory, log, title
        self.handle = None
        self.levels = 0

    def figure(self, land: Landscape) -> go.Figure:
        title = f"{self.title or 'loss'} ({len(land.x)}×{len(land.y)} points)"
        return contour_figure(land, trajectory=self.trajectory, log=self.log, title=title)

    @staticmethod
    def _display():
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return None
        return display if getattr(get_ipython(), "kernel", None) is not None else None

    def _show(self, fig: go.Figure) -> None:
        # the figure's MIME bundle, raw: a plotly Figure's own _ipython_display_ would ignore the display id;
        # plotly's JSON encoder turns NaN (gaps) into null, which Jupyter's messages accept
        bundle = json.loads(pio.json.to_json_plotly(fig._repr_mimebundle_()))
        if self.handle is not None:
            self.handle.update(bundle, raw=True)
        elif (display := self._display()) is not None:
            self.handle = display(bundle, raw=True, display_id=True)

    def __call__(self, land: Landscape) -> None:
        self.levels += 1
        self._show(self.figure(land))

    def close(self, land: Landscape) -> go.Figure:
        """Show the final figure as a new output, emptying the live one (or anew, in a kernel); returns it.

        A fresh output, not one more in-place update: in JupyterLab an update that arrives while the plot of the
        previous level is still being drawn can be dropped, leaving the coarse grid on screen after the cell ended
        (the saved output, read after a reload, was right)."""
        static = self.figure(land)
        if self.handle is not None:
            self.handle.update({"text/plain": ""}, raw=True)
            self.handle = None
        self._show(static)
        return static


def progressive_contour(model, loss_fn, data, directions, span=(-1.0, 1.0), resolution=21, yspan=None, *,
                        trajectory: Trajectory | None = None, log: bool = False, title: str | None = None,
                        **options) -> tuple[Landscape, go.Figure]:
    """Compute a 2-D grid coarse to fine while its contour is redrawn in place; returns (landscape, final figure)."""
    live = LiveContour(trajectory=trajectory, log=log, title=title)
    land = progressive_surface(model, loss_fn, data, directions, span, resolution, yspan, on_level=live, **options)
    return land, live.close(land)


# --------------------------------------------------------------------------- honest trajectories
def trajectory_check_figure(check: TrajectoryCheck, *, title: str | None = None) -> go.Figure:
    """Left: each snapshot's true loss beside the loss at its projection (what the contour shows under it).
    Right: its distance from the PCA plane, as a share of its distance from θ*."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("true loss vs the contour under the point", "distance from the plane"))
    fig.add_trace(go.Scatter(x=check.steps, y=check.loss, mode="lines+markers", name="true loss L(θᵢ)",
                             line=dict(color=_COLORS[0])), row=1, col=1)
    fig.add_trace(go.Scatter(x=check.steps, y=check.projected_loss, mode="lines+markers", name="loss at the projection",
                             line=dict(color=_COLORS[1], dash="dash")), row=1, col=1)
    fig.add_trace(go.Scatter(x=check.steps, y=100 * check.relative, mode="lines+markers", name="off-plane share",
                             line=dict(color=_COLORS[3]), text=[f"{d:.3g}" for d in check.distance],
                             hovertemplate="step %{x}: %{y:.1f} % (distance %{text})"), row=1, col=2)
    fig.update_xaxes(title_text="optimizer step")
    fig.update_yaxes(title_text="loss", type="log", row=1, col=1)
    fig.update_yaxes(title_text="‖off-plane part‖ / ‖θᵢ − θ*‖ (%)", range=[0, 105], row=1, col=2)
    fig.update_layout(title=title, height=400)
    return fig


# --------------------------------------------------------------------------- edge of stability
def sharpness_figure(runs: dict, *, title: str | None = None) -> go.Figure:
    """Per run ``label: (history, monitor)`` (a :class:`~ftkit.optviz.hessian.SharpnessMonitor`): the sharpness against
    its stability edge (dotted), the training loss per step, and notebook 02's quadratic prediction
    :math:`|1-ηλ_t|`, the factor by which GD would grow (> 1) or shrink the top eigen-direction each step if the
    loss were the quadratic with curvature :math:`λ_t`."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=("sharpness λ_max vs its edge", "training loss",
                                        "quadratic prediction |1 − ηλ_max|"))
    for i, (label, (history, monitor)) in enumerate(runs.items()):
        color = _COLORS[i % len(_COLORS)]
        steps = [r["step"] for r in monitor.rows]
        key = ("preconditioned_sharpness" if any(r.get("preconditioned_sharpness") is not None for r in monitor.rows)
               else "sharpness")
        sharp = [r.get(key) for r in monitor.rows]
        edges = [r["stability_edge"] for r in monitor.rows]
        fig.add_trace(go.Scatter(x=steps, y=sharp, mode="lines", name=f"{label}: {key.replace('_', ' ')}",
                                 legendgroup=label, line=dict(color=color)), row=1, col=1)
        if any(e is not None for e in edges):
            fig.add_trace(go.Scatter(x=steps, y=edges, mode="lines", name=f"{label}: edge", legendgroup=label,
                                     line=dict(color=color, dash="dot")), row=1, col=1)
            rates = [gd_rate(r["lr"], [s]) if key == "sharpness" and s is not None else None
                     for r, s in zip(monitor.rows, sharp)]
            fig.add_trace(go.Scatter(x=steps, y=rates, mode="lines", legendgroup=label, showlegend=False,
                                     line=dict(color=color)), row=1, col=3)
        fig.add_trace(go.Scatter(x=[s["step"] for s in history.steps], y=[s["loss"] for s in history.steps],
                                 mode="lines", legendgroup=label, showlegend=False, line=dict(color=color, width=1)),
                      row=1, col=2)
    fig.add_hline(y=1, line=dict(color="gray", dash="dash"), row=1, col=3,
                  annotation_text="> 1: the quadratic diverges", annotation_position="top left")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(title=title, height=420)
    return fig
