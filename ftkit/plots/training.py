"""Training curves: per-step loss and per-epoch metrics, as a static figure or updated in place."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["training_figure", "update_training_figure", "runs_figure"]


def _series(history, metrics):
    """(name, x, y, panel) for every curve to draw: step loss, then train/val of each epoch metric."""
    steps = history.steps
    out = [("loss (step)", [r["step"] for r in steps], [r["loss"] for r in steps], 1)]
    epochs = history.epochs
    end_step = {r["epoch"]: r["step"] for r in steps}  # epoch -> its last step: epoch losses share the step axis
    for metric in metrics:
        for split in ("train", "val"):
            key = f"{split}_{metric}"
            if metric == "loss" or any(key in r for r in epochs):
                rows = [r for r in epochs if key in r]
                x = [end_step.get(r["epoch"], r["epoch"]) for r in rows] if metric == "loss" else [r["epoch"] for r in rows]
                out.append((key, x, [r[key] for r in rows], 1 if metric == "loss" else 2))
    return out


def training_figure(history, metrics=("loss", "accuracy"), title: str = "training") -> go.Figure:
    """Left: loss per step (and epoch train/val loss against the step at each epoch's end); right: metrics."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "epoch metrics"))
    for name, x, y, panel in _series(history, metrics):
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines" if name.endswith("(step)") else "lines+markers"),
                      row=1, col=panel)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(title=title, height=360, margin=dict(l=40, r=20, t=60, b=40))
    return fig


def update_training_figure(fig, history, metrics=("loss", "accuracy")) -> None:
    """Refresh the traces of a figure made by :func:`training_figure` in place (FigureWidget friendly)."""
    by_name = {t.name: t for t in fig.data}
    for name, x, y, panel in _series(history, metrics):
        trace = by_name.get(name)
        if trace is None:
            fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers"), row=1, col=panel)
        else:
            trace.x, trace.y = x, y


def runs_figure(histories: dict, title: str = "loss per step") -> go.Figure:
    """The per-step loss of several runs on one axis (e.g. 1 process vs N processes: the curves coincide)."""
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        steps = history.steps
        fig.add_trace(go.Scatter(x=[r["step"] for r in steps], y=[r["loss"] for r in steps], name=name, mode="lines",
                                 line=dict(width=4 if i == 0 else 2, dash="solid" if i == 0 else "dot")))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", height=340,
                      margin=dict(l=40, r=20, t=60, b=40))
    return fig
