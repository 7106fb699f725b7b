"""The training loop: ``fit`` / ``evaluate`` / ``predict``.

``fit`` is a chain of small named steps — ``run → epoch → batch → optimizer_step``, plus ``validate`` — and one
:class:`~ftkit.core.Events` object fires the callbacks; ``show_training_loop()`` prints the order. One process and
several run the same code: the few points where processes meet are methods of a strategy
(:class:`~ftkit.train.strategy.Local` or :class:`~ftkit.train.distributed.Distributed`), and resume bookkeeping
lives in :class:`~ftkit.train.resume.Resume`. A batch is
``(inputs, targets)`` or a dict (Hugging Face style, ``model(**batch)``; with ``loss=None`` the model's own
``outputs.loss``). Stops are typed (:class:`~ftkit.core.StopTraining`), never parsed from messages.

The learning rate has one owner, :class:`~ftkit.train.callbacks.LRSchedule`: it steps the scheduler after each optimizer
step, and a manual change (``ParamControl``, the dashboard, a replay) goes through it and wins from its step on.

This module imports nothing from ipywidgets or plotly: widgets and plots are callbacks.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import collections.abc
import contextlib
import math
import signal
import threading
import time
import warnings

import torch
from torch import nn

from accelerate.utils import send_to_device

from ..core import Callback, Events, History, as_number, NonFiniteLoss, NonFiniteLossWarning, StopTraining, TrainState
from ..losses import make_loss
from ..metrics import MetricTracker, make_metric
from ..optim import make_optimizer
from ..schedules import make_scheduler, schedule_spec
from ..utils import check_int, check_number
from .callbacks import LRSchedule, ProgressBar
from .replay import Replay
from .resume import Resume, loader_settings
from .step import amp_dtype, autocast, count_targets, forward
from .strategy import strategy_for

__all__ = ["fit", "show_training_loop"]

LOOP = """\
fit(model, train_loader, loss, optimizer, epochs)
  strategy = Local (one process) or Distributed (several): the same methods, one loop path
  on_fit_start
  for epoch:                                   _Loop.epoch
    on_epoch_start
    for batch in train_loader:                 _Loop.batch  (a resumed epoch starts after its last finished step)
      on_batch_start                           (ParamControl applies slider / set() values here)
      forward → loss                           strategy.sync_batch: global loss and target count (skips a batch
                                               whose every target is -100; several processes agree on stops here)
      backward                                 strategy.backward (several: gradients averaged on stepping batches)
      every grad_accum batches:                _Loop.optimizer_step
        clip, check grad norm is finite, optimizer.step()
        on_step_end                            (LRSchedule steps the scheduler unless a manual lr won)
      on_batch_end                             (History appends the step row)
    validate → on_validation_end               _Loop.validate (several: summed over the processes)
    on_epoch_end                               (History appends the epoch row; checkpoints, early stop)
  on_fit_end                                   (always; after Ctrl-C, a stop or a non-finite loss too)"""


def show_training_loop() -> None:
    """Print the order in which ``fit`` runs its steps and fires callback events."""
    print(LOOP)


# --------------------------------------------------------------------------- argument checks
def _check_args(model, train_loader, val_loader, optimizer, epochs, max_steps, grad_accum, grad_clip, metrics, callbacks):
    if epochs is None and max_steps is None:
        raise ValueError("give epochs= or max_steps=")
    if epochs is not None:
        check_int("epochs", epochs, meaning=" (passes over train_loader)")
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
    """One ``fit`` call: the state, the callbacks and the steps, each a few lines. ``strategy`` is
    :class:`~ftkit.train.strategy.Local` (one process) or :class:`~ftkit.train.distributed.Distributed`: the same
    methods, so one process and several run this same code."""

    def __init__(self, state: TrainState, strategy, resume: Resume, net, train_loader, val_loader, metrics, *, amp,
                 grad_clip, grad_accum):
        self.s, self.strategy, self.resume, self.net = state, strategy, resume, net
        self.events = strategy.events(state.callbacks)
        self.train_loader, self.val_loader, self.metrics = train_loader, val_loader, metrics
        self.amp, self.grad_clip, self.grad_accum = amp, grad_clip, grad_accum
        # fp16 needs its gradients scaled (they underflow); bf16 has fp32's range and needs no scaler
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype(state.device, amp) == torch.float16 else None
        self.tracker = MetricTracker(metrics)
        self.params = [p for g in state.optimizer.param_groups for p in g["params"]]
        self.finished = False      # max_steps reached: the epoch ends normally, then fit
        self.open_epoch = False    # an epoch started and has no row yet (a stop inside it writes a partial one)

    def run(self, start_epoch: int) -> None:
        if not math.isfinite(self.s.lr):   # the rows before the first step (grad_accum) hold the lr it will use
            self.s.lr = as_number(self.s.optimizer.param_groups[0]["lr"])
        self.events.on_fit_start(self.s)
        with _stop_on_sigint(self.s):
            for epoch in range(start_epoch, self.s.epochs + 1):
                self.epoch(epoch)
                if self.finished:
                    break

    def epoch(self, epoch: int) -> None:
        s = self.s
        s.epoch, s.logs = epoch, {"epoch": epoch}
        self.t0 = t0 = time.perf_counter()
        self.open_epoch, self.batches_done, self.samples, self.loss_sum, self.n_seen = True, 0, 0, 0.0, 0.0
        s.model.train()
        self.events.on_epoch_start(s)
        s.optimizer.zero_grad(set_to_none=True)
        self.strategy.sync_rng()   # several processes: rank 0's RNG, so the slices partition one shuffle
        batches, self.loss_sum, self.n_seen = self.resume.epoch(epoch, self.train_loader, self.tracker)
        for i, batch in batches:
            s.batch_idx = i
            self.batch(i, batch)
            if self.finished:
                break
        if self.n_seen == 0:
            raise ValueError("train_loader yielded no batches (or only batches whose every label is -100): check "
                             "the dataset size, batch_size and drop_last")
        self.strategy.reduce_metrics(self.tracker)
        s.logs.update(train_loss=_mean(self.loss_sum, self.n_seen), **self.tracker.compute("train_"))
        self.validate()
        s.logs.update(lr=as_number(s.optimizer.param_groups[0]["lr"]), **self._epoch_time(t0))
        self.resume.epoch_done(epoch)   # complete once validated: a crash in validation resumes to validate again
        self.open_epoch = False
        self.events.on_epoch_end(s)
        s.history.close_epoch(s)     # the row is final now: later changes to state.logs do not rewrite it
        self.strategy.sync_stop(s)   # a stop set on any process ends training on all

    def _epoch_time(self, t0: float) -> dict:
        """The epoch's training time, without the seconds callbacks held it (a dashboard's pause, its LR finder:
        ``state.extra["held_s"]``), which get their own column."""
        held = self.s.extra.pop("held_s", 0.0)
        return {"time": max(time.perf_counter() - t0 - held, 0.0), **({"paused_s": held} if held else {})}

    def partial_epoch(self, stop: StopTraining | None = None) -> None:
        """A stop inside an epoch: its row from the batches trained so far, marked ``partial=True`` with
        ``batches`` and ``samples``, validated like a full one, so the History reads the same as after a finished
        epoch. Not a finished epoch: no ``on_epoch_end`` (no checkpoint, no early stop), and a resume still
        continues inside it."""
        if not self.open_epoch or isinstance(stop, NonFiniteLoss):   # inf/NaN means: the step rows say what happened
            return
        s, self.open_epoch = self.s, False
        s.logs.update(partial=True, batches=self.batches_done, samples=self.samples)
        if self.n_seen:
            self.strategy.reduce_metrics(self.tracker)
            s.logs.update(train_loss=_mean(self.loss_sum, self.n_seen), **self.tracker.compute("train_"))
        else:
            s.logs.update(train_loss=float("nan"))
        self.validate()
        s.logs.update(lr=as_number(s.optimizer.param_groups[0]["lr"]), **self._epoch_time(self.t0))
        s.history.epochs.append(s.logs)
        s.history.close_epoch(s)

    def batch(self, i: int, batch) -> None:
        s, strategy = self.s, self.strategy
        self.events.on_batch_start(s)
        strategy.check_stop(s)       # several processes stop together, inside sync_batch
        batch = send_to_device(batch, s.device, non_blocking=True)
        with autocast(s.device, self.amp):
            outputs, targets, loss = forward(self.net, batch, s.loss_fn)
        synced = strategy.sync_batch(s, loss, count_targets(targets), outputs)   # global loss and target count
        if synced is None:           # every label -100: nothing to learn from
            return
        grad_loss, loss, n = synced
        stepping = (i + 1) % self.grad_accum == 0 or i + 1 == s.batches_per_epoch
        strategy.backward(self.net, self._scaled(grad_loss), stepping)
        self._check_loss(loss, i)
        if stepping:
            self.optimizer_step(i)
        self._count(i, n, outputs, targets, stepping)
        self.batches_done += 1
        self.samples += targets.shape[0] if isinstance(targets, torch.Tensor) and targets.dim() else 1
        self.events.on_batch_end(s)
        strategy.check_stop(s)
        self.finished = s.max_steps is not None and s.step >= s.max_steps

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
        s.lr = as_number(s.optimizer.param_groups[0]["lr"])
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
        s.logs.update(self.strategy.evaluate(s.model, self.val_loader, s.loss_fn, self.metrics, amp=self.amp,
                                             prefix="val_"))
        self.events.on_validation_end(s)

    # ---- the batch step's small parts
    def _scaled(self, loss):
        """The loss to backpropagate: averaged over ``grad_accum`` batches, scaled for fp16 (GradScaler)."""
        loss = loss / self.grad_accum if self.grad_accum > 1 else loss
        return self.scaler.scale(loss) if self.scaler else loss

    def _check_loss(self, loss, i: int) -> None:
        self.s.loss = loss.item()
        if not math.isfinite(self.s.loss):
            self._non_finite(f"non-finite loss ({self.s.loss})", i)

    def _count(self, i: int, n, outputs, targets, stepped: bool) -> None:
        """Epoch totals and metrics; after a finished optimizer step, the resume point."""
        self.loss_sum, self.n_seen = self.loss_sum + self.s.loss * float(n), self.n_seen + float(n)
        if self.tracker.metrics:
            self.tracker.update(outputs.detach(), targets)
        if stepped:
            self.resume.step_done(i + 1, self.loss_sum, self.n_seen, self.tracker)

    def _non_finite(self, what: str, i: int):
        s = self.s
        s.optimizer.zero_grad(set_to_none=True)  # never apply an update computed from it
        reason = (f"{what} at epoch {s.epoch}, step {s.step + 1} (batch {i}); stopped before its update, so the "
                  "model keeps the last finite weights. Lower lr, set grad_clip, or check the inputs.")
        warnings.warn(reason, NonFiniteLossWarning, stacklevel=5)
        raise NonFiniteLoss(reason)


def _mean(total, count) -> float:
    return float(total) / float(count) if float(count) else float("nan")


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
def fit(model: nn.Module, train_loader: Iterable, loss: str | Callable, optimizer: torch.optim.Optimizer,
        epochs: int | None = 1, *, val_loader: Iterable | None = None, scheduler: Any = None,
        callbacks: Sequence[Callback] = (), metrics: Sequence = (), device: str | torch.device = "auto",
        amp: bool | str = False, grad_clip: float | None = None, grad_accum: int = 1,
        resume_from: str | os.PathLike | None = None, progress: bool = True, max_steps: int | None = None,
        replay: Any = None, accelerator: Any = None) -> History:
    """Train ``model`` and return its :class:`History` (also kept when training stops early).

    ``loss``: a name for :func:`make_loss`, a callable, or ``None`` (HF models' own loss).
    A model that returns an object with ``.logits`` (a Hugging Face ``ModelOutput``) has its ``.logits`` taken
    silently before ``loss`` and the metrics see it: the convenience that hides the articles' bug
    ``criterion(outputs, labels)`` on a ``ModelOutput`` (S1-07, shown in notebooks/05; docs/seed_errors.md).
    Any other non-tensor output raises a ``TypeError``.
    ``optimizer``: a ``torch.optim.Optimizer`` or a name (default options of :func:`make_optimizer`).
    ``scheduler``: a name for :func:`~ftkit.schedules.make_scheduler` or a ``(name, options)`` pair
    (``("linear_warmup", {"warmup_ratio": 0.1})``; ``total_steps`` filled in, and re-counted on a resume with another
    batch size), or a scheduler object; stepped after every optimizer step by
    :class:`~ftkit.train.callbacks.LRSchedule` (``reduce_on_plateau``: at each epoch end, on its monitored value). ``amp``: autocast — ``True`` (fp16 +
    GradScaler on CUDA, bf16 on CPU), ``"bf16"`` (where the device has it: CPU, Ampere+ GPUs; no scaler needed) or
    ``"fp16"`` (CUDA). ``grad_clip``: max global gradient norm. ``grad_accum``: batches per
    optimizer step. ``max_steps``: end after that many optimizer steps (the epoch in progress is closed with its
    row and validation). ``resume_from``: a checkpoint; training continues where it stopped — after its epoch,
    or mid-epoch at the next batch — up to ``epochs`` (the total, not a number of extra epochs).
    ``replay``: a History (or its events) whose manual changes are reapplied at the same steps
    (:class:`ftkit.train.replay.Replay`).
    ``accelerator``: an ``accelerate.Accelerator`` to train data-parallel on its processes (made for you under
    ``ftkit.launch``, ``accelerate launch`` or ``torchrun``); ``batch_size`` stays the global batch (see
    :mod:`ftkit.train.distributed`).
    """
    metrics, callbacks = _check_args(model, train_loader, val_loader, optimizer, epochs, max_steps, grad_accum,
                                     grad_clip, metrics, callbacks)
    strategy = strategy_for(accelerator, device)   # Local on one process, Distributed on several
    amp_dtype(strategy.device, amp)                # an amp the device cannot run: refused before anything loads
    with _unchanged_on_error(optimizer):   # a refused fit (or resume) leaves the optimizer as it was given
        state = _make_state(model, train_loader, loss, optimizer, epochs, max_steps, grad_accum, scheduler,
                            strategy.device, log_keys=_epoch_log_keys(metrics, val_loader is not None))
        state.callbacks = strategy.callbacks([state.history, state.lr_schedule, *([ProgressBar()] if progress else []),
                                              *([Replay(replay)] if replay is not None else []), *callbacks])
        for cb in state.callbacks:   # unwritable folders, unknown monitors: refused before anything is loaded
            getattr(cb, "check_fit", lambda s: None)(state)
        resume = Resume(state, strategy, loader_settings(train_loader, grad_accum))
        net, train_loader, val_loader = strategy.prepare(model, train_loader, val_loader)
        start_epoch = resume.load(resume_from) if resume_from is not None else 1
    loop = _Loop(state, strategy, resume, net, train_loader, val_loader, metrics, amp=amp, grad_clip=grad_clip,
                 grad_accum=grad_accum)
    try:
        loop.run(start_epoch)
        strategy.finish(state, loop.tracker)
    except StopTraining as stop:
        state.stop, state.stop_reason = True, stop.reason
        loop.partial_epoch(stop)     # a stop inside an epoch: its row, marked partial
        strategy.finish(state, loop.tracker)
    except KeyboardInterrupt:
        state.stop = True
        state.stop_reason = f"interrupted at epoch {state.epoch}, step {state.step}; the model and its history are kept"
        print(f"ftkit: {state.stop_reason}")
    except Exception as err:     # from the data, the model or a callback: keep the work, then raise
        _keep_work(state, err)
        raise
    finally:
        state.history.stop_reason = state.stop_reason
    Events(state.callbacks).on_fit_end(state)
    return state.history


@contextlib.contextmanager
def _unchanged_on_error(optimizer):
    """Building a schedule writes the optimizer's lr (``initial_lr``, one-cycle's start): undone if fit refuses."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in getattr(optimizer, "param_groups", ())]
    try:
        yield
    except BaseException:
        for group, saved in zip(getattr(optimizer, "param_groups", ()), groups):
            for key in set(group) - set(saved) - {"params"}:
                del group[key]
            group.update(saved)
        raise


def _keep_work(state: TrainState, err: Exception) -> None:
    """An error ends the fit: ``err.history`` is the History so far, ``on_fit_end`` runs (ModelCheckpoint writes
    ``last.pt`` from the last finished step, the progress bar closes); an error there is noted, never raised over
    ``err``."""
    state.stop = True
    state.stop_reason = f"error at epoch {state.epoch}, step {state.step}: {type(err).__name__}: {err}"
    state.history.stop_reason = state.stop_reason
    for cb in state.callbacks:
        if callable(getattr(cb, "on_fit_end", None)):
            try:
                cb.on_fit_end(state)
            except Exception as again:   # noqa: BLE001 — the first error is the one to see
                err.add_note(f"ftkit: {type(cb).__name__}.on_fit_end failed too: {type(again).__name__}: {again}")
    with contextlib.suppress(AttributeError):
        err.history = state.history
    err.add_note(f"ftkit: the History so far ({len(state.history.epochs)} epochs, {len(state.history.steps)} steps) "
                 "is err.history")


def _make_state(model, train_loader, loss, optimizer, epochs, max_steps, grad_accum, scheduler, device, log_keys):
    """The :class:`TrainState` of a new fit: model on ``device``, loss and optimizer built, epochs and the
    schedule's total steps worked out from the loader's length."""
    n_batches = len(train_loader) if hasattr(train_loader, "__len__") else None
    if n_batches == 0:
        raise ValueError("train_loader is empty (0 batches): check the dataset size, batch_size and drop_last")
    steps_per_epoch = math.ceil(n_batches / grad_accum) if n_batches else None
    if epochs is None:
        epochs = math.ceil(max_steps / steps_per_epoch) if steps_per_epoch else 10**9
    model.to(device)
    loss_fn = make_loss(loss) if loss is not None else None
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)  # class weights follow the model
    optimizer = make_optimizer(optimizer, model)
    total_steps = min(steps_per_epoch * epochs, max_steps or 10**18) if steps_per_epoch else max_steps
    scheduler, spec = _build_scheduler(scheduler, optimizer, total_steps)
    state = TrainState(model=model, optimizer=optimizer, scheduler=scheduler, loss_fn=loss_fn, device=device,
                       epochs=epochs, history=History(), train_loader=train_loader, batches_per_epoch=n_batches,
                       max_steps=max_steps,
                       grad_accum=grad_accum, log_keys=log_keys)
    state.lr_schedule = LRSchedule(scheduler, spec)
    return state


def _build_scheduler(scheduler, optimizer, total_steps):
    """(scheduler, spec): a name or a ``(name, options)`` pair is built for ``total_steps``; ``spec`` lets a resume
    rebuild it for a new total."""
    named = schedule_spec(scheduler)
    if named is None:
        return scheduler, None
    name, options = named
    if total_steps is None:
        raise ValueError("a scheduler given by name needs a train_loader with len() or max_steps=; build it "
                         "yourself with make_scheduler(name, optimizer, total_steps=...)")
    spec = {"name": name, "total_steps": total_steps, **({"options": options} if options else {})}
    try:
        return make_scheduler(name, optimizer, total_steps=total_steps, **options), spec
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e}. fit fills in total_steps; give the other options as a pair, e.g. "
                      f"scheduler=({name!r}, {{...}}), or build the scheduler yourself with make_scheduler") from None
