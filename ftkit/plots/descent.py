r"""Optimizer paths on 2-D test functions: contour + loss figures, a 3-D view, the rate-vs-lr picture, basin maps
(which minimum each start reaches, and when), and an interactive explorer (:mod:`ftkit.ui.gd_explorer`)
whose every control redraws the same figures in place.

Figures have fixed trace slots (a ``meta`` tag per role and run label), so :func:`update_surface_figure` only
swaps data: nothing is added or removed, which keeps a ``FigureWidget`` redraw cheap and flicker-free.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..optviz.races import BasinMap, OptimizerPath
from ..optviz.surfaces import Surface, heavy_ball_rate, heavy_ball_rate_map, make_surface
from .style import WARN, json_safe, style

__all__ = ["surface_figure", "update_surface_figure", "rate_figure", "basin_figure", "update_basin_figure",
           "momentum_map_figure", "update_momentum_map_figure", "OPTIMIZER_COLORS"]

OPTIMIZER_COLORS = {"gd": "#1f77b4", "sgd": "#1f77b4", "momentum": "#ff7f0e", "nesterov": "#2ca02c",
                    "rmsprop": "#d62728", "adam": "#9467bd", "adamw": "#e377c2", "adagrad": "#8c564b"}
_CYCLE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def _z(surface: Surface, f):
    """What colours and the 3-D height show: log10(f + 0.01) where f spans decades, else f."""
    return np.log10(np.maximum(f, 0) + 0.01) if surface.log_color else f


def _color(label: str, i: int) -> str:
    return OPTIMIZER_COLORS.get(label, _CYCLE[i % len(_CYCLE)])


def _predicted_loss(traj: OptimizerPath, rate: float) -> np.ndarray:
    """f ∝ ‖w − w*‖² on a quadratic, so a per-step rate ρ in ‖w‖ is ρ² in the loss: f₀ρ^{2t}."""
    return traj.losses[0] * rate ** (2 * np.arange(len(traj.losses)))


def surface_figure(surface, trajectories: dict[str, OptimizerPath] | None = None, *, labels=None, grid: int = 100,
                   show_3d: bool = False, predicted: dict[str, float] | None = None,
                   title: str | None = None, figure_cls=go.Figure) -> go.Figure:
    """Contour with the paths (left), loss per step (right), optionally a 3-D view (top right, loss below).

    ``labels`` reserves a trace slot per run label (default: the trajectories' labels); ``predicted`` maps a
    label to a per-step rate ρ drawn as a dashed theory line :math:`f_0ρ^{2t}` beside the measured loss.
    """
    surface = make_surface(surface)
    trajectories = trajectories or {}
    labels = list(labels or trajectories)
    if show_3d:
        fig = make_subplots(rows=2, cols=2, specs=[[{"type": "xy"}, {"type": "scene"}], [{"colspan": 2}, None]],
                            row_heights=[0.62, 0.38], vertical_spacing=0.1, horizontal_spacing=0.06,
                            subplot_titles=("paths", "surface", "loss"), figure=figure_cls())
        loss_cell = dict(row=2, col=1)
    else:
        fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                            subplot_titles=("paths", "loss"), figure=figure_cls())
        loss_cell = dict(row=1, col=2)
    fig.add_trace(go.Contour(meta="contour", ncontours=30, colorscale="Viridis", showscale=False,
                             line=dict(width=0.5), hoverinfo="skip"), row=1, col=1)
    if show_3d:
        fig.add_trace(go.Surface(meta="surface3d", colorscale="Viridis", showscale=False, opacity=0.85,
                                 hoverinfo="skip"), row=1, col=2)
    fig.add_trace(go.Scatter(meta="minima", mode="markers", name="minimum", marker=dict(symbol="x", size=10,
                             color="white", line=dict(width=1, color="black"))), row=1, col=1)
    fig.add_trace(go.Scatter(meta="start", mode="markers", name="start", marker=dict(symbol="star", size=13,
                             color="gold", line=dict(width=1, color="black"))), row=1, col=1)
    for i, label in enumerate(labels):
        color = _color(label, i)
        fig.add_trace(go.Scatter(meta=f"path:{label}", name=label, legendgroup=label, mode="lines+markers",
                                 line=dict(color=color, width=2), marker=dict(size=3)), row=1, col=1)
        fig.add_trace(go.Scatter(meta=f"end:{label}", name=f"{label}: diverged", legendgroup=label,
                                 showlegend=False, mode="markers",
                                 marker=dict(symbol="x-thin", size=14, line=dict(width=3, color=color))),
                      row=1, col=1)
        if show_3d:
            fig.add_trace(go.Scatter3d(meta=f"path3d:{label}", name=label, legendgroup=label, showlegend=False,
                                       mode="lines",
                                       line=dict(color=color, width=5)), row=1, col=2)
        fig.add_trace(go.Scatter(meta=f"loss:{label}", name=f"{label}: loss", legendgroup=label, showlegend=False,
                                 mode="lines",
                                 line=dict(color=color)), **loss_cell)
        fig.add_trace(go.Scatter(meta=f"rate:{label}", name=f"{label}: theory", legendgroup=label,
                                 showlegend=False, mode="lines",
                                 line=dict(color=color, dash="dash", width=1)), **loss_cell)
    fig.update_xaxes(title_text="x", row=1, col=1)
    fig.update_yaxes(title_text="y", row=1, col=1)
    fig.update_xaxes(title_text="step", **loss_cell)
    # the divergence note sits inside the paths plot (top left, on a white box): never over an axis title
    style(fig, height=720 if show_3d else 440, title=title, margin=dict(l=50, r=20, t=80, b=50))
    fig.update_layout(annotations=list(fig.layout.annotations) + [dict(
        name="notes", text="", showarrow=False, xref="x domain", yref="y domain", x=0.01, y=0.99, xanchor="left",
        yanchor="top", align="left", bgcolor="rgba(255,255,255,0.8)", font=dict(color=WARN, size=11))])
    update_surface_figure(fig, surface, trajectories, predicted=predicted, grid=grid)
    return fig


def update_surface_figure(fig, surface, trajectories: dict[str, OptimizerPath], *,
                          predicted: dict[str, float] | None = None, grid: int = 100,
                          with_surface: bool = True) -> None:
    """Swap the data of a figure made by :func:`surface_figure` in place (one restyle for a FigureWidget).

    Slots of labels missing from ``trajectories`` are hidden; a diverged run ends in an × with its note below.
    ``with_surface=False`` keeps the contour and 3-D mesh (same function, new paths: less to send).
    """
    surface, predicted = make_surface(surface), predicted or {}
    slots = {t.meta: t for t in fig.data}
    log_loss = bool(surface.minima)                  # f − f* ≥ 0 only where a minimum exists (not the saddle)
    (x0, x1), (y0, y1) = surface.domain
    if with_surface:
        with fig.batch_update():
            xs, ys, Z = surface.grid(grid)
            slots["contour"].update(x=xs, y=ys, z=json_safe(_z(surface, Z)))
            if "surface3d" in slots:
                xs3, ys3, Z3 = surface.grid(max(grid // 2, 20))   # a coarser mesh is plenty in 3-D
                z3 = _z(surface, Z3)
                slots["surface3d"].update(x=xs3, y=ys3, z=json_safe(z3))
                # fixed ranges: the surface's box, never rescaled to fit a diverged path (plotly clips the path)
                low, high = float(np.nanmin(z3)), float(np.nanmax(z3))
                fig.update_scenes(xaxis=dict(range=[x0, x1], autorange=False, title_text="x"),
                                  yaxis=dict(range=[y0, y1], autorange=False, title_text="y"),
                                  zaxis=dict(range=[low, high + 1e-9], autorange=False, title_text=(
                                      "log₁₀(f + 0.01)" if surface.log_color else "f")),
                                  aspectmode="manual", aspectratio=dict(x=1, y=1, z=0.6),
                                  camera=dict(eye=dict(x=1.5, y=1.5, z=1.0), center=dict(x=0, y=0, z=-0.1)))
            fig.update_xaxes(range=[x0, x1], row=1, col=1)
            fig.update_yaxes(range=[y0, y1], row=1, col=1)
    edits: dict[int, dict] = {}                      # trace index -> new properties: one restyle for all of them
    minima = np.array(surface.minima).reshape(-1, 2)
    first = next(iter(trajectories.values()), None)
    start = first.points[0] if first is not None else surface.start
    for i, trace in enumerate(fig.data):
        role, _, label = trace.meta.partition(":")
        if role == "minima":
            edits[i] = dict(x=minima[:, 0], y=minima[:, 1])
        elif role == "start":
            edits[i] = dict(x=[start[0]], y=[start[1]])
        if not label:
            continue
        traj = trajectories.get(label)
        visible = traj is not None and (role != "end" or traj.diverged) and (role != "rate" or label in predicted)
        edits[i] = dict(visible=visible)
        if not visible:
            continue
        p, f = traj.points, traj.losses
        if role == "path":
            edits[i].update(x=p[:, 0], y=p[:, 1], name=f"{label} (lr={traj.lr:.3g})")
        elif role == "end":
            edits[i].update(x=p[-1:, 0], y=p[-1:, 1], hovertext=[traj.note])
        elif role == "path3d":
            inside = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
            with np.errstate(all="ignore"):
                z = np.where(inside, _z(surface, f), np.nan)
            # outside the box the line breaks (None: a gap that JSON can carry), so it never stretches the scene
            edits[i].update(x=json_safe(np.where(inside, p[:, 0], np.nan)),
                            y=json_safe(np.where(inside, p[:, 1], np.nan)), z=json_safe(z))
        elif role == "loss":
            edits[i].update(x=np.arange(len(f)), y=json_safe(f))
        elif role == "rate":
            edits[i].update(x=np.arange(len(f)), y=_predicted_loss(traj, predicted[label]),
                            hovertext=f"theory ρ={predicted[label]:.4f}")
    _restyle(fig, edits)
    loss_axis = next((t.yaxis for uid, t in slots.items() if uid.startswith("loss:")), None)
    if loss_axis and with_surface:                    # the loss axis only changes with the function
        # the quantity goes into the panel's title: an axis title between two panels sits on the tick labels
        fig.layout["yaxis" + loss_axis[1:]].update(type="log" if log_loss else "linear", title_text="")
        for ann in fig.layout.annotations:
            if (ann.text or "").startswith("loss"):
                ann.text = "loss f(w) − f* (log scale)" if log_loss else "loss f(w)"
    notes = "<br>".join(t.note for t in trajectories.values() if t.diverged)
    for ann in fig.layout.annotations:
        if ann.name == "notes" and ann.text != notes:
            ann.text = notes


def _restyle(fig, edits: dict[int, dict]) -> None:
    """Set many traces' data with one ``plotly_restyle`` per set of edited properties (a message each to a
    FigureWidget). It stores the arrays as given, without plotly's per-property validation, which costs more than
    computing the paths; the values here are plain arrays, strings and bools that plotly accepts as they are.

    Traces are grouped by the properties they change, so no trace is sent a property it does not change: a
    placeholder for "leave it" would reach the page as ``null`` and wipe it (a marker's name, a heatmap's zmax)."""
    groups: dict[tuple, list[int]] = {}
    for i, e in edits.items():
        groups.setdefault(tuple(sorted(e)), []).append(i)
    contiguous = lambda v: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v  # noqa: E731  (widget buffers)
    for keys, indexes in groups.items():
        fig.plotly_restyle({k: [contiguous(edits[i][k]) for i in indexes] for k in keys}, trace_indexes=indexes)


def rate_figure(lrs, measured: dict[str, list[float]], predicted: dict[str, list[float]],
                edges: dict[str, float], best: dict[str, tuple[float, float]] | None = None,
                title: str = "per-step rate vs learning rate") -> go.Figure:
    """Measured rates (dots) over lines of the predicted rate, with each stability edge as a vertical line.

    ``measured``/``predicted`` map a method to a rate per lr; ``edges`` a method to its edge lr; ``best`` a
    method to (lr, rate) of its optimum, marked with a star. Rates above 1 diverge.
    """
    fig = go.Figure()
    for i, (name, rates) in enumerate(predicted.items()):
        color = _color(name, i)
        fig.add_trace(go.Scatter(x=lrs, y=rates, mode="lines", name=f"{name}: theory", line=dict(color=color)))
        fig.add_trace(go.Scatter(x=lrs, y=json_safe(measured[name]), mode="markers", name=f"{name}: measured",
                                 marker=dict(color=color, size=7, symbol="circle-open", line=dict(width=2))))
        if name in edges:
            fig.add_vline(x=edges[name], line=dict(color=color, dash="dot"))
            # an annotation on a log axis is placed in log10 units (a shape in data units): log10 of the edge
            fig.add_annotation(x=np.log10(edges[name]), y=1.25 - 0.08 * i, xref="x", yref="y", showarrow=False,
                               text=f"{name} edge {edges[name]:.3g}", xanchor="right", font=dict(color=color))
        if best and name in best:
            fig.add_trace(go.Scatter(x=[best[name][0]], y=[best[name][1]], mode="markers", name=f"{name}: best",
                                     marker=dict(symbol="star", size=14, color=color, line=dict(width=1))))
    fig.add_hline(y=1, line=dict(color="gray", width=1))
    fig.update_xaxes(type="log", title_text="learning rate η")
    fig.update_yaxes(title_text="rate ρ per step (‖w_{t+1}‖ ≈ ρ‖w_t‖)", range=[0, 1.3])
    return style(fig, title=title, height=420, margin=dict(l=60, r=20, t=60, b=50))


# --------------------------------------------------------------------------- heavy ball's (η, μ) plane
def momentum_map_figure(eigenvalues=None, *, n: int = 120, title: str | None = None, figure_cls=go.Figure) -> go.Figure:
    r"""Heavy ball's per-step rate :math:`\max_λ |z|` over the (η, μ) plane of a quadratic with Hessian
    ``eigenvalues`` (Distill's "Why Momentum Really Works"): colour = rate (white past 1: diverges), the stability
    edge :math:`η = (2+2μ)/λ_1`, the optimum (star) and a movable chosen point (:func:`update_momentum_map_figure`).
    Without ``eigenvalues`` the slots are empty (the explorer fills them)."""
    fig = figure_cls()
    fig.add_trace(go.Heatmap(meta="rate", name="rate per step", colorscale="Viridis_r", zmin=0, zmax=1, zauto=False,
                             colorbar=dict(title=dict(text="rate ρ", side="right")),
                             hovertemplate="η %{x:.3g}, μ %{y:.2f}: ρ = %{z:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(meta="edge", name="edge η = (2+2μ)/λ₁", mode="lines",
                             line=dict(color="firebrick", dash="dot")))
    fig.add_trace(go.Scatter(meta="best", name="optimum η*, μ*", mode="markers",
                             marker=dict(symbol="star", size=14, color="gold", line=dict(width=1, color="black"))))
    fig.add_trace(go.Scatter(meta="chosen", name="momentum's η, μ", mode="markers",
                             marker=dict(symbol="circle", size=12, color=OPTIMIZER_COLORS["momentum"],
                                         line=dict(width=2, color="white"))))
    fig.update_xaxes(title_text="learning rate η")
    fig.update_yaxes(title_text="momentum μ", range=[0, 1])
    style(fig, height=380, title=title, margin=dict(l=60, r=20, t=60, b=50))
    fig.update_layout(plot_bgcolor="white")
    if eigenvalues is not None:
        update_momentum_map_figure(fig, eigenvalues, n=n)
    return fig


def update_momentum_map_figure(fig, eigenvalues, lr: float | None = None, momentum: float | None = None, *,
                               n: int = 120) -> float | None:
    """Redraw :func:`momentum_map_figure` for ``eigenvalues`` (the map, edge and optimum) and the chosen point
    (``lr``, ``momentum``); returns the predicted rate there (None without a point)."""
    eigs = [float(v) for v in eigenvalues if v > 0]
    l1, ln = max(eigs), min(eigs)
    lrs, mus = np.linspace(0, 4 / l1, n + 1)[1:], np.linspace(0, 0.99, n)
    rate = heavy_ball_rate_map(lrs, mus, eigs)
    best_lr, best_mu = (2 / (np.sqrt(l1) + np.sqrt(ln))) ** 2, ((np.sqrt(l1 / ln) - 1) / (np.sqrt(l1 / ln) + 1)) ** 2
    point = None if lr is None or momentum is None else heavy_ball_rate(lr, momentum, eigs)
    edits = {"rate": dict(x=lrs, y=mus, z=json_safe(np.where(rate < 1, rate, np.nan))),
             "edge": dict(x=(2 + 2 * mus) / l1, y=mus),
             "best": dict(x=[best_lr], y=[best_mu], text=[f"ρ* = {heavy_ball_rate(best_lr, best_mu, eigs):.4f}"]),
             "chosen": dict(x=[] if point is None else [lr], y=[] if point is None else [momentum])}
    _restyle(fig, {i: edits[t.meta] for i, t in enumerate(fig.data) if t.meta in edits})
    fig.update_xaxes(range=[0, 4 / l1])
    return point


# --------------------------------------------------------------------------- basin maps
_BASIN_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
                  "#9c755f", "#86bcb6")
_DIVERGED, _NOWHERE = "#222222", "#d9d9d9"


def _category_scale() -> list:
    """A stepped colorscale over z = 0 (diverged), 1 (settles nowhere), 2… (minimum index mod palette + 2)."""
    colors = (_DIVERGED, _NOWHERE) + _BASIN_PALETTE
    n = len(colors)
    return [pair for i, c in enumerate(colors) for pair in ((i / n, c), ((i + 1) / n, c))]


def basin_figure(basin_map: BasinMap | None = None, labels=None, *, title: str | None = None,
                 figure_cls=go.Figure) -> go.Figure:
    """Per optimizer (columns): which minimum each start reaches (top; one colour per minimum, grey: nowhere within
    the radius, black: diverged) and after how many steps it stays there (bottom); minima marked ×."""
    labels = list(labels or (basin_map.labels if basin_map is not None else []))
    cols = max(len(labels), 1)
    fig = make_subplots(rows=2, cols=cols, shared_xaxes=True, shared_yaxes=True, vertical_spacing=0.1,
                        horizontal_spacing=0.025, subplot_titles=[f"{label}<br> " for label in labels],
                        figure=figure_cls())
    n_colors = len(_BASIN_PALETTE) + 2
    for k, label in enumerate(labels):
        # categories: explicit zmin/zmax (z = category index), so plotly never rescales the colours to the data
        fig.add_trace(go.Heatmap(meta=f"basin:{label}", name=f"{label}: basin", colorscale=_category_scale(),
                                 zmin=-0.5, zmax=n_colors - 0.5, zauto=False, showscale=False, hoverinfo="text"),
                      row=1, col=k + 1)
        fig.add_trace(go.Scatter(meta=f"minima:{label}", name="minimum", mode="markers", showlegend=False,
                                 hoverinfo="skip",
                                 marker=dict(symbol="x", size=7, color="white", line=dict(width=1, color="black"))),
                      row=1, col=k + 1)
        # starts that never settle have no step count: a gap (None), drawn in the plot's grey background
        fig.add_trace(go.Heatmap(meta=f"settle:{label}", name=f"{label}: steps to settle", colorscale="Viridis",
                                 showscale=k == 0, zmin=0, zmax=1, zauto=False, hoverinfo="text",
                                 colorbar=dict(title=dict(text="steps", side="right"), len=0.42, y=0.0,
                                               yanchor="bottom")), row=2, col=k + 1)
    fig.update_xaxes(nticks=4, tickangle=0)
    fig.update_xaxes(title_text="x", row=2)
    fig.update_yaxes(title_text="which minimum<br>y", row=1, col=1)
    fig.update_yaxes(title_text="steps to settle<br>y", row=2, col=1)
    style(fig, height=580, title=title, margin=dict(l=70, r=20, t=120, b=50))   # t: the title above the key line
    fig.update_layout(plot_bgcolor=_NOWHERE)
    fig.update_annotations(font_size=12)
    fig.add_annotation(text="colours: one per minimum · light grey: settles nowhere · black: diverged · bottom: "
                            "steps until it stays (blank: never)", xref="paper", yref="paper", x=0, y=1.0,
                       yanchor="bottom", xanchor="left", yshift=34, showarrow=False, font=dict(size=11),
                       name="key")
    if basin_map is not None:
        update_basin_figure(fig, basin_map)
    return fig


def update_basin_figure(fig, basin_map: BasinMap) -> None:
    """Swap a :func:`basin_figure`'s data in place (labels missing from ``basin_map`` keep their slots hidden)."""
    bm = basin_map
    targets = bm.targets.reshape(-1, 2)
    named = np.vstack([targets, [[np.nan, np.nan]]])     # row −1: for starts that settle nowhere
    edits: dict[int, dict] = {}
    for i, trace in enumerate(fig.data):
        role, _, label = trace.meta.partition(":")
        edits[i] = dict(visible=label in bm.labels)
        if label not in bm.labels:
            continue
        k = bm.labels.index(label)
        m, steps = bm.minimum[k], bm.steps[k]
        if role == "minima":
            edits[i].update(x=targets[:, 0], y=targets[:, 1])
            continue
        at = named[np.where(m >= 0, m, -1)]
        where = np.where(m >= 0, "→ (" + np.char.mod("%.2f", at[..., 0]) + ", " + np.char.mod("%.2f", at[..., 1]) + ")",
                         np.where(m == -2, "diverged", "settles nowhere"))
        text = where + np.where(np.isfinite(steps), " after " + np.char.mod("%d", np.nan_to_num(steps)) + " steps", "")
        if role == "basin":
            edits[i].update(x=bm.xs, y=bm.ys, z=(np.where(m >= 0, m % len(_BASIN_PALETTE) + 2, m + 2)).tolist(),
                            text=text.tolist())
        else:
            edits[i].update(x=bm.xs, y=bm.ys, z=json_safe(steps), text=text.tolist(), zmax=bm.total_steps)
    _restyle(fig, edits)
    # ticks inside each panel only: at a panel's edges the next panel's first label would touch it ("2−2")
    (x0, x1), (y0, y1) = [(a[0] - (a[1] - a[0]) / 2, a[-1] + (a[-1] - a[-2]) / 2) for a in (bm.xs, bm.ys)]
    fig.update_xaxes(tickvals=[float(f"{round(v, 9) + 0.0:.2g}") for v in (x0 + (x1 - x0) / 4, (x0 + x1) / 2,
                                                                           x1 - (x1 - x0) / 4)])
    with fig.batch_update():
        shares = {label: bm.share(label) for label in bm.labels}
        for ann in fig.layout.annotations:
            label = (ann.text or "").split("<br>")[0]
            if label in shares:
                settled = sum(v for key, v in shares[label].items() if key >= 0)
                ann.text = f"{label}<br>{100 * settled:.0f}% settle"

