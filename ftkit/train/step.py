"""One batch through a model: move it to the device, forward, loss, and the target count — and ``evaluate`` /
``predict``, which run the same forward without training.

A batch is ``(inputs, targets)`` or a dict (Hugging Face style, ``model(**batch)``; with ``loss=None`` the model's
own ``outputs.loss``). A model output with a ``.logits`` attribute (a Hugging Face ``ModelOutput``) is read through
``.logits`` — a convenience: the loss is computed on the logits, never on the output object.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import contextlib
from collections.abc import Mapping

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch import nn

from ..core import IGNORE, describe, eval_mode
from ..losses import make_loss
from ..metrics import MetricTracker
from ..utils import check_int, get_device

__all__ = ["send_to_device", "AMP_CHOICES", "amp_dtype", "autocast", "forward", "count_targets", "evaluate", "evaluate_sums",
           "predict"]
# send_to_device (Accelerate) moves a batch: tensors, tuples, lists and mappings of them (a Hugging Face
# BatchEncoding stays one: it is a Mapping, which is what the code below checks for)


AMP_CHOICES = (False, True, "fp16", "bf16")


def amp_dtype(device, amp):
    """The autocast dtype of ``amp`` on ``device`` (None: off). ``True``: fp16 on CUDA, bf16 elsewhere; ``"fp16"`` /
    ``"bf16"``: that one, refused where the device cannot compute in it."""
    if amp is None or amp is False:
        return None
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of False, True, 'fp16', 'bf16', got {amp!r}")
    device = torch.device(device)
    if amp == "bf16" or (amp is True and device.type != "cuda"):
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("amp='bf16' needs a GPU with bfloat16 (NVIDIA Ampere or newer); this one has none: "
                             "use amp='fp16' (or amp=True)")
        return torch.bfloat16
    if device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA GPU (autocast on {device.type} computes in bfloat16): use "
                         "amp='bf16' or amp=True")
    return torch.float16


def autocast(device, amp):
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


BATCHNORM_ONE = ("BatchNorm in training mode got a batch of 1 sample ({error}): it needs at least 2 to compute "
                 "a batch mean and variance. A loader's last batch holds 1 sample when the number of samples leaves "
                 "a remainder of 1 (N % batch_size == 1): pass drop_last=True to the DataLoader or choose another "
                 "batch_size")


def _run(model, *args, **kwargs):
    """``model(...)``, with torch's BatchNorm complaint about a one-sample batch turned into what to change."""
    try:
        return model(*args, **kwargs)
    except ValueError as e:
        if "Expected more than 1 value per channel when training" in str(e):
            raise ValueError(BATCHNORM_ONE.format(error=str(e).splitlines()[0])) from e
        raise


def forward(model, batch, loss_fn):
    """Returns (outputs, targets, loss). Dict batches are HF style; tuples are (inputs, targets)."""
    if isinstance(batch, Mapping):
        out = _run(model, **batch)
        targets = batch.get("labels")
        if loss_fn is None:
            if getattr(out, "loss", None) is None:
                raise ValueError("loss=None needs a model that returns outputs.loss (pass labels in the batch) "
                                 "or give a loss, e.g. loss='cross_entropy'")
            return _logits(out), targets, out.loss
        logits = _logits(out)
        return logits, targets, _loss(loss_fn, logits.flatten(0, -2) if logits.dim() > 2 else logits,
                                      targets.flatten() if logits.dim() > 2 else targets)
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise ValueError(f"a batch must be (inputs, targets) or a dict; got {type(batch).__name__}"
                         + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else ""))
    if len(batch) > 2:
        raise ValueError(f"a batch must be (inputs, targets) or a dict; got a {type(batch).__name__} of "
                         f"{len(batch)} elements ({', '.join(describe(b) for b in batch)}), and fit cannot tell "
                         "which one is the target. Yield (inputs, targets) — e.g. ((x, mask), y) — or dict "
                         "batches with a 'labels' key")
    inputs, targets = batch
    if loss_fn is None:
        raise ValueError("loss=None works only for dict batches whose model returns .loss; give a loss, "
                         "e.g. loss='cross_entropy'")
    out = _logits(_run(model, inputs))
    return out, targets, _loss(loss_fn, out, targets)


def _logits(out):
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, torch.Tensor):
        return out
    kind = f"a {type(out).__name__}" + (f" of {len(out)}" if isinstance(out, (tuple, list, dict)) else "")
    raise TypeError(f"the model returned {kind}, not a tensor of outputs; fit needs the logits: wrap the model, "
                    "e.g. nn.Sequential(model, PickFirst()) or a forward that returns out[0] / out['logits']")


def _loss(loss_fn, outputs, targets):
    try:
        return loss_fn(outputs, targets)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise type(e)(f"the loss could not be computed from the model output ({describe(outputs)}) and the "
                      f"targets ({describe(targets)}): {e}") from e


def count_targets(targets) -> torch.Tensor | int:
    """Targets that count toward the mean: labels other than -100 (integer targets), else the batch size."""
    if not isinstance(targets, torch.Tensor) or targets.dim() == 0:
        return 1
    if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        return (targets != IGNORE).sum()
    return targets.shape[0]



@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any], loss: Any = None, metrics: Sequence[Any] = (), *,
             device: str | torch.device = "auto", amp: bool = False,
             prefix: str = "") -> dict[str, float]:
    """Mean loss and metrics over ``loader``, in eval mode; restores the mode. Batch losses are weighted by the
    targets they count (labels other than -100), so padding-only batches do not turn the mean into NaN."""
    device = get_device(device)
    loss_fn = make_loss(loss) if isinstance(loss, str) else loss
    metrics = [metrics] if isinstance(metrics, str) or callable(metrics) else list(metrics or ())
    tracker = MetricTracker(metrics)
    loss_sum, n_seen = evaluate_sums(model, loader, loss_fn, tracker, device=device, amp=amp)
    if n_seen == 0:
        raise ValueError("evaluate got an empty loader (0 batches, or every label -100)")
    return {f"{prefix}loss": float(loss_sum) / n_seen, **tracker.compute(prefix)}


@torch.no_grad()
def evaluate_sums(model, loader, loss_fn, tracker, *, device, amp=False):
    """(summed loss, target count) over ``loader``, metrics into ``tracker``: what evaluate divides (and what
    several processes add up first)."""
    loss_sum, n_seen = torch.zeros((), device=device), 0.0
    with eval_mode(model):
        for batch in loader:
            batch = send_to_device(batch, device, non_blocking=True)
            with autocast(device, amp):
                outputs, targets, batch_loss = forward(model, batch, loss_fn)
            n = count_targets(targets)
            if float(n) == 0:
                continue
            loss_sum, n_seen = loss_sum + batch_loss.float() * n, n_seen + float(n)
            if tracker.metrics:
                tracker.update(outputs, targets)
    return loss_sum, n_seen


@torch.no_grad()
def predict(model: nn.Module, data: Any, *, device: str | torch.device = "auto", batch_size: int = 256) -> torch.Tensor:
    """Model outputs (logits) on CPU for a tensor, a list of same-shaped samples, or a loader of ``(inputs, …)`` /
    dict batches."""
    device = get_device(device)
    batch_size = check_int("batch_size", batch_size, meaning=" (samples per forward pass)")
    if isinstance(data, np.ndarray):  # a NumPy array of samples: float64 would not meet float32 weights
        if data.dtype == object:
            raise TypeError("predict got a NumPy array of Python objects; pass a numeric array or a tensor")
        data = torch.from_numpy(data)
        if data.is_floating_point():
            data = data.to(torch.get_default_dtype())
    if isinstance(data, (list, tuple)) and data and all(isinstance(t, torch.Tensor) for t in data):
        shapes = {tuple(t.shape) for t in data}
        if len(shapes) > 1:
            raise ValueError(f"predict got a list of tensors of different shapes {sorted(shapes)[:3]}; pass one "
                             "stacked tensor of samples or a DataLoader of batches")
        data = torch.stack(list(data))
    if isinstance(data, torch.Tensor):
        data = [(chunk,) for chunk in data.split(batch_size)]
    outs = []
    with eval_mode(model):
        for batch in data:
            batch = send_to_device(batch, device, non_blocking=True)
            if isinstance(batch, Mapping):
                out = _logits(model(**{k: v for k, v in batch.items() if k != "labels"}))
            else:
                out = _logits(model(batch[0] if isinstance(batch, (list, tuple)) else batch))
            outs.append(out.float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)
