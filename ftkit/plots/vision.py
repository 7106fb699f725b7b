"""Figures of notebook 07: plain vs residual training curves, per-layer gradient norms, transfer modes, resolution."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["depth_curves_figure", "gradient_norms_figure", "transfer_figure", "resolution_figure"]

_DASH = {False: "dash", True: "solid"}


def _color(i: int) -> str:
    return f"hsl({(i * 137 + 200) % 360},65%,42%)"


def depth_curves_figure(runs: dict[str, dict], title: str = "plain vs residual, same budget") -> go.Figure:
    """``runs[label] = {"history": History, "residual": bool, "depth": int}``: training loss and validation
    accuracy per epoch; plain nets dashed, residual solid, one colour per depth."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss (epoch mean)", "validation accuracy"))
    depths = sorted({r["depth"] for r in runs.values()})
    for label, run in runs.items():
        h, color = run["history"], _color(depths.index(run["depth"]))
        line = dict(color=color, dash=_DASH[bool(run["residual"])])
        fig.add_scatter(x=h["epoch"], y=h["train_loss"], name=label, line=line, legendgroup=label, row=1, col=1)
        if h.epochs and "val_accuracy" in h.epochs[-1]:
            fig.add_scatter(x=h["epoch"], y=h["val_accuracy"], name=label, line=line, legendgroup=label,
                            showlegend=False, row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    return fig.update_layout(title=title, height=360, margin=dict(l=40, r=20, t=70, b=40))


def gradient_norms_figure(norms: dict[str, list[dict]], title: str = "per-layer gradient norm at initialization",
                          key: str = "grad_norm") -> go.Figure:
    """``norms[label]``: rows of :func:`~ftkit.vision.resnets.gradient_norms`; ‖∂L/∂W‖ per layer in order,
    on a log axis (a factor of 10 is the same height anywhere). Labels containing "plain" are dashed."""
    fig = go.Figure()
    for i, (label, rows) in enumerate(norms.items()):
        fig.add_scatter(x=[r["layer"] for r in rows], y=[r[key] for r in rows], name=label, mode="lines+markers",
                        line=dict(color=_color(i), dash="dash" if "plain" in label else "solid"),
                        text=[r["name"] for r in rows], hovertemplate="%{text}<br>%{y:.3g}")
    fig.update_yaxes(type="log", title_text="‖∂L/∂W‖" if key == "grad_norm" else key)
    fig.update_xaxes(title_text="layer (input → output)")
    return fig.update_layout(title=title, height=380, margin=dict(l=50, r=20, t=60, b=40))


def transfer_figure(histories: dict, results: dict[str, dict], title: str = "transfer: same data, same budget"):
    """Validation accuracy per epoch per mode, then bars of test accuracy, training time and trainable parameters
    (log scale). ``results[mode]`` holds ``accuracy``, ``train_time_s``, ``trainable_params``."""
    fig = make_subplots(rows=1, cols=4, subplot_titles=("validation accuracy", "test accuracy", "training time (s)",
                                                        "trainable parameters"))
    modes = list(results)
    for i, (mode, h) in enumerate(histories.items()):
        if h.epochs and "val_accuracy" in h.epochs[-1]:
            fig.add_scatter(x=h["epoch"], y=h["val_accuracy"], name=mode, mode="lines+markers",
                            line=dict(color=_color(i)), row=1, col=1)
    colors = [_color(i) for i in range(len(modes))]
    for col, key, fmt in ((2, "accuracy", "{:.3f}"), (3, "train_time_s", "{:.0f}"), (4, "trainable_params", "{:,}")):
        fig.add_bar(x=modes, y=[results[m][key] for m in modes], marker_color=colors, showlegend=False,
                    text=[fmt.format(results[m][key]) for m in modes], row=1, col=col)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=4)
    return fig.update_layout(title=title, height=360, margin=dict(l=40, r=20, t=70, b=40))


def resolution_figure(results: dict[int, dict], title: str = "what input resolution costs and buys") -> go.Figure:
    """``results[pixels] = {"accuracy": …, "train_time_s": …}``: accuracy and time side by side per resolution."""
    xs = [f"{r} px" for r in results]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy", "training time (s)"))
    fig.add_bar(x=xs, y=[v["accuracy"] for v in results.values()], text=[f"{v['accuracy']:.3f}" for v in
                results.values()], showlegend=False, row=1, col=1)
    fig.add_bar(x=xs, y=[v["train_time_s"] for v in results.values()], text=[f"{v['train_time_s']:.0f}" for v in
                results.values()], showlegend=False, row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    return fig.update_layout(title=title, height=320, margin=dict(l=40, r=20, t=70, b=40))
