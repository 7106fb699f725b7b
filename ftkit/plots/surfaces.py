r"""Optimizer paths on 2-D test functions: contour + loss figures, a 3-D view, the rate-vs-lr picture, and an
interactive explorer whose every control redraws the same figure in place.

Figures have fixed trace slots (a ``meta`` tag per role and run label), so :func:`update_surface_figure` only
swaps data: nothing is added or removed, which keeps a ``FigureWidget`` redraw cheap and flicker-free.
"""
from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from ..surfaces import SURFACES, OptimizerPath, Surface, convergence_rate, make_surface, predicted_rate, race

__all__ = ["surface_figure", "update_surface_figure", "rate_figure", "GDExplorer", "OPTIMIZER_COLORS"]

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
        fig.add_trace(go.Scatter(meta=f"end:{label}", legendgroup=label, showlegend=False, mode="markers",
                                 marker=dict(symbol="x-thin", size=14, line=dict(width=3, color=color))),
                      row=1, col=1)
        if show_3d:
            fig.add_trace(go.Scatter3d(meta=f"path3d:{label}", legendgroup=label, showlegend=False, mode="lines",
                                       line=dict(color=color, width=5)), row=1, col=2)
        fig.add_trace(go.Scatter(meta=f"loss:{label}", legendgroup=label, showlegend=False, mode="lines",
                                 line=dict(color=color)), **loss_cell)
        fig.add_trace(go.Scatter(meta=f"rate:{label}", legendgroup=label, showlegend=False, mode="lines",
                                 line=dict(color=color, dash="dash", width=1)), **loss_cell)
    fig.update_xaxes(title_text="x", row=1, col=1)
    fig.update_yaxes(title_text="y", row=1, col=1)
    fig.update_xaxes(title_text="step", **loss_cell)
    fig.update_layout(height=720 if show_3d else 420, margin=dict(l=50, r=20, t=70, b=50),
                      legend=dict(orientation="h", y=1.1, x=0), title=title,
                      annotations=list(fig.layout.annotations) + [dict(name="notes", text="", showarrow=False,
                                       xref="paper", yref="paper", x=0, y=-0.12, xanchor="left",
                                       font=dict(color="firebrick"))])
    update_surface_figure(fig, surface, trajectories, predicted=predicted, grid=grid)
    return fig


def update_surface_figure(fig, surface, trajectories: dict[str, OptimizerPath], *,
                          predicted: dict[str, float] | None = None, grid: int = 100,
                          with_surface: bool = True) -> None:
    """Swap the data of a figure made by :func:`surface_figure` in place (one batch for a FigureWidget).

    Slots of labels missing from ``trajectories`` are hidden; a diverged run ends in an × with its note below.
    ``with_surface=False`` keeps the contour and 3-D mesh (same function, new paths: less to send).
    """
    surface, predicted = make_surface(surface), predicted or {}
    slots = {t.meta: t for t in fig.data}
    log_loss = bool(surface.minima)                  # f − f* ≥ 0 only where a minimum exists (not the saddle)
    (x0, x1), (y0, y1) = surface.domain
    with fig.batch_update():
        if with_surface:
            xs, ys, Z = surface.grid(grid)
            slots["contour"].update(x=xs, y=ys, z=_z(surface, Z))
            if "surface3d" in slots:
                xs3, ys3, Z3 = surface.grid(max(grid // 2, 20))   # a coarser mesh is plenty in 3-D
                slots["surface3d"].update(x=xs3, y=ys3, z=_z(surface, Z3))
            fig.update_xaxes(range=[x0, x1], row=1, col=1)
            fig.update_yaxes(range=[y0, y1], row=1, col=1)
        minima = np.array(surface.minima).reshape(-1, 2)
        slots["minima"].update(x=minima[:, 0], y=minima[:, 1])
        first = next(iter(trajectories.values()), None)
        start = first.points[0] if first is not None else surface.start
        slots["start"].update(x=[start[0]], y=[start[1]])
        for uid, trace in slots.items():
            role, _, label = uid.partition(":")
            if not label:
                continue
            traj = trajectories.get(label)
            visible = traj is not None and (role != "end" or traj.diverged) and (role != "rate" or label in predicted)
            trace.visible = visible               # (inside batch_update, reading trace.visible gives the old value)
            if not visible:
                continue
            p, f = traj.points, traj.losses
            if role == "path":
                trace.update(x=p[:, 0], y=p[:, 1], name=f"{label} (lr={traj.lr:.3g})")
            elif role == "end":
                trace.update(x=p[-1:, 0], y=p[-1:, 1], hovertext=[traj.note])
            elif role == "path3d":
                inside = (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
                z = np.where(inside, _z(surface, f), np.nan)    # NaN breaks the line where it leaves the box
                trace.update(x=p[:, 0], y=p[:, 1], z=z)
            elif role == "loss":
                trace.update(x=np.arange(len(f)), y=f, name=label)
            elif role == "rate":
                trace.update(x=np.arange(len(f)), y=_predicted_loss(traj, predicted[label]),
                             hovertext=f"theory ρ={predicted[label]:.4f}")
        loss_axis = next((t.yaxis for uid, t in slots.items() if uid.startswith("loss:")), None)
        if loss_axis:
            fig.layout["yaxis" + loss_axis[1:]].update(type="log" if log_loss else "linear",
                                                       title_text="f(w) − f*" if log_loss else "f(w)")
        notes = [t.note for t in trajectories.values() if t.diverged]
        for ann in fig.layout.annotations:
            if ann.name == "notes":
                ann.text = "<br>".join(notes)


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
        fig.add_trace(go.Scatter(x=lrs, y=measured[name], mode="markers", name=f"{name}: measured",
                                 marker=dict(color=color, size=7, symbol="circle-open", line=dict(width=2))))
        if name in edges:
            fig.add_vline(x=edges[name], line=dict(color=color, dash="dot"),
                          annotation_text=f"{name} edge {edges[name]:.3g}", annotation_position="top left")
        if best and name in best:
            fig.add_trace(go.Scatter(x=[best[name][0]], y=[best[name][1]], mode="markers", showlegend=False,
                                     marker=dict(symbol="star", size=14, color=color, line=dict(width=1))))
    fig.add_hline(y=1, line=dict(color="gray", width=1))
    fig.update_xaxes(type="log", title_text="learning rate η")
    fig.update_yaxes(title_text="rate ρ per step (‖w_{t+1}‖ ≈ ρ‖w_t‖)", range=[0, 1.3])
    fig.update_layout(title=title, height=420, margin=dict(l=60, r=20, t=60, b=50))
    return fig


# --------------------------------------------------------------------------- the interactive explorer
_EXPLORER_OPTIMIZERS = ("gd", "momentum", "nesterov", "rmsprop", "adam", "adamw")


class GDExplorer:
    """Function dropdown, optimizer multi-select, log-lr slider (handle turns red past GD's stability edge),
    momentum/β sliders, steps, start point; every change re-runs the race and redraws one figure in place.
    Picking a function resets the start and the lr to that function's defaults (its suggested GD lr).

    Display it as the last expression of a cell (or ``explorer.show()``): a frontend with widgets shows the
    live controls; one without (a papermill run, a static viewer) shows the static figure carried in the same
    output. ``redraw()`` is what each control calls; it never raises: errors go to ``status``.
    """

    def __init__(self, function: str = "rosenbrock", optimizers=("gd", "momentum", "adam"), lr: float | None = None,
                 momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.999, steps: int = 300,
                 start=None, kappa: float = 10.0, grid: int = 80):
        import ipywidgets as W
        surface = make_surface(function, **({"kappa": kappa} if function == "quadratic" else {}))
        start = surface.start if start is None else start
        lr = surface.lr["gd"] if lr is None else lr
        self.grid = grid
        self.surface = surface
        wide = dict(layout=W.Layout(width="420px"), style={"description_width": "90px"})
        self.function = W.Dropdown(options=list(SURFACES), value=surface.name, description="function", **wide)
        self.optimizers = W.SelectMultiple(options=_EXPLORER_OPTIMIZERS, value=tuple(optimizers), rows=6,
                                           description="optimizers", **wide)
        self.lr = W.FloatLogSlider(value=lr, base=10, min=-4, max=1, step=0.05, description="lr",
                                   readout_format=".2e", **wide)
        self.lr_edge = W.HTML()
        self.momentum = W.FloatSlider(value=momentum, min=0, max=0.99, step=0.01, description="momentum μ", **wide)
        self.beta1 = W.FloatSlider(value=beta1, min=0, max=0.99, step=0.01, description="Adam β₁", **wide)
        self.beta2 = W.FloatSlider(value=beta2, min=0.9, max=0.9999, step=0.0001, readout_format=".4f",
                                   description="Adam β₂", **wide)
        self.steps = W.IntSlider(value=steps, min=10, max=1000, step=10, description="steps", **wide)
        self.kappa = W.FloatLogSlider(value=kappa, base=10, min=0, max=3, step=0.05, description="quadratic κ",
                                      disabled=surface.name != "quadratic", **wide)
        self.start_x = W.FloatText(value=float(start[0]), description="start x", layout=W.Layout(width="200px"))
        self.start_y = W.FloatText(value=float(start[1]), description="start y", layout=W.Layout(width="200px"))
        self.status = W.HTML()
        self.figure = surface_figure(surface, labels=_EXPLORER_OPTIMIZERS, grid=grid, show_3d=True,
                                     figure_cls=go.FigureWidget)
        self._drawn = (surface.name, surface.formula)
        controls = W.VBox([self.function, self.optimizers, self.lr, self.lr_edge, self.momentum, self.beta1,
                           self.beta2, self.steps, self.kappa, W.HBox([self.start_x, self.start_y]), self.status])
        self.widget = W.VBox([controls, self.figure])
        self.function.observe(self._on_function, "value")
        for w in (self.optimizers, self.lr, self.momentum, self.beta1, self.beta2, self.steps, self.kappa,
                  self.start_x, self.start_y):
            w.observe(lambda change: self.redraw(), "value")
        self.trajectories: dict[str, OptimizerPath] = {}
        self._cache: dict[str, tuple] = {}          # label -> (settings key, trajectory)
        self._quiet = False
        self.redraw()

    def _on_function(self, change) -> None:
        name = change["new"]
        self.kappa.disabled = name != "quadratic"
        surface = make_surface(name, **self._surface_options(name))
        self._quiet = True                       # one redraw for the new function, not one per control
        self.start_x.value, self.start_y.value = surface.start
        self.lr.value = surface.lr["gd"]
        self._quiet = False
        self.redraw()

    def _surface_options(self, name: str) -> dict:
        return {"kappa": self.kappa.value} if name == "quadratic" else {}

    def runs(self) -> dict[str, dict]:
        """The race the controls describe: each selected optimizer at the lr slider, with its sliders' options."""
        runs = {}
        for name in self.optimizers.value:
            spec = {"lr": self.lr.value}
            if name in ("momentum", "nesterov"):
                spec["momentum"] = self.momentum.value
            if name in ("adam", "adamw"):
                spec["betas"] = (self.beta1.value, self.beta2.value)
            runs[name] = spec
        return runs

    def _race(self, runs: dict[str, dict], start) -> dict[str, OptimizerPath]:
        """Race only the runs whose settings changed (a β slider re-runs Adam and AdamW, not all six)."""
        context = (self.surface.name, self.surface.formula, tuple(start), self.steps.value)
        keys = {label: (context, repr(sorted(spec.items()))) for label, spec in runs.items()}
        todo = {label: spec for label, spec in runs.items() if self._cache.get(label, (None,))[0] != keys[label]}
        if todo:
            for label, traj in race(self.surface, todo, start, self.steps.value).items():
                self._cache[label] = (keys[label], traj)
        return {label: self._cache[label][1] for label in runs}

    def stability(self) -> tuple[dict[str, float], dict[str, float]]:
        """(edges, predicted rates): GD's 2/λ₁ and heavy ball's (2+2μ)/λ₁ at the minimum; rates on quadratics."""
        eigs = [lam for lam in self.surface.hessian_eigenvalues() if lam > 0]
        if not eigs:
            return {}, {}
        l1 = max(eigs)
        edges = {"gd": 2 / l1, "momentum": (2 + 2 * self.momentum.value) / l1}
        rates = {}
        if self.surface.constant_hessian and self.surface.minima:
            rates = {"gd": predicted_rate(self.surface, "gd", self.lr.value),
                     "momentum": predicted_rate(self.surface, "momentum", self.lr.value, momentum=self.momentum.value)}
        return edges, rates

    def redraw(self) -> None:
        if self._quiet:
            return
        try:
            name = self.function.value
            self.surface = make_surface(name, **self._surface_options(name))
            if not self.optimizers.value:
                raise ValueError("select at least one optimizer")
            self.trajectories = self._race(self.runs(), (self.start_x.value, self.start_y.value))
        except ValueError as e:
            self.status.value = f"<span style='color:firebrick'>{e}</span>"
            return
        edges, rates = self.stability()
        predicted = {k: r for k, r in rates.items() if k in self.trajectories and r < 1}
        drawn = (self.surface.name, self.surface.formula)
        update_surface_figure(self.figure, self.surface, self.trajectories, predicted=predicted, grid=self.grid,
                              with_surface=drawn != self._drawn)
        self._drawn = drawn
        self._show_edges(edges)
        lines = []
        for label, traj in self.trajectories.items():
            line = f"<b>{label}</b>: f={traj.losses[-1]:.3g} after {traj.steps} steps"
            if label in rates and not traj.diverged and self.surface.minima:
                try:
                    measured = convergence_rate(self.surface.distance(traj.points))
                    line += f"; rate predicted {rates[label]:.4f}, measured {measured:.4f}"
                except ValueError:
                    pass
            if traj.diverged:
                line += f" — <span style='color:firebrick'>{traj.note}</span>"
            lines.append(line)
        self.status.value = "<br>".join(lines)

    def _show_edges(self, edges: dict[str, float]) -> None:
        """A strip under the lr slider: green where GD is stable, amber where only momentum is, red beyond."""
        if not edges:
            self.lr_edge.value, self.lr.style.handle_color = "", None
            return
        lo, hi = self.lr.min, self.lr.max
        pos = {k: 100 * min(max((np.log10(v) - lo) / (hi - lo), 0), 1) for k, v in edges.items()}
        self.lr_edge.value = (
            "<div style='margin-left:94px;width:230px;height:6px;background:linear-gradient(to right,"
            f"#66bb6a 0 {pos['gd']:.1f}%,#ffb300 {pos['gd']:.1f}% {pos['momentum']:.1f}%,"
            f"#e53935 {pos['momentum']:.1f}% 100%)'></div><div style='margin-left:94px;font-size:85%'>"
            f"stable near the minimum: GD for lr &lt; 2/λ₁ = {edges['gd']:.3g}, momentum for lr &lt; "
            f"(2+2μ)/λ₁ = {edges['momentum']:.3g}</div>")
        self.lr.style.handle_color = "#e53935" if self.lr.value >= edges["gd"] else None

    def static_figure(self) -> go.Figure:
        """The current view as a plain figure (what a frontend without widgets shows)."""
        return go.Figure(self.figure)

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["application/vnd.plotly.v1+json"] = json.loads(pio.to_json(self.static_figure(), validate=False))
        return bundle

    def show(self) -> None:
        from IPython.display import display
        display(self)
