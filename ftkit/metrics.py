"""Metrics for ``fit``/``evaluate``: plain callables ``metric(outputs, targets)``.

A metric returns either a number (averaged over batches, weighted by batch size) or a pair
``(total, count)`` that is summed over batches and divided at the end (exact with padding/ignored labels).
"""
from __future__ import annotations

import math
import re

import torch

from .utils import choose


def accuracy(outputs: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100):
    """Share of argmax predictions equal to the label; labels equal to ``ignore_index`` are skipped.

    Class scores sit on the last axis for sequences ((B, T, C) with (B, T) labels, as HF token classifiers
    return them) and on axis 1 for images ((N, C, H, W) with (N, H, W) labels). One-hot or soft (probability)
    targets of the outputs' shape are compared by their argmax; one logit per example ((N,) or (N, 1)) is a
    binary prediction ``logit > 0`` against 0/1 labels."""
    if outputs.dim() == 2 and outputs.shape[1] == 1 and targets.shape in ((outputs.shape[0],), outputs.shape):
        outputs, targets = outputs[:, 0], targets.reshape(-1)       # (N, 1) logits: binary
    if targets.shape == outputs.shape and targets.is_floating_point() and outputs.dim() >= 2:
        axis = -1 if outputs.dim() == 2 else 1                     # one-hot / soft labels
        return (outputs.argmax(axis) == targets.argmax(axis)).sum(), torch.tensor(targets.numel() // targets.shape[axis])
    if outputs.dim() == targets.dim() + 1:
        pred = outputs.argmax(-1) if outputs.shape[:-1] == targets.shape else outputs.argmax(1)
    elif outputs.shape == targets.shape:  # binary: one logit per example
        if targets.is_floating_point() and ((targets != 0) & (targets != 1)).any():
            raise ValueError("accuracy with one logit per example needs 0/1 targets; got other values "
                             "(for regression use a loss, not accuracy)")
        pred = (outputs > 0).long()
        targets = targets.long()
    else:
        raise ValueError(f"accuracy cannot pair outputs of shape {tuple(outputs.shape)} with targets of shape "
                         f"{tuple(targets.shape)}: give class scores (N, C) with labels (N,) or one-hot (N, C)")
    keep = targets != ignore_index
    return (pred == targets)[keep].sum(), keep.sum()


def top_k(k: int, ignore_index: int = -100):
    """Top-k accuracy: the label is among the k largest outputs; labels equal to ``ignore_index`` are skipped
    (as in :func:`accuracy`)."""
    def metric(outputs, targets):
        if outputs.dim() < 2 or outputs.shape[1] < k:
            raise ValueError(f"top{k} accuracy needs at least {k} classes, but the model outputs "
                             f"{outputs.shape[1] if outputs.dim() > 1 else 1}; use 'accuracy' or a smaller k")
        keep = targets != ignore_index
        topk = outputs.topk(k, dim=1).indices
        return ((topk == targets.unsqueeze(1)).any(1) & keep).sum(), keep.sum()
    metric.__name__ = f"top{k}"
    return metric


METRICS = {"accuracy": accuracy, "acc": accuracy, "top5": top_k(5), "top3": top_k(3)}


def is_stateful(metric) -> bool:
    """A torchmetrics-style object: ``update(outputs, targets)`` per batch, ``compute()`` once, ``reset()``."""
    return all(callable(getattr(metric, name, None)) for name in ("update", "compute", "reset"))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()   # MulticlassF1Score -> multiclass_f1_score


def make_metric(metric):
    """A name from ``METRICS``, a callable, or a torchmetrics object (``update``/``compute``/``reset``); returns
    ``(name, metric)``. A torchmetrics object is named after its class in snake case
    (``MulticlassF1Score`` → ``multiclass_f1_score``)."""
    if isinstance(metric, str):
        fn = choose("metric", metric, METRICS)
        return ("accuracy" if metric == "acc" else metric), fn
    if is_stateful(metric):
        return _snake(type(metric).__name__), metric
    if not callable(metric):
        raise TypeError(f"a metric is a name ({', '.join(METRICS)}), a callable(outputs, targets) or a torchmetrics "
                        f"object, got {metric!r}")
    return getattr(metric, "__name__", type(metric).__name__), metric


class MetricTracker:
    """Accumulates metrics over batches without a device sync per batch.

    A plain metric's ``(total, count)`` (or value × batch size) is summed and divided once. A torchmetrics object is
    used as torchmetrics intends: each tracker works on its own copy (``clone()``: the training and validation splits
    never share a state, the object given is never changed), moved to the outputs' device, ``update`` per batch,
    ``compute`` once for the split, ``reset`` at each epoch start — so the logged value is the whole split's (a macro
    F1 or an AUROC of all samples), not a mean of per-batch values."""

    def __init__(self, metrics):
        self.metrics = [make_metric(m) for m in metrics]
        self.stateful = {name: m.clone() if callable(getattr(m, "clone", None)) else m
                         for name, m in self.metrics if is_stateful(m)}
        self.reset()

    def reset(self):
        self.totals = {name: 0.0 for name, _ in self.metrics if name not in self.stateful}
        self.counts = {name: 0 for name, _ in self.metrics if name not in self.stateful}
        for m in self.stateful.values():
            m.reset()

    @torch.no_grad()
    def update(self, outputs, targets):
        for name, fn in self.metrics:
            if name in self.stateful:
                m = self.stateful[name]
                if callable(getattr(m, "to", None)) and getattr(m, "device", outputs.device) != outputs.device:
                    m.to(outputs.device)
                m.update(outputs, targets)
                continue
            value = fn(outputs, targets)
            if isinstance(value, tuple):
                self.totals[name] = self.totals[name] + value[0]
                self.counts[name] = self.counts[name] + value[1]
            else:
                n = targets.shape[0]
                self.totals[name] = self.totals[name] + value * n
                self.counts[name] = self.counts[name] + n

    def compute(self, prefix: str = "") -> dict[str, float]:
        out = {}
        for name, _ in self.metrics:
            if name in self.stateful:
                value = self.stateful[name].compute()
                if isinstance(value, torch.Tensor) and value.numel() != 1:
                    raise ValueError(f"metric {name!r} computed {value.numel()} values (shape {tuple(value.shape)}), "
                                     "not one number: a log column holds one, e.g. pass average='macro' (or wrap it "
                                     "in a metric that picks one value)")
                out[prefix + name] = float(value)
            else:
                out[prefix + name] = float(self.totals[name]) / max(float(self.counts[name]), 1.0)
        return out

    def state(self) -> dict:
        """The sums so far, as plain data (what a mid-epoch checkpoint saves): plain metrics' totals and counts,
        torchmetrics objects' states (copied: the object goes on updating its own)."""
        states = {}
        for name, m in self.stateful.items():
            states[name] = {"update_count": int(getattr(m, "_update_count", 1)),
                            **{k: (v.clone() if isinstance(v, torch.Tensor) else list(v))
                               for k, v in m.metric_state.items()}}
        return {"totals": dict(self.totals), "counts": dict(self.counts), "stateful": states}

    def merged_states(self, parts: list[dict]) -> tuple[dict | None, str | None]:
        """(one state, None): several processes' torchmetrics states (each :meth:`state`'s ``"stateful"``) merged
        as if one process had seen every batch (torchmetrics' ``merge_state``: sums added, lists of predictions
        joined), so a run resumed on any number of processes continues the whole-split value; or (None, why) for
        a metric torchmetrics cannot merge (``full_state_update=True``)."""
        merged = {}
        for name, metric in self.stateful.items():
            total = None
            for part in parts:
                one = metric.clone()
                one.reset()
                _put_state(one, part[name])
                if total is None:
                    total = one
                    continue
                try:
                    total.merge_state(one)
                except (RuntimeError, ValueError, TypeError) as e:
                    return None, f"{name} ({type(metric).__name__}): {e}"
                total._update_count += one._update_count
            merged[name] = {"update_count": int(total._update_count),
                            **{k: (v.clone() if isinstance(v, torch.Tensor) else list(v))
                               for k, v in total.metric_state.items()}}
        return merged, None

    def load_state(self, state) -> None:
        """Put back what :meth:`state` returned (or the older ``(totals, counts)`` pair)."""
        if isinstance(state, (tuple, list)):
            state = {"totals": state[0], "counts": state[1]}
        self.totals.update(state.get("totals") or {})
        self.counts.update(state.get("counts") or {})
        for name, saved in (state.get("stateful") or {}).items():
            if name in self.stateful:      # a resume without that metric leaves its saved state out
                _put_state(self.stateful[name], saved)


def _put_state(metric, saved: dict) -> None:
    """Set a torchmetrics object's state from :meth:`MetricTracker.state`'s copy of it."""
    for k, v in saved.items():
        if k == "update_count":
            metric._update_count = v       # torchmetrics warns on compute() before any update otherwise
        else:
            setattr(metric, k, v.clone() if isinstance(v, torch.Tensor) else list(v))


# --------------------------------------------------------------------------- counts and smoothing
def confusion_matrix(pred, target, num_classes: int) -> torch.Tensor:
    """``M[i, j]`` = count of ``target == i`` and ``pred == j`` (int64, ``num_classes × num_classes``)."""
    pred, target = torch.as_tensor(pred).long().flatten(), torch.as_tensor(target).long().flatten()
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} entries but target has {target.numel()}")
    return torch.bincount(target * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Diagonal over row sums: the share of each true class predicted right (NaN for a class never seen)."""
    cm = torch.as_tensor(cm, dtype=torch.float64)
    return cm.diag() / cm.sum(1)


def ema(values, beta: float = 0.9) -> list[float]:
    """Debiased exponential moving average (as in Adam / fastai): ``m_t = β m_{t-1} + (1-β) x_t``, ``m_t/(1-β^t)``.

    Non-finite values are skipped (the average carries on). ``beta=0`` returns the values unchanged."""
    if not 0 <= beta < 1:
        raise ValueError(f"smoothing beta must be in [0, 1), got {beta!r}")
    out, m, t = [], 0.0, 0
    for x in values:
        if x is not None and math.isfinite(x):
            t += 1
            m = beta * m + (1 - beta) * x
        out.append(m / (1 - beta ** t) if t else float("nan"))
    return out
