"""The training loop: ``fit`` / ``evaluate`` / ``predict``.

``fit`` is a chain of small named steps — ``run → epoch → batch → optimizer_step``, plus ``validate`` — and one
:class:`~ftkit.core.Events` object fires the callbacks; ``show_training_loop()`` prints the order. A batch is
``(inputs, targets)`` or a dict (Hugging Face style, ``model(**batch)``; with ``loss=None`` the model's own
``outputs.loss``). Stops are typed (:class:`~ftkit.core.StopTraining`), never parsed from messages.

The learning rate has one owner, :class:`~ftkit.train.callbacks.LRSchedule`: it steps the scheduler after each optimizer
step, and a manual change (``ParamControl``, the dashboard, a replay) goes through it and wins from its step on.

This module imports nothing from ipywidgets or plotly: widgets and plots are callbacks.
"""
from __future__ import annotations

import collections.abc
import contextlib
import math
import signal
import threading
import time
import warnings

import torch
from torch import nn

from ..core import Callback, Events, History, NonFiniteLoss, NonFiniteLossWarning, StopTraining, TrainState
from ..losses import make_loss
from ..metrics import MetricTracker, make_metric
from ..optim import make_optimizer, make_scheduler
from ..utils import check_int, check_number, get_device
from .callbacks import LRSchedule, ProgressBar
from .checkpoint import load_checkpoint, restore_rng, rng_state
from .distributed import distributed_for
from .replay import Replay
from .step import autocast, count_targets, evaluate, forward, to_device

__all__ = ["fit", "show_training_loop"]

LOOP = """\
fit(model, train_loader, loss, optimizer, epochs)
  on_fit_start
  for epoch:                                   _Loop.epoch
    on_epoch_start
    for batch in train_loader:                 _Loop.batch
      on_batch_start                           (ParamControl applies slider / set() values here)
      forward → loss → backward                (skipped batches: every target is -100)
      every grad_accum batches:                _Loop.optimizer_step
        clip, check grad norm is finite, optimizer.step()
        on_step_end                            (LRSchedule steps the scheduler unless a manual lr won)
      on_batch_end                             (History appends the step row)
    validate → on_validation_end               _Loop.validate
    on_epoch_end                               (History appends the epoch row; checkpoints, early stop)
  on_fit_end                                   (always; after Ctrl-C, a stop or a non-finite loss too)"""


def show_training_loop() -> None:
    """Print the order in which ``fit`` runs its steps and fires callback events."""
    print(LOOP)


# --------------------------------------------------------------------------- argument checks
def _check_args(model, train_loader, val_loader, optimizer, epochs, max_steps, grad_accum, grad_clip, metrics, callbacks):
    if epochs is None and max_steps is None:
        raise ValueError("give epochs= or max_steps=")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
        raise ValueError(f"epochs must be a whole number (an int >= 1), got {epochs!r}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if max_steps is not None:
        check_int("max_steps", max_steps)
    check_int("grad_accum", grad_accum, meaning=" (batches per optimizer step)")
    if grad_clip is not None:
        check_number("grad_clip", grad_clip, positive=True)
    metrics = [metrics] if isinstance(metrics, str) or callable(metrics) else list(metrics or ())
    callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks or ())
    for cb in callbacks:
        if not any(callable(getattr(cb, e, None)) for e in ("on_batch_end", "on_epoch_end", "on_fit_start")):
            raise TypeError(f"callbacks must be Callback objects (ftkit.train.callbacks), got {cb!r}")
    if hasattr(val_loader, "__len__") and len(val_loader) == 0:
        raise ValueError("val_loader is empty (0 batches): check the validation split's size, batch_size and "
                         "drop_last, or pass val_loader=None")
    if isinstance(train_loader, collections.abc.Iterator) and (epochs or 1) > 1:  # iter() would draw RNG
        raise ValueError(f"train_loader is a {type(train_loader).__name__}: an iterator is used up after one epoch, "
                         f"so epochs={epochs} would train on nothing after the first; pass a list, a DataLoader or "
                         "another re-iterable object")
    if isinstance(optimizer, torch.optim.Optimizer):
        ours = {id(p) for p in model.parameters()}
        theirs = [p for g in optimizer.param_groups for p in g["params"]]
        foreign = sum(id(p) not in ours for p in theirs)
        if foreign:
            raise ValueError(f"the optimizer holds {foreign} of {len(theirs)} parameters that are not this model's: it "
                             "was built for another model (re-running the model cell creates new parameters). "
                             "Re-run the cell that builds the optimizer, e.g. make_optimizer('adamw', model, lr=...)")
    return metrics, callbacks


def _epoch_log_keys(metrics, has_val: bool) -> set[str]:
    names = ["loss", *(make_metric(m)[0] for m in metrics)]
    return {"epoch", "lr", "time", *(f"train_{n}" for n in names), *(f"val_{n}" for n in names if has_val)}


# --------------------------------------------------------------------------- the loop
class _Loop:
    """One ``fit`` call: the state, the callbacks and the steps, each a few lines."""

    def __init__(self, state: TrainState, events: Events, train_loader, val_loader, metrics, *, amp, grad_clip,
                 grad_accum, dist=None, net=None):
        self.s, self.events, self.train_loader, self.val_loader = state, events, train_loader, val_loader
        self.dist, self.net = dist, net if net is not None else state.model   # several processes: ftkit.train.distributed
        self.metrics, self.amp, self.grad_clip, self.grad_accum = metrics, amp, grad_clip, grad_accum
        self.scaler = torch.amp.GradScaler("cuda") if amp and state.device.type == "cuda" else None
        self.tracker = MetricTracker(metrics)
        self.params = [p for g in state.optimizer.param_groups for p in g["params"]]
        self.finished = False      # max_steps reached: the epoch ends normally, then fit

    def run(self, start_epoch: int) -> None:
        s = self.s
        self.events.on_fit_start(s)
        with _stop_on_sigint(s):
            for epoch in range(start_epoch, s.epochs + 1):
                self.epoch(epoch)
                if self.finished:
                    break

    def epoch(self, epoch: int) -> None:
        s = self.s
        resume = s.resume if s.resume.get("epoch") == epoch and not s.resume.get("complete") else {}
        s.epoch, s.logs = epoch, {"epoch": epoch}
        t0 = time.perf_counter()
        s.model.train()
        self.tracker.reset()
        self.loss_sum, self.n_seen = resume.get("loss_sum", 0.0), resume.get("n_seen", 0)
        if resume.get("metrics"):
            self.tracker.totals, self.tracker.counts = resume["metrics"]
        self.events.on_epoch_start(s)
        s.optimizer.zero_grad(set_to_none=True)
        if self.dist is not None:
            self.dist.sync_rng()
        for i, batch in _batches(self.train_loader, s, resume):
            s.batch_idx = i
            self.batch(i, batch)
            if self.finished:
                break
        if self.n_seen == 0:
            raise ValueError("train_loader yielded no batches (or only batches whose every label is -100): check "
                             "the dataset size, batch_size and drop_last")
        s.resume = {"epoch": epoch, "complete": True}
        if self.dist is not None:
            self.dist.reduce_metrics(self.tracker)
        s.logs.update(train_loss=_mean(self.loss_sum, self.n_seen), **self.tracker.compute("train_"))
        self.validate()
        s.logs.update(lr=s.optimizer.param_groups[0]["lr"], time=time.perf_counter() - t0)
        self.events.on_epoch_end(s)
        if self.dist is not None:
            self.dist.sync_stop(s)
        _raise_if_stopped(s)

    def batch(self, i: int, batch) -> None:
        s = self.s
        self.events.on_batch_start(s)
        if self.dist is None:   # several processes: stops are acted on together, in dist.sync_batch
            _raise_if_stopped(s)
        batch = to_device(batch, s.device)
        targets = batch.get("labels") if isinstance(batch, dict) else (
            batch[1] if isinstance(batch, (list, tuple)) and len(batch) == 2 else None)
        n = count_targets(targets)
        if isinstance(n, torch.Tensor) and int(n) == 0 and self.dist is None:
            _warn_once(s, "empty", "a batch had every label -100 (nothing to learn from): it was skipped; its "
                                   "sentences may be all padding or all cut by max_length")
            return
        with autocast(s.device, self.amp):
            outputs, targets, batch_loss = forward(self.net, batch, s.loss_fn)
        grad_loss, stepping = batch_loss, (i + 1) % self.grad_accum == 0 or i + 1 == s.batches_per_epoch
        if self.dist is not None:   # global loss and count; stop and lr changes reach every rank
            synced = self.dist.sync_batch(s, batch_loss, n, outputs)
            if synced is None:
                return
            grad_loss, batch_loss, n = synced
        scaled = grad_loss / self.grad_accum if self.grad_accum > 1 else grad_loss
        scaled = self.scaler.scale(scaled) if self.scaler else scaled
        if self.dist is None:
            scaled.backward()
        else:
            self.dist.backward(self.net, scaled, stepping)
        s.loss = batch_loss.item()
        if not math.isfinite(s.loss):
            self._non_finite(f"non-finite loss ({s.loss})", i)
        if stepping:
            self.optimizer_step(i)
        self.loss_sum, self.n_seen = self.loss_sum + s.loss * float(n), self.n_seen + float(n)
        if self.tracker.metrics:
            self.tracker.update(outputs.detach(), targets)
        if (i + 1) % self.grad_accum == 0:   # a clean point to resume from: after a finished optimizer step
            s.resume = {"epoch": s.epoch, "batches": i + 1, "loss_sum": self.loss_sum, "n_seen": self.n_seen,
                        "metrics": (dict(self.tracker.totals), dict(self.tracker.counts)),
                        "epoch_rng": s.resume.get("epoch_rng")}
        self.events.on_batch_end(s)
        if self.dist is None:
            _raise_if_stopped(s)
        if s.max_steps is not None and s.step >= s.max_steps:
            self.finished = True

    def optimizer_step(self, i: int) -> None:
        s = self.s
        if self.scaler:
            self.scaler.unscale_(s.optimizer)
        if self.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        elif not self.scaler:
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())
        if not self.scaler and not math.isfinite(float(norm)):
            self._non_finite(f"non-finite gradient norm ({float(norm)}) with a finite loss ({s.loss:.4g})", i)
        s.lr = s.optimizer.param_groups[0]["lr"]
        if self.scaler:
            self.scaler.step(s.optimizer)
            self.scaler.update()
        else:
            s.optimizer.step()
        s.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        self.events.on_step_end(s)

    def validate(self) -> None:
        if self.val_loader is None:
            return
        s = self.s
        if self.dist is not None:
            s.logs.update(self.dist.evaluate(s.model, self.val_loader, s.loss_fn, self.metrics, amp=self.amp,
                                             prefix="val_"))
        else:
            s.logs.update(evaluate(s.model, self.val_loader, s.loss_fn, self.metrics, device=s.device, amp=self.amp,
                                   prefix="val_"))
        self.events.on_validation_end(s)

    def _non_finite(self, what: str, i: int):
        s = self.s
        s.optimizer.zero_grad(set_to_none=True)  # never apply an update computed from it
        reason = (f"{what} at epoch {s.epoch}, step {s.step + 1} (batch {i}); stopped before its update, so the "
                  "model keeps the last finite weights. Lower lr, set grad_clip, or check the inputs.")
        warnings.warn(reason, NonFiniteLossWarning, stacklevel=4)
        raise NonFiniteLoss(reason)


def _batches(loader, state: TrainState, resume: dict):
    """``enumerate(loader)``, continuing a resumed epoch at the batch after its last finished step: the epoch's
    RNG state is restored so the loader draws the same order, the done batches are skipped, then the RNG is
    restored to where the interrupted run stood."""
    done = resume.get("batches", 0)
    if done and resume.get("epoch_rng") is not None:
        restore_rng(resume["epoch_rng"])
    else:
        state.resume = {"epoch": state.epoch, "batches": 0, "epoch_rng": rng_state()}
    it = iter(loader)
    for _ in range(done):
        next(it, None)
    if done and resume.get("rng") is not None:
        restore_rng(resume["rng"])
    return enumerate(it, start=done)


def _mean(total, count) -> float:
    return float(total) / float(count) if float(count) else float("nan")


def _raise_if_stopped(state: TrainState) -> None:
    if state.stop:
        raise StopTraining(state.stop_reason or f"stopped at epoch {state.epoch}, step {state.step}")


def _warn_once(state: TrainState, key: str, message: str) -> None:
    if key not in state.extra.setdefault("warned", set()):
        state.extra["warned"].add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


@contextlib.contextmanager
def _stop_on_sigint(state: TrainState):
    """First Ctrl-C: stop cleanly after the running batch (a resumable point). A second: stop at once."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum, frame):
        if state.stop:
            raise KeyboardInterrupt
        state.stop = True
        state.stop_reason = f"interrupted at epoch {state.epoch}, step {state.step + 1}; the model and its history are kept"
        print("ftkit: Ctrl-C: stopping after this batch (press again to stop at once)", flush=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --------------------------------------------------------------------------- fit
def fit(model: nn.Module, train_loader, loss, optimizer, epochs: int | None = 1, *, val_loader=None, scheduler=None,
        callbacks=(), metrics=(), device="auto", amp: bool = False, grad_clip: float | None = None,
        grad_accum: int = 1, resume_from=None, progress: bool = True, max_steps: int | None = None,
        replay=None, accelerator=None) -> History:
    """Train ``model`` and return its :class:`History` (also kept when training stops early).

    ``loss``: a name for :func:`make_loss`, a callable, or ``None`` (HF models' own loss).
    A model that returns an object with ``.logits`` (a Hugging Face ``ModelOutput``) has its ``.logits`` taken
    silently before ``loss`` and the metrics see it: the convenience that hides the articles' bug
    ``criterion(outputs, labels)`` on a ``ModelOutput`` (S1-07, shown in notebooks/05; docs/seed_errors.md).
    Any other non-tensor output raises a ``TypeError``.
    ``optimizer``: a ``torch.optim.Optimizer`` or a name (default options of :func:`make_optimizer`).
    ``scheduler``: a scheduler object or a name for :func:`make_scheduler` (``total_steps`` filled in);
    stepped after every optimizer step by :class:`~ftkit.train.callbacks.LRSchedule`. ``amp``: autocast (fp16 +
    GradScaler on CUDA, bf16 on CPU). ``grad_clip``: max global gradient norm. ``grad_accum``: batches per
    optimizer step. ``max_steps``: end after that many optimizer steps (the epoch in progress is closed with its
    row and validation). ``resume_from``: a checkpoint; training continues where it stopped — after its epoch,
    or mid-epoch at the next batch — up to ``epochs`` (the total, not a number of extra epochs).
    ``replay``: a History (or its events) whose manual changes are reapplied at the same steps
    (:class:`ftkit.train.replay.Replay`).
    ``accelerator``: an ``accelerate.Accelerator`` to train data-parallel on its processes (made for you under
    ``ftkit.launch``, ``accelerate launch`` or ``torchrun``); ``batch_size`` stays the global batch (see
    :mod:`ftkit.train.distributed`).
    """
    metrics, callbacks = _check_args(model, train_loader, val_loader, optimizer, epochs, max_steps, grad_accum, grad_clip,
                                     metrics, callbacks)
    if replay is not None:
        callbacks = [Replay(replay), *callbacks]
    n_batches = len(train_loader) if hasattr(train_loader, "__len__") else None
    if n_batches == 0:
        raise ValueError("train_loader is empty (0 batches): check the dataset size, batch_size and drop_last")
    steps_per_epoch = math.ceil(n_batches / grad_accum) if n_batches else None
    if epochs is None:
        epochs = math.ceil(max_steps / steps_per_epoch) if steps_per_epoch else 10**9
    dist = distributed_for(accelerator, device)   # None on one process
    device = dist.device if dist is not None else get_device(device)
    model.to(device)
    loss_fn = make_loss(loss) if loss is not None else None
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)  # class weights follow the model
    optimizer = make_optimizer(optimizer, model)
    total_steps = min(steps_per_epoch * epochs, max_steps or 10**18) if steps_per_epoch else max_steps
    scheduler, spec = _build_scheduler(scheduler, optimizer, total_steps)

    history = History()
    state = TrainState(model=model, optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn, device=device,
                       epochs=epochs, history=history, batches_per_epoch=n_batches, max_steps=max_steps, grad_accum=grad_accum,
                       log_keys=_epoch_log_keys(metrics, val_loader is not None))
    state.lr_schedule = LRSchedule(scheduler, spec)
    state.callbacks = [history, state.lr_schedule, *([ProgressBar()] if progress else []), *callbacks]
    net = None
    if dist is not None:   # DDP model, per-process slices of the loaders, writers on the main process only
        net, train_loader, val_loader = dist.prepare(model, train_loader, val_loader)
        state.callbacks = dist.callbacks(state.callbacks)
    start_epoch = 1
    if resume_from is not None:
        start_epoch = _resume(state, resume_from)
        if dist is not None:
            dist.after_resume(state)
    events = Events(state.callbacks) if dist is None else dist.events(state.callbacks)
    loop = _Loop(state, events, train_loader, val_loader, metrics, amp=amp, grad_clip=grad_clip,
                 grad_accum=grad_accum, dist=dist, net=net)
    try:
        loop.run(start_epoch)
        if dist is not None:
            dist.finish(state)
    except StopTraining as stop:
        state.stop, state.stop_reason = True, stop.reason
        if dist is not None:
            dist.finish(state)
    except KeyboardInterrupt:
        state.stop = True
        state.stop_reason = f"interrupted at epoch {state.epoch}, step {state.step}; the model and its history are kept"
        print(f"ftkit: {state.stop_reason}")
    finally:
        history.stop_reason = state.stop_reason
    Events(state.callbacks).on_fit_end(state)
    return history


def _build_scheduler(scheduler, optimizer, total_steps):
    """(scheduler, spec): a name is built for ``total_steps``; ``spec`` lets a resume rebuild it for a new total."""
    if not isinstance(scheduler, str):
        return scheduler, None
    if total_steps is None:
        raise ValueError("a scheduler given by name needs a train_loader with len() or max_steps=; build it "
                         "yourself with make_scheduler(name, optimizer, total_steps=...)")
    try:
        return make_scheduler(scheduler, optimizer, total_steps=total_steps), {"name": scheduler, "total_steps": total_steps}
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e}. fit can only fill in total_steps: for other options build the scheduler yourself, "
                      f"e.g. scheduler=make_scheduler({scheduler!r}, optimizer, ...)") from None


def _resume(state: TrainState, path) -> int:
    """Restore model, optimizer, schedule, history, callbacks and RNG; return the epoch to start at."""
    lr_given = [g["lr"] for g in state.optimizer.param_groups]
    ckpt = load_checkpoint(path, state.model, state.optimizer, map_location=state.device)
    done = ckpt.get("resume") or {"epoch": ckpt["epoch"], "complete": True}
    start = done["epoch"] + 1 if done.get("complete") else done["epoch"]
    if start > state.epochs:
        raise ValueError(f"{path!r} already finished epoch {ckpt['epoch']}, and epochs={state.epochs} is the total "
                         f"to reach, not a number of extra epochs: pass epochs > {ckpt['epoch']} to train on")
    if ckpt.get("scheduler") is not None and state.scheduler is None:
        raise ValueError(f"{path!r} was trained with a learning-rate schedule (lr now "
                         f"{ckpt['optimizer']['param_groups'][0]['lr']:.3g}); pass the same scheduler= to continue it "
                         "(a named one is rebuilt for the new total and continued at the saved step), or "
                         "scheduler='constant' to go on at the initial lr")
    state.history.steps, state.history.epochs = ckpt["history"]["steps"], ckpt["history"]["epochs"]
    state.history.events = ckpt["history"].get("events", [])
    state.step = ckpt["step"]
    state.lr_schedule.resume(ckpt, state.step)
    lr_now = [g["lr"] for g in state.optimizer.param_groups]
    if state.scheduler is None and not ckpt.get("lr_override") and any(
            not math.isclose(a, b) for a, b in zip(lr_given, lr_now)):
        warnings.warn(f"resuming with the checkpoint's lr {lr_now[0]:.3g} (the optimizer given had "
                      f"{lr_given[0]:.3g}): resume continues the saved run exactly; to change the lr, use "
                      "ParamControl.set(lr=...) or the dashboard", stacklevel=3)
    for cb in state.callbacks:
        if cb.state_key in ckpt.get("callbacks", {}):
            cb.load_state_dict(ckpt["callbacks"][cb.state_key])
    state.resume = {**done, "rng": ckpt["rng"]}
    restore_rng(ckpt["rng"])
    return start
