"""Callbacks for :func:`ftkit.fit`: each is a small class overriding the events it needs.

``ProgressBar`` (on by default), ``EarlyStopping``, ``ModelCheckpoint``, ``LRMonitor``, ``ParamControl`` (apply
values set from outside — a widget, another thread — at the next step) and ``LRSchedule`` (the one owner of the
learning rate, always attached). File loggers are in :mod:`ftkit.train.loggers`, live views in :mod:`ftkit.ui`;
``Callback``, ``History`` and ``TrainState`` live in :mod:`ftkit.core`.
"""
from __future__ import annotations

import copy
import difflib
import math
import os
import threading
import warnings

from torch.optim import lr_scheduler

from ..core import Callback, History, TrainState, as_number
from ..optim import check_option
from ..utils import check_int, check_number, check_writable, did_you_mean
from .checkpoint import checkpoint_payload, save_checkpoint, unwrap_model

__all__ = ["Callback", "History", "TrainState", "ProgressBar", "MonitorCallback", "EarlyStopping",
           "ModelCheckpoint", "LRMonitor", "LRSchedule",
           "ParamControl"]


def _fmt(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in logs.items() if isinstance(v, float) and k != "time")


class ProgressBar(Callback):
    """One tqdm bar for the whole fit (terminal, JupyterLab, papermill) and one summary line per epoch.

    ``tqdm.auto`` picks the notebook widget or the text bar; ``mininterval`` keeps papermill logs short.
    """

    main_process_only = True   # writes: on the main process only when several train

    def __init__(self, mininterval: float = 1.0, summary: bool = True) -> None:
        self.mininterval, self.summary, self.bar = mininterval, summary, None

    def on_fit_start(self, state: TrainState) -> None:
        from tqdm.auto import tqdm
        per_epoch = state.batches_per_epoch
        total = per_epoch * state.epochs if per_epoch else None
        if state.max_steps is not None:
            total = min(total or state.max_steps, state.max_steps * state.grad_accum)
        self.bar = tqdm(total=total, initial=(len(state.history.steps) if total else 0), unit="batch",
                        mininterval=self.mininterval, dynamic_ncols=True, leave=True)

    def on_batch_end(self, state: TrainState) -> None:
        self.bar.update(1)
        if self.bar.n % 20 == 0 or state.batch_idx == 0:
            self.bar.set_postfix(epoch=state.epoch, loss=f"{state.loss:.4f}", refresh=False)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.summary:
            self.bar.write(f"epoch {state.epoch}/{state.epochs}  {_fmt(state.logs)}  ({state.logs.get('time', 0):.1f}s)")

    def on_fit_end(self, state: TrainState) -> None:
        if self.bar is not None:
            if state.stop_reason:
                self.bar.write(f"stopped: {state.stop_reason}")
            self.bar.close()


class MonitorCallback(Callback):
    """Base of the callbacks that watch one epoch-log column (``monitor``) for improvement.

    One improvement test (:meth:`is_improvement`) and one name check, made *before* the first epoch: an unknown
    ``mode`` or a ``monitor`` that fit will never log fails at once, naming the columns it will log.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of a logged column such as 'val_loss', got {monitor!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, check_number("min_delta", min_delta)
        self.best, self.best_epoch = None, None

    def is_improvement(self, value) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def check_fit(self, state: TrainState) -> None:
        known = set(getattr(state, "log_keys", ()) or ())
        for cb in getattr(state, "callbacks", ()):
            if cb is self:
                break
            known |= set(getattr(cb, "log_keys", ()))
            writes_logs = any(getattr(type(cb), e, None) is not getattr(Callback, e)
                              for e in ("on_validation_end", "on_epoch_end"))
            if writes_logs and not type(cb).__module__.startswith("ftkit."):
                return  # a user callback before this one may add the column: check at the first epoch end
        if known and self.monitor not in known:
            raise self._unknown(sorted(known))

    def _unknown(self, columns):
        close = difflib.get_close_matches(self.monitor, columns, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        if self.monitor.startswith("val_") and not any(c.startswith("val_") for c in columns):
            hint += "pass val_loader= to fit or monitor 'train_loss'"
        return KeyError(f"{type(self).__name__} monitors {self.monitor!r}, but the epoch logs will have only "
                        f"{columns}; {hint}".rstrip("; "))

    def value(self, state):
        if self.monitor not in state.logs:
            raise self._unknown(sorted(state.logs))
        return state.logs[self.monitor]

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "monitor": self.monitor, "mode": self.mode}

    def load_state_dict(self, state) -> bool:
        """Take the saved best score — unless it was of another column or mode (a resume that adds or drops
        ``val_loader``): then the best starts afresh, with a warning. True when it was taken."""
        then = (state.get("monitor", self.monitor), state.get("mode", self.mode))
        if then != (self.monitor, self.mode):
            warnings.warn(f"{type(self).__name__}: the checkpoint's best score is of {then[0]!r} ({then[1]}), this "
                          f"run watches {self.monitor!r} ({self.mode}); the best score starts afresh", stacklevel=2)
            return False
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        return True


class EarlyStopping(MonitorCallback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; optionally restore the best
    weights at the end (when the run ends by itself or by this stop; see :meth:`on_fit_end`)."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 3, min_delta: float = 0.0,
                 restore_best: bool = True) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int("patience", patience, 0, " (epochs without improvement before stopping)")
        self.restore_best = restore_best
        self.best_weights, self.wait = None, 0

    def on_epoch_end(self, state: TrainState) -> None:
        value = self.value(state)
        if self.is_improvement(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self.best_weights = copy.deepcopy(state.model.state_dict())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop = True
                state.stop_reason = (f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
                                     f"(best {self.best:.4g} at epoch {self.best_epoch})")

    def on_fit_end(self, state: TrainState) -> None:
        """Restore the best weights when the run ended by itself or by this early stop — not after Ctrl-C, another
        stop or an error: then the model keeps its last weights, those of ``last.pt``, so a resume is exact."""
        ended_here = not state.stop or (state.stop_reason or "").startswith("early stopping")
        if self.restore_best and ended_here and self.best_weights is not None and self.best_epoch != state.epoch:
            state.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wait": self.wait, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        if super().load_state_dict(state):
            self.wait, self.best_weights = state.get("wait", 0), state.get("best_weights")


class ModelCheckpoint(MonitorCallback):
    """Writes ``last.pt`` after every epoch (and at the end, also after an interrupt) and ``best.pt``.

    ``monitor`` defaults to ``val_loss`` (``train_loss`` when fit has no ``val_loader``); a name fit will not log
    fails before the first epoch. Each write is atomic (temp file + fsync + rename): a crash mid-save never leaves
    a file that fails to load. The best score travels in the checkpoint, so a resumed run replaces ``best.pt`` only when it beats it.

    A Hugging Face model (one with ``save_pretrained``) also gets its best weights as a folder other tools open:
    ``best/`` (config with its label names, safetensors weights; a peft model: its adapter) —
    ``from_pretrained(best_folder)`` reloads it. ``save_pretrained=False`` writes ``best.pt`` only.
    """

    main_process_only = True   # writes: on the main process only when several train

    def __init__(self, dirpath, monitor: str | None = None, mode: str = "min", save_best: bool = True,
                 save_last: bool = True, save_pretrained: bool = True) -> None:
        super().__init__(monitor or "val_loss", mode)
        self._default_monitor = monitor is None   # val_loss with a val_loader, else train_loss
        self.dirpath, self.save_best, self.save_last = os.fspath(dirpath), save_best, save_last
        self.save_pretrained = save_pretrained

    @property
    def best_folder(self):
        return os.path.join(self.dirpath, "best")

    @property
    def last_path(self):
        return os.path.join(self.dirpath, "last.pt")

    @property
    def best_path(self):
        return os.path.join(self.dirpath, "best.pt")

    def check_fit(self, state: TrainState) -> None:
        check_writable(self.dirpath, "ModelCheckpoint", "ModelCheckpoint('checkpoints/run1')")
        if self._default_monitor and state.log_keys and "val_loss" not in state.log_keys:
            self.monitor = "train_loss"
        if self.save_best:
            super().check_fit(state)
        checkpoint_payload(state)   # a callback state that cannot be saved safely fails now, not after epoch 1

    def on_epoch_end(self, state: TrainState) -> None:
        if self.save_best:
            value = self.value(state)
            if self.is_improvement(value):
                self.best, self.best_epoch = value, state.epoch
                save_checkpoint(self.best_path, state, best=value, monitor=self.monitor)
                model = unwrap_model(state.model)
                if self.save_pretrained and hasattr(model, "save_pretrained"):
                    model.save_pretrained(self.best_folder, safe_serialization=True)
        if self.save_last:
            save_checkpoint(self.last_path, state)
            self._saved = (state.step, state.epoch)

    def on_fit_end(self, state: TrainState) -> None:
        if not (self.save_last and state.stop and state.stop_reason) or not state.history.steps:
            return
        if getattr(self, "_saved", None) == (state.step, state.epoch):   # written at this epoch's end already
            return
        if state.resume.get("step", state.step) != state.step:   # stopped between an optimizer step and its record
            warnings.warn(f"ModelCheckpoint: no last.pt for step {state.step}: training ended inside it (after the "
                          "optimizer step, before its bookkeeping), so it would not resume exactly; the last.pt "
                          "already written is kept", RuntimeWarning, stacklevel=2)
            return
        save_checkpoint(self.last_path, state, stop_reason=state.stop_reason)

class LRMonitor(Callback):
    """Adds every param group's lr to the step rows (``lr_0``, ``lr_1``…) and to the epoch rows."""

    def on_batch_end(self, state: TrainState) -> None:
        row = state.history.steps[-1] if state.history.steps else None
        if row is not None:
            for i, group in enumerate(state.optimizer.param_groups):
                row[f"lr_{i}"] = as_number(group["lr"])

    def on_epoch_end(self, state: TrainState) -> None:
        for i, group in enumerate(state.optimizer.param_groups):
            state.logs[f"lr_{i}"] = as_number(group["lr"])


class LRSchedule(Callback):
    """The one owner of the learning rate (``fit`` attaches it as ``state.lr_schedule``).

    After every optimizer step it steps the scheduler — unless a manual value took over. **The rule:** a manual
    ``lr`` (``ParamControl.set``, the dashboard's slider, a replay) is applied before the next batch and wins from
    that step on; the scheduler no longer drives the lr. Group 0 gets the value and every other param group keeps
    its ratio to group 0 (a classifier head trained at 10× keeps its 10×); other settings go to every group. Every manual change is an
    event in ``history.events`` (step, epoch, name, old, new, source).

    On resume, a scheduler fit built by name is rebuilt for the new total and continued at the same point of its
    curve (the lr an uninterrupted run with the new settings would have: same epochs done, counted in the new
    steps when the batch size or grad_accum changed); a scheduler object is restored from its state. A manual lr
    set before the checkpoint still wins, each param group keeping its own value (and so its ratio).
    """

    def __init__(self, scheduler=None, spec: dict | None = None) -> None:
        self.scheduler, self.spec = scheduler, spec
        self.manual: dict = {}          # {name: value} set by hand; non-empty 'lr' means the schedule is off

    def set(self, state, source: str = "manual", **values):
        groups = state.optimizer.param_groups
        for name, value in values.items():
            if name not in groups[0]:
                raise ValueError(f"the optimizer has no {name!r}; settable: {settable(state.optimizer)}")
            old = groups[0][name]
            for group in groups:   # an lr keeps each group's ratio to group 0 (e.g. a fresh head's 10x)
                group[name] = value * group["lr"] / old if name == "lr" and old and group is not groups[0] else value
            groups[0][name] = value
            self.manual[name] = value
            state.history.events.append({"step": state.step, "epoch": state.epoch, "name": name,
                                         "old": _plain(old), "new": _plain(value), "source": source,
                                         "groups": len(groups)})   # replay checks the optimizer layout

    @property
    def lr_is_manual(self) -> bool:
        return "lr" in self.manual

    @property
    def on_plateau(self) -> bool:
        """A ``ReduceLROnPlateau``: stepped at each epoch end on its monitored value, not after every step."""
        return isinstance(self.scheduler, lr_scheduler.ReduceLROnPlateau)

    def monitor(self, state) -> str:
        """The epoch-log key a plateau schedule watches: its ``monitor``, else ``val_loss`` (``train_loss``
        without validation)."""
        chosen = getattr(self.scheduler, "monitor", None)
        if chosen:
            return chosen
        return "val_loss" if "val_loss" in (getattr(state, "log_keys", None) or ("val_loss",)) else "train_loss"

    def check_fit(self, state: TrainState) -> None:
        if not self.on_plateau:
            return
        known = set(getattr(state, "log_keys", ()) or ())
        for cb in getattr(state, "callbacks", ()):
            known |= set(getattr(cb, "log_keys", ()))
        monitor = self.monitor(state)
        if known and monitor not in known:
            hint = did_you_mean(monitor, sorted(known))
            if monitor.startswith("val_") and not any(c.startswith("val_") for c in known):
                hint += "; pass val_loader= to fit or monitor 'train_loss'"
            raise KeyError(f"reduce_on_plateau monitors {monitor!r}, but the epoch logs will have only "
                           f"{sorted(known)}{hint}")

    def on_step_end(self, state: TrainState) -> None:
        if self.scheduler is not None and not self.lr_is_manual and not self.on_plateau:
            self.scheduler.step()

    def on_epoch_end(self, state: TrainState) -> None:
        if self.on_plateau and not self.lr_is_manual:
            value = state.logs.get(self.monitor(state))
            if value is not None and math.isfinite(value):
                self.scheduler.step(value)

    def state_dict(self) -> dict:
        return {"manual": dict(self.manual), "spec": self.spec}

    def resume(self, ckpt: dict, step: int) -> None:
        """Continue the saved schedule. ``step``: the point of the (rebuilt) schedule to continue from. A manual lr
        keeps the values the checkpoint's optimizer holds — each param group's, so their ratios too."""
        saved = ckpt.get("lr_schedule") or {}
        self.manual = dict(saved.get("manual") or ({"lr": None} if ckpt.get("lr_override") else {}))
        if self.scheduler is None:
            return
        same = self.spec is not None and saved.get("spec") == self.spec and step == ckpt.get("step")
        if ckpt.get("scheduler") is not None and (same or self.spec is None or self.on_plateau):
            self.scheduler.load_state_dict(ckpt["scheduler"])
            return
        groups = self.scheduler.optimizer.param_groups
        kept = [group["lr"] for group in groups]   # the checkpoint's, restored with the optimizer
        # the rebuilt schedule starts from the checkpoint's base lr (restored with the optimizer), not the one given:
        # resume continues the saved run (an lr given that differs is named by the resume's warning)
        self.scheduler.base_lrs = [group.get("initial_lr", base) for group, base in zip(groups, self.scheduler.base_lrs)]
        for group, base in zip(groups, self.scheduler.base_lrs):
            group["lr"] = base            # replay the new schedule from its start: what a straight run would do
        with warnings.catch_warnings():   # torch warns that no optimizer.step() came first: here none should
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                self.scheduler.step()
        if self.lr_is_manual:             # a manual lr won before the checkpoint: it still wins, group by group
            for group, lr in zip(groups, kept):
                group["lr"] = lr
        elif saved.get("spec") and not math.isclose(groups[0]["lr"], kept[0], rel_tol=1e-6, abs_tol=1e-12):
            name, then = self.spec["name"], saved["spec"]
            what = (f"the {name!r} schedule in place of the saved run's {then.get('name')!r}"
                    if then.get("name") != name else f"the {name!r} schedule re-timed for {self.spec['total_steps']} "
                    f"optimizer steps (the saved run's: {then.get('total_steps')})")
            warnings.warn(f"resuming with {what}: it goes on at the same point of its curve, at lr "
                          f"{groups[0]['lr']:.3g} where the saved run would have gone on at {kept[0]:.3g}. To continue "
                          "the saved run exactly, keep its schedule, epochs, batch size and grad_accum", stacklevel=4)


def settable(optimizer) -> str:
    return ", ".join(k for k, v in optimizer.param_groups[0].items() if k != "params" and isinstance(v, (int, float, tuple)))


def _plain(value):
    return list(value) if isinstance(value, tuple) else as_number(value)


_KNOWN = {"lr", "momentum", "weight_decay", "betas", "eps", "dampening", "alpha", "lr_decay", "nesterov"}


class ParamControl(Callback):
    """Apply values set from outside the loop (a slider, a button, another thread) at the next step.

    ``control.set(lr=1e-3)`` sets ``lr`` in every param group before the next batch; other keys
    (``momentum``, ``weight_decay``, ``betas``…) are set the same way. The values go through the one owner of
    the learning rate (:class:`LRSchedule`): a manual ``lr`` wins over the scheduler from its step on, and each
    change is recorded in ``history.events``. An unknown name fails in ``set`` (naming the settable ones).
    ``control.stop()`` ends training after the current batch (pressing it twice is harmless). Thread-safe.
    """

    def __init__(self, source: str = "control") -> None:
        self._lock = threading.Lock()
        self._pending: dict = {}
        self._stop_requested = False
        self._optimizer = None
        self.source = source
        self.applied: list[dict] = []   # (step, values) actually applied, for the record

    def set(self, **values):
        known = set(self._optimizer.param_groups[0]) - {"params"} if self._optimizer is not None else _KNOWN
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                raise ValueError(f"unknown setting {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                                 + f" (settable: {', '.join(sorted(known))})")
            values[key] = check_option(key, value)  # momentum 5, a negative lr, betas=0.9: refused here
        with self._lock:
            self._pending.update(values)

    def stop(self):
        self._stop_requested = True

    @property
    def stop_requested(self):
        return self._stop_requested

    def on_fit_start(self, state: TrainState) -> None:
        self._optimizer = state.optimizer

    def on_batch_start(self, state: TrainState) -> None:
        if self._stop_requested and not state.stop:
            state.stop = True
            state.stop_reason = f"stopped by request at epoch {state.epoch}, step {state.step}"
        if not self._pending:
            return
        with self._lock:
            values, self._pending = self._pending, {}
        state.lr_schedule.set(state, source=self.source,
                              **{k: v for k, v in values.items() if k in state.optimizer.param_groups[0]})
        self.applied.append({"step": state.step, **values})
