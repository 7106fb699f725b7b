"""Figures that compare fine-tuning modes side by side: scores, cost, loss curves, confusion matrices, probabilities."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["modes_figure", "loss_curves_figure", "confusions_figure", "probabilities_figure"]


def modes_figure(results: dict[str, dict], title: str = "same data, same budget") -> go.Figure:
    """Three panels per mode: test accuracy and macro-F1, training time, trainable parameters (log scale).

    ``results[mode]`` holds ``accuracy``, ``macro_f1``, ``train_time_s`` and ``trainable_params``.
    """
    modes = list(results)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("test score", "training time (s)", "trainable parameters"))
    for key in ("accuracy", "macro_f1"):
        fig.add_bar(x=modes, y=[results[m][key] for m in modes], name=key, row=1, col=1,
                    text=[f"{results[m][key]:.3f}" for m in modes])
    fig.add_bar(x=modes, y=[results[m]["train_time_s"] for m in modes], name="time", row=1, col=2, showlegend=False,
                text=[f"{results[m]['train_time_s']:.0f}" for m in modes])
    fig.add_bar(x=modes, y=[results[m]["trainable_params"] for m in modes], name="params", row=1, col=3,
                showlegend=False, text=[f"{results[m]['trainable_params']:,}" for m in modes])
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=3)
    return fig.update_layout(title=title, barmode="group", height=360, margin=dict(l=40, r=20, t=70, b=40))


def _running_mean(ys: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y - (ys[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def loss_curves_figure(histories: dict, title: str = "training loss per step") -> go.Figure:
    """One line per mode: the loss of every step (``History.steps``, faint) with its running mean over a twentieth of
    the run (bold, one dash style per mode, so no mode's curve hides another's), and the validation accuracy per
    epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss (step; bold: running mean)",
                                                        "validation accuracy (epoch)"))
    dashes = ("solid", "dash", "dot", "dashdot")
    for i, (mode, history) in enumerate(histories.items()):
        color = f"hsl({(i * 137) % 360},60%,45%)"
        steps, losses = [r["step"] for r in history.steps], [r["loss"] for r in history.steps]
        fig.add_scatter(x=steps, y=losses, name=f"{mode} (each step)", line=dict(color=color, width=1), opacity=0.3,
                        legendgroup=mode, showlegend=False, row=1, col=1)
        fig.add_scatter(x=steps, y=_running_mean(losses, max(1, len(losses) // 20)), name=mode, legendgroup=mode,
                        line=dict(color=color, width=3, dash=dashes[i % len(dashes)]), row=1, col=1)
        if any("val_accuracy" in r for r in history.epochs):
            fig.add_scatter(x=history["epoch"], y=history["val_accuracy"], name=mode, mode="lines+markers",
                            legendgroup=mode, line=dict(color=color, dash=dashes[i % len(dashes)]), showlegend=False,
                            row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    return fig.update_layout(title=title, height=340, margin=dict(l=40, r=20, t=70, b=40))


def confusions_figure(results: dict[str, dict], labels: list[str]) -> go.Figure:
    """Row-normalized confusion matrices (rows true, columns predicted), one per mode, counts on hover."""
    modes = list(results)
    fig = make_subplots(rows=1, cols=len(modes), subplot_titles=modes, horizontal_spacing=0.08)
    for j, mode in enumerate(modes, 1):
        counts = np.asarray(results[mode]["confusion"], dtype=float)
        rows = counts.sum(1, keepdims=True)
        z = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        fig.add_trace(go.Heatmap(z=z, x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues", showscale=j == 1,
                                 text=np.round(z, 2), texttemplate="%{text}", customdata=counts,
                                 hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata:.0f}<extra></extra>"),
                      row=1, col=j)
        fig.update_yaxes(autorange="reversed", row=1, col=j)
        fig.update_xaxes(title_text="predicted", row=1, col=j)
    fig.update_yaxes(title_text="true", row=1, col=1)
    return fig.update_layout(title="confusion matrices (share of each true class)", height=360,
                             margin=dict(l=60, r=20, t=70, b=50))


def probabilities_figure(texts: list[str], predictions: dict[str, list[dict]], width: int = 40) -> go.Figure:
    """Stacked class probabilities for each typed sentence, one row of bars per mode."""
    modes = list(predictions)
    labels = list(predictions[modes[0]][0]["probs"])
    short = [t if len(t) <= width else t[:width - 1] + "…" for t in texts]
    fig = make_subplots(rows=1, cols=len(modes), subplot_titles=modes, shared_yaxes=True)
    for j, mode in enumerate(modes, 1):
        for k, label in enumerate(labels):
            fig.add_bar(y=short, x=[p["probs"][label] for p in predictions[mode]], orientation="h", name=label,
                        legendgroup=label, showlegend=j == 1, marker_color=f"hsl({(k * 137) % 360},55%,55%)",
                        row=1, col=j)
        fig.update_xaxes(range=[0, 1], tickformat=".0%", row=1, col=j)
    fig.update_yaxes(autorange="reversed")
    return fig.update_layout(barmode="stack", title="class probabilities per sentence", height=120 + 40 * len(texts),
                             margin=dict(l=40, r=20, t=70, b=40))
