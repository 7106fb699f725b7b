"""ipywidgets controls wired to a running training (a dashboard with LR slider and Stop button)."""
from __future__ import annotations

from .callbacks import LivePlot
from .train import fit

__all__ = ["fit_live"]


def fit_live(model, train_loader, loss, optimizer, epochs: int = 1, *, dashboard: bool = False, callbacks=(),
             **fit_kwargs):
    """``fit`` with a live view. ``dashboard=False``: a LivePlot; ``True``: the interactive dashboard."""
    if not dashboard:
        return fit(model, train_loader, loss, optimizer, epochs, callbacks=[LivePlot(), *callbacks], **fit_kwargs)
    raise NotImplementedError("the training dashboard is being built")
