"""Language-model figures: validation curves of several runs on one axis."""
from __future__ import annotations

import math

import plotly.graph_objects as go

__all__ = ["curves_figure"]


def curves_figure(histories: dict, key: str = "val_ce", perplexity: bool = True, title: str = "",
                  start: dict | None = None) -> go.Figure:
    """One line per run: ``key`` (nats per token) after every validation pass, against the optimizer step;
    ``perplexity=True`` plots :math:`e^{CE}` on a log axis. ``start``: an optional value at step 0 per run."""
    fig = go.Figure()
    for name, history in histories.items():
        steps_per_epoch = len(history.steps) // max(len(history.epochs), 1)
        x = [r["epoch"] * steps_per_epoch for r in history.epochs]
        y = [r[key] for r in history.epochs]
        if start and name in start:
            x, y = [0, *x], [start[name], *y]
        fig.add_scatter(x=x, y=[math.exp(v) for v in y] if perplexity else y, name=name, mode="lines+markers")
    fig.update_layout(title=title, height=380, xaxis_title="optimizer step",
                      yaxis_title="validation perplexity (e^CE)" if perplexity else f"{key} (nats per token)",
                      margin=dict(l=50, r=20, t=50, b=40))
    if perplexity:
        fig.update_yaxes(type="log")
    return fig
