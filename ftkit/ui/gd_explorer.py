"""The interactive gradient-descent explorer: controls that re-run a race on the batched engine and redraw the
path figure, the basin map and heavy ball's (η, μ) rate map in place. Each optimizer has its own learning rate,
by default its best one on a log grid for the function, start and steps shown (:func:`ftkit.optviz.races.tuned_lrs`),
so every optimizer is seen at a fair setting."""
from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from ..optim import OPTIMIZERS
from ..optviz.races import ENGINES, OptimizerPath, basins, race, tuned_lrs
from ..optviz.surfaces import SURFACES, Surface, convergence_rate, make_surface, predicted_rate
from ..optviz.gd_engine import GD_SCHEDULES
from ..plots.descent import (basin_figure, momentum_map_figure, surface_figure, update_basin_figure,
                             update_momentum_map_figure, update_surface_figure)
from .figure_widget import FigureWidget

__all__ = ["GDExplorer"]

_EXPLORER_OPTIMIZERS = ("gd", "momentum", "nesterov", "rmsprop", "adam", "adamw")


# each constructor knob -> the range its slider shows (a slider would silently clamp a value outside it)
SLIDER_RANGES = {"lr": (1e-4, 10), "momentum": (0, 0.99), "beta1": (0, 0.99), "beta2": (0.9, 0.9999),
                 "steps": (10, 1000), "kappa": (1, 1000), "noise": (0, math.inf), "basin_grid": (0, 32)}


def _check_ranges(**values):
    for name, value in values.items():
        lo, hi = SLIDER_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not lo <= value <= hi:
            raise ValueError(f"GDExplorer({name}={value!r}): {name} must be a number from {lo:g} to {hi:g} (the "
                             "range of its slider, which would otherwise move it silently)")


class GDExplorer:
    """Function dropdown (yours too: pass ``make_surface(lambda x, y: ..., domain=...)``), optimizer multi-select,
    a log-lr slider per optimizer (``lrs[name]``; ``lr`` is GD's; a handle turns red past its stability edge) and a
    *best lr for each* button, momentum/β sliders, steps, start, gradient noise σ and its seed, lr schedule, engine,
    a basin-map grid (``n × n`` starts per optimizer; 0 hides it), and heavy ball's rate over the (η, μ) plane
    near the minimum with momentum's setting marked (click the map to move it). Every change re-runs what it
    affects and redraws the same figures in place. Picking a function resets the start, every lr (to its best on
    a log grid) and the noise range (up to the gradient's size at the start).

    ``lr``: None (each optimizer's best on a log grid), one number for all, or ``{name: lr}`` (the others tuned).

    Display it as the last expression of a cell (or ``explorer.show()``): a frontend with widgets shows the
    live controls; one without (a papermill run, a static viewer) shows the static path figure carried in the
    same output. ``redraw()`` is what each control calls; it never raises: errors go to ``status``.
    """

    def __init__(self, function="rosenbrock", optimizers=("gd", "momentum", "adam"), lr=None,
                 momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.999, steps: int = 300,
                 start=None, kappa: float = 10.0, grid: int = 80, noise: float = 0.0, seed: int = 0,
                 schedule: str = "constant", basin_grid: int = 0, engine: str = "batched"):
        import ipywidgets as W
        self._own: dict[str, Surface] = {}
        if not isinstance(function, str):                  # your own function (or a Surface object)
            surface = make_surface(function)
            self._own[surface.name] = surface
            function = surface.name
        surface = self._make(function, kappa)
        start = surface.start if start is None else start
        given = lr if isinstance(lr, dict) else {} if lr is None else dict.fromkeys(_EXPLORER_OPTIMIZERS, lr)
        unknown = set(given) - set(_EXPLORER_OPTIMIZERS)
        if unknown:
            raise ValueError(f"GDExplorer(lr=...): no optimizer {sorted(unknown)[0]!r} here; the lr dict's keys are "
                             f"some of {', '.join(_EXPLORER_OPTIMIZERS)}")
        for value in given.values():
            _check_ranges(lr=value)
        _check_ranges(momentum=momentum, beta1=beta1, beta2=beta2, steps=steps, kappa=kappa, noise=noise,
                      basin_grid=basin_grid)
        self.grid, self.surface = grid, surface
        self._settings_at_start = dict(momentum=momentum, betas=(beta1, beta2), noise=noise, seed=seed,
                                       schedule=schedule)
        lrs = given if len(given) == len(_EXPLORER_OPTIMIZERS) else \
            {**self._tuned(surface, start, steps, **self._settings_at_start), **given}
        wide = dict(layout=W.Layout(width="420px"), style={"description_width": "90px"})
        self.function = W.Dropdown(options=list(SURFACES) + list(self._own), value=function,
                                   description="function", **wide)
        self.optimizers = W.SelectMultiple(options=_EXPLORER_OPTIMIZERS, value=tuple(optimizers), rows=6,
                                           description="optimizers", **wide)
        self.lrs = {name: W.FloatLogSlider(value=lrs[name], base=10, min=-4, max=1, step=0.01,  # own layouts:
                                           description=f"lr {name}", readout_format=".3g",  # each hides alone
                                           layout=W.Layout(width="420px"), style={"description_width": "90px"})
                    for name in _EXPLORER_OPTIMIZERS}
        self.lr = self.lrs["gd"]
        self.tune = W.Button(description="best lr for each", tooltip="each optimizer's best lr on a log grid "
                             "(1e-4 … 10) for this function, start, steps and settings", layout=W.Layout(width="200px"))
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
        self.noise = W.FloatSlider(value=noise, min=0, max=max(noise, self._noise_range(surface, start)),
                                   step=0.01, description="noise σ", readout_format=".3g", **wide)
        self.seed = W.IntText(value=seed, description="seed", layout=W.Layout(width="200px"))
        self.schedule = W.Dropdown(options=list(GD_SCHEDULES), value=schedule, description="lr schedule", **wide)
        self.engine = W.Dropdown(options=list(ENGINES), value=engine, description="engine", **wide)
        self.basin_grid = W.IntSlider(value=basin_grid, min=0, max=32, step=4, description="basin grid", **wide)
        self.status = W.HTML()
        self.figure = surface_figure(surface, labels=_EXPLORER_OPTIMIZERS, grid=grid, show_3d=True,
                                     figure_cls=FigureWidget)
        self.basin_figure = basin_figure(labels=_EXPLORER_OPTIMIZERS, figure_cls=FigureWidget,
                                         title="basins: where each start of the grid settles")
        self.basin_box = W.Box([self.basin_figure], layout=W.Layout(display="" if basin_grid > 0 else "none"))
        self.momentum_figure = momentum_map_figure(
            figure_cls=FigureWidget, title="heavy ball near the minimum: rate per step over (η, μ); click to move")
        self.momentum_box = W.Box([self.momentum_figure])
        try:                                      # a click on the map moves momentum's (η, μ)
            self.momentum_figure.data[0].on_click(self._on_map_click)
        except Exception:  # noqa: BLE001  (a frontend without click events: the sliders still move the point)
            pass
        self._drawn = (surface.name, surface.formula)
        controls = W.VBox([self.function, self.optimizers, *self.lrs.values(), self.lr_edge, self.tune,
                           self.momentum, self.beta1, self.beta2, self.steps, self.kappa, W.HBox([self.start_x, self.start_y]), self.noise,
                           self.seed, self.schedule, self.engine, self.basin_grid, self.status])
        self.figure_box = W.Box([self.figure])   # a plain box carries the CSS class (the anywidget figure does not)
        self.widget = W.VBox([controls, self.figure_box, self.basin_box, self.momentum_box])
        for w, name in ((self.widget, "explorer"), (self.lr, "explorer-lr"), (self.status, "explorer-status"),
                        (self.figure_box, "explorer-paths"), (self.basin_box, "explorer-basins"),
                        (self.momentum_box, "explorer-momentum")):
            w.add_class(f"ftkit-{name}")  # stable hooks for CSS and browser tests
        self.function.observe(self._on_function, "value")
        self.tune.on_click(lambda _: self.retune())
        for w in (self.optimizers, *self.lrs.values(), self.momentum, self.beta1, self.beta2, self.steps, self.kappa,
                  self.start_x, self.start_y, self.noise, self.seed, self.schedule, self.engine, self.basin_grid):
            w.observe(lambda change: self.redraw(), "value")
        self.trajectories: dict[str, OptimizerPath] = {}
        self.basins = None
        self._cache: dict[str, tuple] = {}          # label -> (settings key, path)
        self._basin_key = None
        self._quiet = False
        self.redraw()

    @staticmethod
    def _tuned(surface: Surface, start, steps: int, *, momentum, betas, noise, seed, schedule) -> dict[str, float]:
        """Each optimizer's best lr on a log grid (:func:`tuned_lrs`); the surface's suggestion where all diverge."""
        runs = {name: {k: v for k, v in (("momentum", momentum), ("betas", betas))
                       if (k == "momentum" and OPTIMIZERS[name].takes_momentum)
                       or (k == "betas" and OPTIMIZERS[name].takes_betas)} for name in _EXPLORER_OPTIMIZERS}
        try:
            tuned = tuned_lrs(surface, runs, start, steps, noise=noise, seed=seed, schedule=schedule)
        except ValueError:
            tuned = {}
        return {name: tuned.get(name, surface.lr.get(name, 1e-3)) for name in _EXPLORER_OPTIMIZERS}

    def retune(self) -> None:
        """Set every optimizer's lr to its best on a log grid for the current function, start, steps and settings."""
        self._quiet = True
        try:
            lrs = self._tuned(self.surface, (self.start_x.value, self.start_y.value), self.steps.value,
                              momentum=self.momentum.value, betas=(self.beta1.value, self.beta2.value),
                              noise=self.noise.value, seed=self.seed.value, schedule=self.schedule.value)
            for name, slider in self.lrs.items():
                slider.value = lrs[name]
        except ValueError as e:
            self.status.value = f"<span style='color:firebrick'>{e}</span>"
        finally:
            self._quiet = False
        self.redraw()

    def set_controls(self, **values) -> None:
        """Set several controls by attribute name (``lr=0.01, momentum=0.5``), then redraw once — not once per
        control, as moving them one by one would."""
        self._quiet = True
        try:
            for name, value in values.items():
                getattr(self, name).value = value
        finally:
            self._quiet = False
        self.redraw()

    def _on_map_click(self, trace, points, state) -> None:
        if points.xs and points.ys:
            self._quiet = True
            self.lrs["momentum"].value, self.momentum.value = float(points.xs[0]), float(points.ys[0])
            self._quiet = False
            self.redraw()

    def _make(self, name: str, kappa: float) -> Surface:
        if name in self._own:
            return self._own[name]
        return make_surface(name, **({"kappa": kappa} if name == "quadratic" else {}))

    @staticmethod
    def _noise_range(surface: Surface, start) -> float:
        """The σ slider's top: the gradient's size at the start (noise that large makes GD a random walk)."""
        _, gx, gy = surface.value_and_grad(np.array([float(start[0])]), np.array([float(start[1])]))
        return float(np.round(max(np.hypot(gx, gy)[0], 1.0), 1))

    def _on_function(self, change) -> None:
        name = change["new"]
        self.kappa.disabled = name != "quadratic"
        surface = self._make(name, self.kappa.value)
        self._quiet = True                       # one redraw for the new function, not one per control
        self.start_x.value, self.start_y.value = surface.start
        self.noise.value, self.noise.max = 0.0, self._noise_range(surface, surface.start)
        self.surface = surface
        self.retune()                            # every lr to its best for the new function (and one redraw)

    def runs(self) -> dict[str, dict]:
        """The race the controls describe: each selected optimizer at its lr slider, with its sliders' options
        (the registry says which: heavy-ball μ for momentum/Nesterov, β's for Adam/AdamW)."""
        runs = {}
        for name in self.optimizers.value:
            spec, info = {"lr": self.lrs[name].value}, OPTIMIZERS[name]
            if info.takes_momentum:
                spec["momentum"] = self.momentum.value
            if info.takes_betas:
                spec["betas"] = (self.beta1.value, self.beta2.value)
            runs[name] = spec
        return runs

    def _settings(self) -> dict:
        return dict(noise=self.noise.value, seed=self.seed.value, schedule=self.schedule.value,
                    engine=self.engine.value)

    def _race(self, runs: dict[str, dict], start) -> dict[str, OptimizerPath]:
        """Race only the runs whose settings changed (a β slider re-runs Adam and AdamW, not all six)."""
        context = (self.surface.name, self.surface.formula, tuple(start), self.steps.value,
                   tuple(sorted(self._settings().items())))
        keys = {label: (context, repr(sorted(spec.items()))) for label, spec in runs.items()}
        todo = {label: spec for label, spec in runs.items() if self._cache.get(label, (None,))[0] != keys[label]}
        if todo:
            for label, path in race(self.surface, todo, start, self.steps.value, **self._settings()).items():
                self._cache[label] = (keys[label], path)
        return {label: self._cache[label][1] for label in runs}

    def _basins(self, runs: dict[str, dict]) -> None:
        """Recompute the basin map when anything it depends on changed (the start point does not)."""
        n = self.basin_grid.value
        self.basin_box.layout.display = "" if n > 0 else "none"
        if n <= 0:
            self.basins, self._basin_key = None, None
            return
        key = (self.surface.name, self.surface.formula, n, self.steps.value, repr(sorted(self._settings().items())),
               repr(sorted((k, sorted(v.items())) for k, v in runs.items())))
        if key != self._basin_key:
            self.basins = basins(self.surface, runs, n, self.steps.value, **self._settings())
            update_basin_figure(self.basin_figure, self.basins)
            self._basin_key = key

    def stability(self) -> tuple[dict[str, float], dict[str, float]]:
        """(edges, predicted rates): GD's 2/λ₁ and heavy ball's (2+2μ)/λ₁ at the minimum; rates on quadratics."""
        eigs = [lam for lam in self.surface.hessian_eigenvalues() if lam > 0]
        if not eigs:
            return {}, {}
        l1 = max(eigs)
        edges = {"gd": 2 / l1, "momentum": (2 + 2 * self.momentum.value) / l1}
        rates = {}
        if self.surface.constant_hessian and self.surface.minima and self.schedule.value == "constant" \
                and self.noise.value == 0:
            rates = {"gd": predicted_rate(self.surface, "gd", self.lrs["gd"].value),
                     "momentum": predicted_rate(self.surface, "momentum", self.lrs["momentum"].value,
                                                momentum=self.momentum.value)}
        return edges, rates

    def redraw(self) -> None:
        if self._quiet:
            return
        try:
            self.surface = self._make(self.function.value, self.kappa.value)
            if not self.optimizers.value:
                raise ValueError("select at least one optimizer")
            for name, slider in self.lrs.items():
                slider.layout.display = "" if name in self.optimizers.value else "none"
            runs = self.runs()
            self.trajectories = self._race(runs, (self.start_x.value, self.start_y.value))
            self._basins(runs)
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
        self._show_momentum_map()
        self.status.value = "<br>".join(self._status_lines(rates))

    def _status_lines(self, rates: dict[str, float]) -> list[str]:
        lines = []
        for label, path in self.trajectories.items():
            line = f"<b>{label}</b>: f={path.losses[-1]:.3g} after {path.steps} steps"
            if label in rates and not path.diverged and self.surface.minima:
                try:
                    measured = convergence_rate(self.surface.distance(path.points))
                    line += f"; rate predicted {rates[label]:.4f}, measured {measured:.4f}"
                except ValueError:
                    pass
            if path.diverged:
                line += f" — <span style='color:firebrick'>{path.note}</span>"
            if self.basins is not None and label in self.basins.labels:
                share = self.basins.share(label)
                settled = sum(v for k, v in share.items() if k >= 0)
                line += (f"; basins: {100 * settled:.0f}% of {self.basins.minimum[0].size} starts settle"
                         + (f", {100 * share[-2]:.0f}% diverge" if -2 in share else ""))
            lines.append(line)
        return lines

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
        self.lrs["momentum"].style.handle_color = "#e53935" if self.lrs["momentum"].value >= edges["momentum"] else None

    def _show_momentum_map(self) -> None:
        """Heavy ball's rate over (η, μ) for the Hessian at the minimum, momentum's setting marked (hidden on a
        function without a minimum of positive curvature)."""
        eigs = [lam for lam in self.surface.hessian_eigenvalues() if lam > 0] if self.surface.minima else []
        self.momentum_box.layout.display = "" if len(eigs) == 2 else "none"
        self.momentum_rate = None
        if len(eigs) == 2:
            self.momentum_rate = update_momentum_map_figure(self.momentum_figure, eigs, self.lrs["momentum"].value,
                                                            self.momentum.value)

    def state(self) -> dict | None:
        """The constructor settings that redraw the current view (``GDExplorer(**explorer.state())``); None for
        a function of your own, which cannot be written down as data."""
        if self.function.value in self._own:
            return None
        return dict(function=self.function.value, optimizers=list(self.optimizers.value), lr=self.lr.value,
                    momentum=self.momentum.value, beta1=self.beta1.value, beta2=self.beta2.value,
                    steps=self.steps.value, start=[self.start_x.value, self.start_y.value], kappa=self.kappa.value,
                    grid=self.grid, noise=self.noise.value, seed=self.seed.value, schedule=self.schedule.value,
                    basin_grid=self.basin_grid.value, engine=self.engine.value)

    def static_figure(self) -> go.Figure:
        """The current view as a plain figure (what a frontend without widgets shows); its ``layout.meta`` names
        the explorer and its settings, from which a static page precomputes slider frames (:mod:`ftkit.export`)."""
        fig = go.Figure(self.figure)
        fig.update_layout(meta={"ftkit": "gd_explorer", "state": self.state()})
        return fig

    def _repr_mimebundle_(self, **kwargs):
        if hasattr(self.widget, "_repr_mimebundle_"):
            bundle = self.widget._repr_mimebundle_(**kwargs)
        else:   # ipywidgets 7 (Colab) displays through _ipython_display_: the same view bundle, built here
            bundle = {"text/plain": "GDExplorer", "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}}
        bundle["application/vnd.plotly.v1+json"] = json.loads(pio.to_json(self.static_figure(), validate=False))
        return bundle

    def show(self) -> None:
        from IPython.display import display
        display(self)
