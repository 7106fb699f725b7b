"""Training curves: loss per step (with an optional EMA and a log-scale toggle), the learning rate of every step,
the manual changes of ``history.events`` as labelled markers on both, epoch metrics; the LR finder's curve;
several runs overlaid (:func:`compare_runs`). Static figures, or updated in place (FigureWidget friendly)."""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..metrics import ema
from .style import INFO, json_safe, style, text_sides

__all__ = ["training_figure", "update_training_figure", "event_label", "lr_find_figure", "compare_runs",
           "figure_bundle"]

EVENTS = "events"          # the name of the marker traces (one on the loss panel, one on the LR panel)


def figure_bundle(fig) -> dict:
    """The mime bundle IPython would show for ``fig`` (plotly's renderer for this front-end: Colab's, the
    notebook's), or plotly's own JSON type where no renderer is set (a script, a test): what a display handle sends."""
    bundle = fig._repr_mimebundle_()
    if not bundle:
        import plotly.io as pio
        bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    return bundle


def event_label(event: dict) -> str:
    """'lr 0.1 → 0.003 (slider)': what changed, from what, to what, and who changed it."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return f"{event['name']} {fmt(event['old'])} → {fmt(event['new'])} ({event.get('source', 'manual')})"


def _step_value(steps, step, key):
    """The ``key`` of the step row after which ``step`` optimizer steps were done (the point an event sits on)."""
    for row in steps:
        if row["step"] > step:
            return row[key]
    return steps[-1][key] if steps else None


def _series(history, metrics, smooth: float = 0.0):
    """(name, x, y, row, col, mode) for every curve: step loss (+EMA), epoch losses, lr, events, metrics."""
    steps, epochs = history.steps, history.epochs
    xs = [r["step"] for r in steps]
    loss = [r["loss"] for r in steps]
    out = [("loss (step)", xs, loss, 1, 1, "lines")]
    end_step = {r["epoch"]: r["step"] for r in steps}  # epoch -> its last step: epoch losses share the step axis
    for split in ("train", "val"):
        key = f"{split}_loss"
        rows = [r for r in epochs if key in r]
        out.append((key, [end_step.get(r["epoch"], r["epoch"]) for r in rows], [r[key] for r in rows], 1, 1,
                    "lines+markers"))   # both, even empty: a live figure keeps its val_loss trace
    if smooth:
        out.append((f"loss (EMA {smooth:g})", xs, ema(loss, smooth), 1, 1, "lines"))
    out.append(("lr", xs, [r["lr"] for r in steps], 2, 1, "lines"))
    events = getattr(history, "events", None) or []
    ex = [e["step"] for e in events]
    labels = [event_label(e) for e in events]
    # on the loss panel a marker only (its label in the hover): a label there is printed across the loss curve
    out.append((EVENTS, ex, [_step_value(steps, s, "loss") for s in ex], 1, 1, "markers", labels))
    out.append((EVENTS + " (lr)", ex, [_step_value(steps, s, "lr") for s in ex], 2, 1, "markers+text", labels))
    for metric in metrics:
        if metric == "loss":
            continue
        for split in ("train", "val"):
            key = f"{split}_{metric}"
            rows = [r for r in epochs if key in r]
            if rows:   # a single epoch (or a partial one): the point with its value written, not a lone dot
                mode = "lines+markers" if len(rows) > 1 else "markers+text"
                out.append((key, [r["epoch"] for r in rows], [r[key] for r in rows], 1, 2, mode))
    return out


def _has_panel(history, metrics) -> bool:
    """The epoch-metrics panel is drawn when a metric other than the loss is asked for or logged."""
    return any(m != "loss" for m in metrics) or any(
        k.startswith(("train_", "val_")) and k.split("_", 1)[1] != "loss" for row in history.epochs for k in row)


def _trace(name, x, y, mode, text=None, steps=None):
    if text is None:
        trace = go.Scatter(x=x, y=json_safe(y), name=name, mode=mode)
        if "text" in mode:
            trace.update(text=[f"{v:.3g}" for v in y], textposition="middle right", cliponaxis=False)
        return trace
    # labels to the right of an event in the left half of the run, to its left in the right half: never cut
    return go.Scatter(x=x, y=json_safe(y), name=name, mode=mode, text=text, textposition=_sides(x, steps),
                      hovertext=text, cliponaxis=False, textfont=dict(size=11),
                      marker=dict(symbol="triangle-down", size=11, color="crimson"), showlegend=name == EVENTS,
                      legendgroup=EVENTS)


def _sides(x, steps):
    last = steps[-1]["step"] if steps else (max(x) if x else 1)
    return text_sides(x, 0, last)


def training_figure(history, metrics=("loss", "accuracy"), title: str = "training", *, smooth: float = 0.0,
                    log_loss: bool = False) -> go.Figure:
    """Top left: loss per step (epoch train/val loss at each epoch's last step; ``smooth`` adds an EMA of the step
    loss); below it the lr of every step; right: epoch metrics. Manual changes (``history.events``) are marked
    with their label on the loss and LR panels. A "linear / log" button switches the loss axis in the page."""
    panel = _has_panel(history, metrics)
    if panel:
        fig = make_subplots(rows=2, cols=2, row_heights=[0.68, 0.32], column_widths=[0.6, 0.4], shared_xaxes=True,
                            vertical_spacing=0.08, horizontal_spacing=0.08,
                            specs=[[{}, {"rowspan": 2}], [{}, None]],
                            subplot_titles=("loss", "epoch metrics", "learning rate"))
    else:      # no metric but the loss: no empty panel
        fig = make_subplots(rows=2, cols=1, row_heights=[0.68, 0.32], shared_xaxes=True, vertical_spacing=0.08,
                            subplot_titles=("loss", "learning rate"))
    # "training": a static page adds a replay slider (ftkit.export); the panel flag is read by the live updates
    fig.update_layout(meta={"ftkit": "training", "ftkit_metrics_panel": panel})
    for name, x, y, row, col, mode, *text in _series(history, metrics, smooth):
        if col == 1 or panel:
            fig.add_trace(_trace(name, x, y, mode, *text, steps=history.steps), row=row, col=col)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="lr", row=2, col=1)
    if panel:
        fig.update_yaxes(title_text="metric", row=1, col=2)
        fig.update_xaxes(title_text="epoch", row=1, col=2)
        _epoch_ticks(fig, history, row=1, col=2)
    _lr_axis(fig, [r["lr"] for r in history.steps])
    fig.update_yaxes(type="log" if log_loss else "linear", row=1, col=1)
    style(fig, title=title, height=480, margin=dict(l=60, r=20, t=80, b=50))
    fig.update_layout(updatemenus=[dict(
        type="buttons", direction="right", x=0.56, y=1.0, xanchor="right", yanchor="bottom", showactive=True,
        pad=dict(r=0, t=0, b=2, l=0), font=dict(size=10),
        active=1 if log_loss else 0, buttons=[
            dict(label="linear", method="relayout", args=[{"yaxis.type": "linear"}]),
            dict(label="log", method="relayout", args=[{"yaxis.type": "log"}])])])
    return fig


def _lr_axis(fig, lrs) -> None:
    """The LR panel's y axis: log scale over a decade or more; over a narrower range (a constant lr, a short
    warmup) a linear axis with a few plain ticks — a log axis there stacks its tick labels on each other."""
    finite = [v for v in lrs if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    wide = bool(finite) and max(finite) / min(finite) >= 10
    fig.update_yaxes(type="log" if wide else "linear", nticks=None if wide else 4,
                     tickformat=None if wide else ".3~g", exponentformat="power" if wide else "e", row=2, col=1)


def _epoch_ticks(fig, history, row, col) -> None:
    """Whole epochs only (never 1.5): one tick per epoch up to 10 epochs, then every ceil(n/10)."""
    n = max([r["epoch"] for r in history.epochs], default=1)
    fig.update_xaxes(tickmode="linear", tick0=1, dtick=max(1, math.ceil(n / 10)), row=row, col=col)


def update_training_figure(fig, history, metrics=("loss", "accuracy"), *, smooth: float = 0.0) -> None:
    """Refresh the traces of a figure made by :func:`training_figure` in place (FigureWidget friendly)."""
    by_name = {t.name: t for t in fig.data}
    panel = (fig.layout.meta or {}).get("ftkit_metrics_panel", True)
    for name, x, y, row, col, mode, *text in _series(history, metrics, smooth):
        trace = by_name.get(name)
        if trace is None:
            if col == 1 or panel:
                fig.add_trace(_trace(name, x, y, mode, *text, steps=history.steps), row=row, col=col)
        else:
            trace.x, trace.y = x, json_safe(y)
            if not text:   # a metric's single point has its value written; with more points a line
                trace.mode = mode
                trace.text = [f"{v:.3g}" for v in y] if "text" in mode else None
                if "text" in mode:
                    trace.textposition, trace.cliponaxis = "middle right", False
            if text:
                trace.text = trace.hovertext = text[0]
                trace.textposition = _sides(x, history.steps)
    _lr_axis(fig, [r["lr"] for r in history.steps])
    if panel:
        _epoch_ticks(fig, history, row=1, col=2)
    wanted = {f"loss (EMA {smooth:g})"} if smooth else set()
    for trace in fig.data:   # a smoothing switched off (or changed) hides the old EMA curve
        if trace.name.startswith("loss (EMA") and trace.name not in wanted:
            trace.x, trace.y = [], []


def lr_find_figure(result, title: str = "learning-rate finder") -> go.Figure:
    """Smoothed loss against the lr (log axis) of an :func:`ftkit.lr_find` result: the valley (the stretch where
    the loss falls) shaded, the suggestion marked in its middle (its value in the legend and the title, so no
    label sits on another); without a suggestion, the reason written in the plot."""
    fig = go.Figure()
    fig.add_scatter(x=result.lrs, y=json_safe(result.raw_losses), name="loss", mode="lines",
                    line=dict(color="lightgray"))
    fig.add_scatter(x=result.lrs, y=json_safe(result.losses), name=f"loss (EMA {result.smooth:g})", mode="lines",
                    line=dict(color="#1f77b4"))
    finite = [v for v in result.losses if math.isfinite(v)]
    start = [v for v in result.raw_losses[:max(3, len(result.raw_losses) // 10)] if math.isfinite(v)]
    low, high = min(finite), max(max(start, default=finite[0]), finite[0]) * 1.15 + 0.02   # the blow-up is cut
    if result.suggestion is not None:
        a, b = result.valley
        fig.add_vrect(x0=a, x1=b, fillcolor="#2ca02c", opacity=0.08, line_width=0)
        fig.add_scatter(x=[a, b], y=[_at(result.lrs, result.losses, v) for v in (a, b)], mode="markers",
                        name=f"valley {a:.2g} → {b:.2g}", marker=dict(symbol="line-ns-open", size=14,
                                                                        color="#2ca02c", line=dict(width=2)))
        fig.add_scatter(x=[result.suggestion], y=[_at(result.lrs, result.losses, result.suggestion)],
                        name=f"suggested lr {result.suggestion:.2g}", mode="markers",
                        marker=dict(size=14, color="crimson", symbol="circle-open", line=dict(width=3)))
        title = f"{title} · suggested lr {result.suggestion:.2g}"
    else:
        fig.add_annotation(text=result.message.replace("; ", ";<br>"), xref="paper", yref="paper", x=0.02,
                           y=0.98, xanchor="left", yanchor="top", showarrow=False, align="left",
                           font=dict(color=INFO, size=12), bgcolor="rgba(255,255,255,0.85)")
        title = f"{title} · no suggestion"
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(title_text="loss", range=[low - 0.08 * (high - low), high])
    return style(fig, title=title, height=360, margin=dict(l=60, r=20, t=60, b=50))


def _at(xs, ys, x):
    return min(zip(xs, ys), key=lambda p: abs(math.log(p[0]) - math.log(x)))[1]


def compare_runs(runs: dict, metric: str | None = None, *, smooth: float = 0.9, title: str = "runs compared"):
    """Overlay several runs: ``{label: history}`` or ``{label: (history, {param: value})}``.

    Left: the step loss (EMA-smoothed with ``smooth``) of each run; right: the epoch ``metric`` (default: the
    first of val_accuracy, val_f1, val_loss, train_loss that every run logged), train dashed, val solid. Each
    run keeps one colour, and its parameters are written in its legend entry."""
    if not runs:
        raise ValueError("compare_runs needs at least one run: {label: history, ...}")
    items = {label: run if isinstance(run, tuple) else (run, {}) for label, run in runs.items()}
    for label, (history, _) in items.items():
        if not hasattr(history, "steps") or not hasattr(history, "epochs"):
            raise TypeError(f"run {label!r} is a {type(history).__name__}, not a History (what fit returns); "
                            "pass {label: history} or {label: (history, params)}")
    if metric is None:
        logged = [set(k for row in h.epochs for k in row) for h, _ in items.values()]
        metric = next((m for m in ("val_accuracy", "val_f1", "val_loss", "train_accuracy", "train_loss")
                       if all(m in cols for cols in logged)), "train_loss")
    base = metric.split("_", 1)[1] if metric.startswith(("train_", "val_")) else metric
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"loss per step (EMA {smooth:g})", f"{base} per epoch"))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#7f7f7f"]
    # runs that agree draw on top of each other: the first is wide and pale, each later one narrower on top, so
    # every run stays visible; train is an open marker on a dashed line, validation a filled one on a solid line
    for i, (label, (history, params)) in enumerate(items.items()):
        color, width, size = palette[i % len(palette)], max(6 - 2.5 * i, 1.5), max(16 - 5 * i, 7)
        name = label + (" (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
        fig.add_scatter(x=[r["step"] for r in history.steps], y=json_safe(ema([r["loss"] for r in history.steps],
                                                                                smooth)),
                        name=f"{name}: loss", legendgroup=label, mode="lines", opacity=0.9 if i else 0.45,
                        line=dict(color=color, width=width), row=1, col=1)
        for split, dash, symbol in (("train", "dash", "circle-open"), ("val", "solid", "circle")):
            key = f"{split}_{base}"
            rows = [r for r in history.epochs if key in r]
            if rows:
                fig.add_scatter(x=[r["epoch"] for r in rows], y=json_safe([r[key] for r in rows]),
                                name=f"{label}: {key}", legendgroup=label, mode="lines+markers",
                                opacity=0.9 if i else 0.45, line=dict(color=color, dash=dash, width=width),
                                marker=dict(symbol=symbol, size=size, line=dict(width=2, color=color)),
                                row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    epochs = max([r["epoch"] for h, _ in items.values() for r in h.epochs], default=1)
    fig.update_xaxes(tickmode="linear", tick0=1, dtick=max(1, math.ceil(epochs / 10)), row=1, col=2)   # never 1.5
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text=base, row=1, col=2)
    return style(fig, title=title, height=400, margin=dict(l=60, r=20, t=60, b=50))
