r"""Classifier results: confusion matrix, per-class accuracy, image grids (e.g. the misclassified ones), bars.

Confusion matrix :math:`M_{ij}` = number of examples of true class :math:`i` predicted as :math:`j`; per-class
accuracy (recall) is :math:`M_{ii}/\sum_j M_{ij}` and overall accuracy :math:`\sum_i M_{ii}/\sum_{ij} M_{ij}`.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..metrics import confusion_matrix, per_class_accuracy
from .style import style

__all__ = ["confusion_figure", "per_class_figure", "image_grid",
           "misclassified_figure", "bar_figure"]


def confusion_figure(cm, classes, normalize: bool = True, title: str = "confusion matrix") -> go.Figure:
    """Heatmap of ``cm`` (rows: true class, columns: predicted); ``normalize`` shows row shares, counts on hover."""
    counts = np.asarray(torch.as_tensor(cm))
    rows = counts.sum(1, keepdims=True)
    z = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0) if normalize else counts
    fig = go.Figure(go.Heatmap(z=z, x=list(classes), y=list(classes), colorscale="Blues", customdata=counts,
                               text=np.round(z, 2) if normalize else counts, texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} images<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="true class")
    fig.update_xaxes(title_text="predicted class", side="bottom")
    fig.update_layout(title=title, height=540, margin=dict(l=90, r=20, t=60, b=80))
    fig.update_yaxes(scaleanchor="x", constrain="domain")     # square cells at any width
    return style(fig)


def per_class_figure(acc, classes, overall: float | None = None, title: str = "accuracy per class") -> go.Figure:
    """Bar per class, its accuracy written under its name (never where the overall line could cross it); the
    overall accuracy, if given, as a dashed line behind the bars (and in the title)."""
    acc = [float(a) for a in acc]
    fig = go.Figure(go.Bar(x=[f"{c}<br>{a:.1%}" for c, a in zip(classes, acc)], y=acc, name="accuracy",
                           showlegend=False, hovertemplate="%{x}<extra></extra>"))
    if overall is not None:
        fig.add_hline(y=overall, line_dash="dash", layer="below")
        title = f"{title} (dashed: overall {overall:.1%})"
    fig.update_yaxes(title_text="accuracy")
    fig.update_xaxes(title_text="class (its accuracy)")
    return style(fig.update_layout(title=title, yaxis=dict(range=[0, 1.08], tickformat=".0%"), height=400))


def _png_uri(image: np.ndarray) -> str:
    """An H×W×3 uint8 image as a PNG data URI (a few hundred bytes instead of a 3072-number list)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_grid(images, titles=(), cols: int = 8, title: str = "", size: int = 100) -> go.Figure:
    """uint8 images (N×3×H×W or N×H×W×3) in a grid, one caption each."""
    images = np.asarray(torch.as_tensor(images))
    if images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
        raise ValueError(f"images must be N×3×H×W or N×H×W×3, got shape {images.shape}")
    if images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    if len(images) == 0:
        fig = go.Figure()
        fig.add_annotation(text="no images to show", showarrow=False, font=dict(size=16))
        return fig.update_layout(title=title, height=150, xaxis_visible=False, yaxis_visible=False)
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    captions = [str(t) for t in titles] + [""] * (len(images) - len(titles))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=captions, horizontal_spacing=0.01,
                        vertical_spacing=0.25 / rows)
    for i, image in enumerate(images):
        fig.add_trace(go.Image(source=_png_uri(np.ascontiguousarray(image))), row=i // cols + 1, col=i % cols + 1)
    fig.update_annotations(font_size=10)
    fig.update_xaxes(visible=False).update_yaxes(visible=False)
    # no width: the grid follows the cell (image traces keep their aspect ratio); the height fits ``size`` per row
    return style(fig, title=title, height=size * rows + 80, margin=dict(l=10, r=10, t=70, b=10))


def misclassified_figure(images, pred, target, classes, n: int = 24, cols: int = 8) -> go.Figure:
    """The first ``n`` images whose prediction is wrong, captioned ``predicted / true``."""
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    wrong = (pred != target).nonzero().flatten()[:n]
    titles = [f"{classes[int(pred[i])]} / {classes[int(target[i])]}" for i in wrong]
    return image_grid(torch.as_tensor(images)[wrong], titles, cols,
                      title=f"misclassified (predicted / true): {len(wrong)} of {int((pred != target).sum())}")


def bar_figure(values: dict, title: str = "", yaxis_title: str = "") -> go.Figure:
    """One bar per key, its value printed on it."""
    fig = go.Figure(go.Bar(x=list(values), y=list(values.values()), text=[f"{v:,.0f}" for v in values.values()],
                           name=yaxis_title or "value", showlegend=False))
    return style(fig.update_layout(title=title, yaxis_title=yaxis_title, height=360))
