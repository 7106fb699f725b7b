"""Widgets as static equivalents: what a page without a kernel shows in place of a live control.

A figure says what it is in ``layout.meta["ftkit"]`` (the explorer and the training figure set it):
- ``"gd_explorer"`` (with the explorer's settings in ``meta["state"]``): the paths are precomputed on a grid of
  learning rates and momenta and two plotly sliders pick the drawn ones (:func:`explorer_static`);
- ``"training"``: the final training figure with its LR events, and a slider (and a play button) that replays the
  run step by step (:func:`reveal_static`).
The page script (:data:`ftkit.export.assets.PAGE_JS`) reads ``layout.meta["ftkit_static"]`` to drive them.
"""
from __future__ import annotations

import base64
import math

import numpy as np

__all__ = ["to_static", "explorer_static", "reveal_static", "clean", "values"]

MAX_POINTS = 120          # points per precomputed path: a smooth curve at a fraction of the page weight


def clean(obj):
    """JSON-safe copy: non-finite floats → None (JSON has no NaN), numpy scalars → Python numbers."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def values(array) -> list:
    """A trace's array as a list, whether plain JSON or plotly ≥ 6's typed form ``{"dtype", "bdata", "shape"}``."""
    if isinstance(array, dict) and "bdata" in array:
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
        shape = array.get("shape")
        if isinstance(shape, str):
            shape = [int(s) for s in shape.split(",")]
        return (flat.reshape(shape) if shape else flat).tolist()
    return list(array) if array is not None else []


def _kind(layout: dict) -> str | None:
    meta = layout.get("meta")
    return meta.get("ftkit") if isinstance(meta, dict) else None


def to_static(figure: dict) -> dict:
    """The figure a static page shows for this output (unchanged unless it stands for a widget)."""
    figure = clean(figure)
    layout = figure.get("layout", {})
    kind = _kind(layout)
    try:
        if kind == "gd_explorer" and isinstance(layout["meta"].get("state"), dict):
            return explorer_static(figure, layout["meta"]["state"])
        if kind == "training":
            return reveal_static(figure)
    except Exception as e:                          # a page never breaks on one figure: it shows the last frame
        figure.setdefault("layout", {}).setdefault("annotations", []).append(dict(
            text=f"(the static slider could not be built: {type(e).__name__})", showarrow=False,
            xref="paper", yref="paper", x=0, y=-0.12, font=dict(size=11, color="#57606a")))
    return figure


def _thin(xs: list, ys: list, zs: list | None):
    """At most MAX_POINTS points (the first and the last kept), 5 significant digits."""
    n = len(xs)
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int)) if n else []

    def r(seq):
        return [None if v is None or not math.isfinite(v) else float(f"{v:.5g}") for v in (seq[i] for i in idx)]
    return [r(xs), r(ys), r(zs) if zs is not None else None]


def _path_traces(fig_data: list) -> list[int]:
    return [i for i, t in enumerate(fig_data) if isinstance(t.get("meta"), str) and ":" in t["meta"]]


def explorer_static(figure: dict, state: dict, lr_factors=(0.1, 0.3, 1.0, 3.0, 10.0),
                    momenta=(0.0, 0.5, 0.8, 0.9, 0.95, 0.99)) -> dict:
    """The explorer's figure with its paths precomputed for every (lr, momentum) on a grid around its settings:
    the lr slider scales every optimizer's learning rate (×0.1 … ×10), the momentum slider sets μ (heavy ball and
    Nesterov). Each pick redraws the paths, the 3-D paths, the loss curves and the legend exactly as the live
    explorer would. A table entry per pick: ``[x, y, z or None, name]`` for each path trace."""
    from ..ui.gd_explorer import GDExplorer
    explorer = GDExplorer(**state)
    base_lr, base_mu = explorer.lr.value, explorer.momentum.value
    momenta = sorted(set(momenta) | {round(base_mu, 4)})
    traces = _path_traces(figure["data"])
    metas = [figure["data"][i]["meta"] for i in traces]
    table = {}
    for i, factor in enumerate(lr_factors):
        for j, mu in enumerate(momenta):
            explorer.set_controls(lr=min(max(base_lr * factor, 10 ** explorer.lr.min), 10 ** explorer.lr.max),
                                  momentum=mu)
            by_meta = {t.meta: t for t in explorer.figure.data}
            rows = []
            for meta in metas:
                t = by_meta[meta]
                xs, ys = [list(v) if v is not None else [] for v in (t.x, t.y)]
                zs = list(t.z) if getattr(t, "z", None) is not None else None
                rows.append(_thin(xs, ys, zs) + [t.name])      # names carry the lr ("gd (lr=0.001)")
            table[f"{i},{j}"] = rows
    lr_active, mu_active = lr_factors.index(1.0), momenta.index(round(base_mu, 4))
    for t, row in zip(traces, table[f"{lr_active},{mu_active}"]):      # the page opens on the explorer's settings
        figure["data"][t]["x"], figure["data"][t]["y"] = row[0], row[1]
        if row[2] is not None:
            figure["data"][t]["z"] = row[2]
        figure["data"][t]["name"] = row[3]

    def slider(name, labels, active, y):
        return dict(active=active, currentvalue=dict(prefix=f"{name}: "), pad=dict(t=30), y=y, len=0.45,
                    x=0 if name.startswith("lr") else 0.55,
                    steps=[dict(label=label, method="skip", args=[]) for label in labels])
    layout = figure.setdefault("layout", {})
    layout["sliders"] = [slider("lr ×", [f"{f:g}" for f in lr_factors], lr_active, -0.02),
                         slider("momentum μ", [f"{m:g}" for m in momenta], mu_active, -0.02)]
    layout["margin"] = {**layout.get("margin", {}), "b": 130}
    layout["height"] = (layout.get("height") or 720) + 80
    layout["meta"] = {**layout.get("meta", {}), "ftkit_static": dict(kind="grid", traces=traces, table=table)}
    return figure


def reveal_static(figure: dict, frames: int = 40) -> dict:
    """The final training figure with a slider over the steps and a play button: each trace drawn up to a step
    (epoch metrics appear when their epoch has ended)."""
    data = figure["data"]
    step_axes = {None, "x", "x3"}                    # loss and learning-rate panels share the step axis
    steps = [v for t in data if t.get("xaxis") in step_axes for v in values(t.get("x")) if v is not None]
    if not steps:
        return figure
    last = max(steps)
    epoch_x = [v for t in data if t.get("xaxis") not in step_axes for v in values(t.get("x")) if v is not None]
    last_epoch = max(epoch_x) if epoch_x else 1
    traces, clocks = [], []
    for i, t in enumerate(data):
        xs = values(t.get("x"))
        if not xs:
            continue
        on_steps = t.get("xaxis") in step_axes
        t["x"], t["y"] = xs, values(t.get("y"))
        clocks.append([(v if on_steps else v / last_epoch * last) if v is not None else 0 for v in xs])
        traces.append(i)
    ticks = sorted({int(round(v)) for v in np.linspace(min(steps), last, frames)})
    layout = figure.setdefault("layout", {})
    layout["sliders"] = [dict(active=len(ticks) - 1, currentvalue=dict(prefix="step "), pad=dict(t=40), len=0.9,
                              x=0.1, steps=[dict(label=str(s), method="skip", args=[]) for s in ticks])]
    layout["updatemenus"] = list(layout.get("updatemenus", [])) + [dict(
        type="buttons", showactive=False, x=0.0, y=0, xanchor="left", yanchor="top", pad=dict(t=50),
        buttons=[dict(label="▶ play", method="skip", args=[])])]
    layout["margin"] = {**layout.get("margin", {}), "b": 120}
    layout["height"] = (layout.get("height") or 480) + 90
    layout["meta"] = {**layout.get("meta", {}), "ftkit_static": dict(kind="reveal", traces=traces, clocks=clocks,
                                                                       ticks=ticks)}
    return figure
