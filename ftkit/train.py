"""The training loop: ``fit`` / ``evaluate`` / ``predict`` and the events callbacks hook into.

One screen to read. A batch is ``(inputs, targets)`` or a dict (Hugging Face style, ``model(**batch)``;
with ``loss=None`` the model's own ``outputs.loss`` is used). Callbacks see one shared :class:`TrainState`.

Events, in order: ``on_fit_start`` → per epoch ``on_epoch_start`` → per batch ``on_batch_start`` /
``on_batch_end`` → ``on_validation_end`` (after the val pass, if any) → ``on_epoch_end`` → ``on_fit_end``
(always runs, also after Ctrl-C, ``state.stop`` or a non-finite loss).

This module imports nothing from ipywidgets or plotly: widgets and plots are callbacks.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .losses import make_loss
from .metrics import MetricTracker
from .optim import make_optimizer, make_scheduler
from .utils import get_device

__all__ = ["fit", "evaluate", "predict", "History", "TrainState", "Callback", "NonFiniteLossWarning",
           "save_checkpoint", "load_checkpoint"]


class NonFiniteLossWarning(RuntimeWarning):
    """Training stopped because the loss became NaN or infinite."""


class Callback:
    """Base class: override the events you need; each receives the shared :class:`TrainState`."""

    def on_fit_start(self, state): ...
    def on_epoch_start(self, state): ...
    def on_batch_start(self, state): ...
    def on_batch_end(self, state): ...
    def on_validation_end(self, state): ...
    def on_epoch_end(self, state): ...
    def on_fit_end(self, state): ...


class History(Callback):
    """Plain data: ``steps`` (one dict per batch) and ``epochs`` (one dict per finished epoch).

    ``history["val_loss"]`` lists an epoch column; ``to_frame("step")``, ``to_json(path)``, ``to_csv(path)``.
    """

    def __init__(self, steps=None, epochs=None, stop_reason=None):
        self.steps: list[dict] = list(steps or [])
        self.epochs: list[dict] = list(epochs or [])
        self.stop_reason: str | None = stop_reason

    def on_batch_end(self, state):
        self.steps.append({"epoch": state.epoch, "step": state.step, "loss": state.loss, "lr": state.lr})

    def on_epoch_end(self, state):
        self.epochs.append(state.logs)  # the live dict: later callbacks may still add columns

    def __getitem__(self, key):
        return [row.get(key) for row in self.epochs]

    def __len__(self):
        return len(self.epochs)

    def __repr__(self):
        last = {k: round(v, 4) if isinstance(v, float) else v for k, v in (self.epochs[-1] if self.epochs else {}).items()}
        return f"History({len(self.epochs)} epochs, {len(self.steps)} steps, last={last})"

    def to_frame(self, which: str = "epoch"):
        import pandas as pd
        return pd.DataFrame(self.steps if which == "step" else self.epochs)

    def to_dict(self):
        return {"steps": self.steps, "epochs": self.epochs, "stop_reason": self.stop_reason}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        if path is not None:
            _atomic_write_bytes(path, text.encode())
        return text

    def to_csv(self, path, which: str = "epoch"):
        self.to_frame(which).to_csv(path, index=False)

    @classmethod
    def from_dict(cls, data):
        return cls(data.get("steps"), data.get("epochs"), data.get("stop_reason"))

    @classmethod
    def from_json(cls, path_or_text):
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            with open(path_or_text) as f:
                text = f.read()
        return cls.from_dict(json.loads(text))


@dataclass
class TrainState:
    """What callbacks read and write. Set ``stop = True`` to end training after the current batch."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Any
    device: torch.device
    epochs: int
    history: History
    epoch: int = 0                  # 1-based number of the running epoch
    step: int = 0                   # optimizer steps taken so far (global)
    batch_idx: int = 0              # batch index within the epoch
    batches_per_epoch: int | None = None
    loss: float = float("nan")      # last batch loss
    lr: float = float("nan")        # lr used by the last step (param group 0)
    logs: dict = field(default_factory=dict)   # the epoch row being built (train_*, val_*, lr, time)
    stop: bool = False
    stop_reason: str | None = None
    lr_override: bool = False       # set by a manual LR change: the scheduler then stops driving the LR
    extra: dict = field(default_factory=dict)  # free room for callbacks


class _Events:
    """Per-event lists of bound methods, built once: no per-batch ``getattr`` on every callback."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)
        for event in ("on_fit_start", "on_epoch_start", "on_batch_start", "on_batch_end", "on_validation_end",
                      "on_epoch_end", "on_fit_end"):
            base = getattr(Callback, event)
            hooks = [getattr(cb, event) for cb in self.callbacks
                     if getattr(type(cb), event, base) is not base and callable(getattr(cb, event, None))]
            setattr(self, event, self._fire(hooks))

    @staticmethod
    def _fire(hooks):
        def fire(state):
            for hook in hooks:
                hook(state)
        return fire


# --------------------------------------------------------------------------- batches
def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict) or hasattr(batch, "keys"):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _forward(model, batch, loss_fn):
    """Returns (outputs, targets, loss). Dict batches are HF style; tuples are (inputs, targets)."""
    if isinstance(batch, dict):
        out = model(**batch)
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
    inputs, targets = batch[0], batch[1]
    if loss_fn is None:
        raise ValueError("loss=None works only for dict batches whose model returns .loss; give a loss, "
                         "e.g. loss='cross_entropy'")
    out = model(inputs)
    return out, targets, _loss(loss_fn, out, targets)


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


def _loss(loss_fn, outputs, targets):
    try:
        return loss_fn(outputs, targets)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        def desc(t):
            return f"shape {tuple(t.shape)}, {str(t.dtype).replace('torch.', '')}" if hasattr(t, "shape") else repr(t)
        raise type(e)(f"the loss could not be computed from the model output ({desc(outputs)}) and the targets "
                      f"({desc(targets)}): {e}") from e


def _autocast(device, amp):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


# --------------------------------------------------------------------------- checkpoints
def _atomic_write_bytes(path, data: bytes):
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one


def save_checkpoint(path, state: TrainState, **extra):
    """Write model + optimizer + scheduler + RNG + history atomically (temp file, fsync, rename)."""
    payload = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict() if state.scheduler is not None else None,
        "epoch": state.epoch, "step": state.step, "lr_override": state.lr_override,
        "history": state.history.to_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        **extra,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, map_location="cpu"):
    """Load a checkpoint dict; with objects given, restore their state in place."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if model is not None:
        model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt


def _restore_rng(rng):
    torch.set_rng_state(rng["torch"].cpu())  # map_location may have moved the states to the GPU
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


# --------------------------------------------------------------------------- fit
def fit(model: nn.Module, train_loader, loss, optimizer, epochs: int = 1, *, val_loader=None, scheduler=None,
        callbacks=(), metrics=(), device="auto", amp: bool = False, grad_clip: float | None = None,
        grad_accum: int = 1, resume_from=None, progress: bool = True) -> History:
    """Train ``model`` and return its :class:`History` (also kept when training stops early).

    ``loss``: a name for :func:`make_loss`, a callable, or ``None`` (HF models' own loss).
    ``optimizer``: a ``torch.optim.Optimizer`` or a name (default options of :func:`make_optimizer`).
    ``scheduler``: a scheduler object or a name for :func:`make_scheduler` (``total_steps`` filled in);
    stepped after every optimizer step. ``amp``: autocast (fp16 + GradScaler on CUDA, bf16 on CPU).
    ``grad_clip``: max global gradient norm. ``grad_accum``: batches per optimizer step.
    ``resume_from``: a checkpoint path; training continues after its epoch up to ``epochs``.
    """
    from .callbacks import ProgressBar  # callbacks imports train; import here to keep the module graph simple

    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if int(grad_accum) < 1:
        raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
    if grad_clip is not None and not (grad_clip > 0 and math.isfinite(grad_clip)):
        raise ValueError(f"grad_clip must be a finite number > 0 or None, got {grad_clip}")
    n_batches = len(train_loader) if hasattr(train_loader, "__len__") else None
    if n_batches == 0:
        raise ValueError("train_loader is empty (0 batches): check the dataset size, batch_size and drop_last")
    device = get_device(device)
    model.to(device)
    loss_fn = make_loss(loss) if loss is not None else None
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)  # class weights follow the model
    optimizer = make_optimizer(optimizer, model)
    if isinstance(scheduler, str):
        if n_batches is None:
            raise ValueError("a scheduler given by name needs a train_loader with len(); build it yourself")
        scheduler = make_scheduler(scheduler, optimizer, total_steps=math.ceil(n_batches / grad_accum) * epochs)
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None

    history = History()
    state = TrainState(model=model, optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn, device=device,
                       epochs=int(epochs), history=history, batches_per_epoch=n_batches)
    start_epoch = 1
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, model, optimizer, scheduler, map_location=device)
        history.steps, history.epochs = ckpt["history"]["steps"], ckpt["history"]["epochs"]
        state.step, state.lr_override = ckpt["step"], ckpt.get("lr_override", False)
        start_epoch = ckpt["epoch"] + 1
        _restore_rng(ckpt["rng"])

    events = _Events([history, *([ProgressBar()] if progress else []), *callbacks])
    train_metrics = MetricTracker(metrics)
    events.on_fit_start(state)
    try:
        for epoch in range(start_epoch, state.epochs + 1):
            state.epoch, state.logs = epoch, {"epoch": epoch}
            t0 = time.perf_counter()
            model.train()
            train_metrics.reset()
            loss_sum, n_seen = 0.0, 0
            events.on_epoch_start(state)
            optimizer.zero_grad(set_to_none=True)
            for i, batch in enumerate(train_loader):
                state.batch_idx = i
                events.on_batch_start(state)
                if state.stop:
                    break
                batch = _to_device(batch, device)
                with _autocast(device, amp):
                    outputs, targets, batch_loss = _forward(model, batch, loss_fn)
                scaled = batch_loss / grad_accum if grad_accum > 1 else batch_loss
                (scaler.scale(scaled) if scaler else scaled).backward()
                state.loss = batch_loss.item()
                if not math.isfinite(state.loss):
                    optimizer.zero_grad(set_to_none=True)  # never apply an update computed from it
                    state.stop = True
                    state.stop_reason = (f"non-finite loss ({state.loss}) at epoch {epoch}, step {state.step + 1} "
                                         f"(batch {i}); stopped before its update, so the model keeps the last "
                                         "finite-loss weights. Lower lr, set grad_clip, or check the inputs.")
                    warnings.warn(state.stop_reason, NonFiniteLossWarning, stacklevel=2)
                    break
                if (i + 1) % grad_accum == 0 or i + 1 == n_batches:
                    if grad_clip is not None:
                        if scaler:
                            scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    state.lr = optimizer.param_groups[0]["lr"]
                    if scaler:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if scheduler is not None and not state.lr_override:
                        scheduler.step()
                    state.step += 1
                n = targets.shape[0] if hasattr(targets, "shape") and targets.dim() else 1
                loss_sum, n_seen = loss_sum + state.loss * n, n_seen + n
                if train_metrics.metrics:
                    train_metrics.update(outputs.detach(), targets)
                events.on_batch_end(state)
                if state.stop:
                    break
            if n_seen == 0 and not state.stop:
                raise ValueError("train_loader yielded no batches: check the dataset size, batch_size and drop_last")
            if state.stop and (state.stop_reason or "").startswith("non-finite"):
                break
            if state.stop and i + 1 < (n_batches or i + 1):
                break  # a partial epoch gets step rows only, no epoch row
            state.logs.update(train_loss=loss_sum / max(n_seen, 1), **train_metrics.compute("train_"))
            if val_loader is not None:
                state.logs.update(evaluate(model, val_loader, loss_fn, metrics, device=device, amp=amp,
                                           prefix="val_"))
                events.on_validation_end(state)
            state.logs.update(lr=optimizer.param_groups[0]["lr"], time=time.perf_counter() - t0)
            events.on_epoch_end(state)
            if state.stop:
                break
    except KeyboardInterrupt:
        state.stop = True
        state.stop_reason = (f"interrupted at epoch {state.epoch}, step {state.step}; "
                             "the model and its history are kept")
        print(f"ftkit: {state.stop_reason}")
    finally:
        history.stop_reason = state.stop_reason
    events.on_fit_end(state)
    return history


# --------------------------------------------------------------------------- evaluate / predict
@torch.no_grad()
def evaluate(model: nn.Module, loader, loss=None, metrics=(), *, device="auto", amp: bool = False,
             prefix: str = "") -> dict[str, float]:
    """Mean loss (weighted by batch size) and metrics over ``loader``, in eval mode; restores the mode."""
    device = get_device(device)
    loss_fn = make_loss(loss) if isinstance(loss, str) else loss
    was_training = model.training
    model.eval()
    tracker = MetricTracker(metrics)
    loss_sum, n_seen = torch.zeros((), device=device), 0
    try:
        for batch in loader:
            batch = _to_device(batch, device)
            with _autocast(device, amp):
                outputs, targets, batch_loss = _forward(model, batch, loss_fn)
            n = targets.shape[0] if hasattr(targets, "shape") and targets.dim() else 1
            loss_sum, n_seen = loss_sum + batch_loss.float() * n, n_seen + n
            if tracker.metrics:
                tracker.update(outputs, targets)
    finally:
        model.train(was_training)
    if n_seen == 0:
        raise ValueError("evaluate got an empty loader (0 batches)")
    return {f"{prefix}loss": float(loss_sum) / n_seen, **tracker.compute(prefix)}


@torch.no_grad()
def predict(model: nn.Module, data, *, device="auto", batch_size: int = 256) -> torch.Tensor:
    """Model outputs (logits) on CPU for a tensor or a loader of ``(inputs, …)`` / dict batches."""
    device = get_device(device)
    was_training = model.training
    model.eval()
    if isinstance(data, torch.Tensor):
        data = [(chunk,) for chunk in data.split(batch_size)]
    outs = []
    try:
        for batch in data:
            batch = _to_device(batch, device)
            if isinstance(batch, dict):
                out = _logits(model(**{k: v for k, v in batch.items() if k != "labels"}))
            else:
                out = model(batch[0] if isinstance(batch, (list, tuple)) else batch)
            outs.append(out.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)
