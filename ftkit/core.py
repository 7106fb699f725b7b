"""The base every other module builds on: :class:`Callback`, :class:`TrainState`, :class:`History`, the typed
stops, and checkpoint I/O (one atomic writer). It imports nothing from ftkit above :mod:`ftkit.utils`, so
``train``, ``callbacks``, ``landscape`` and ``widgets`` all import it and no import circle exists.

Events, in the order :func:`ftkit.fit` fires them (``ftkit.train.show_training_loop()`` prints the loop)::

    on_fit_start
      on_epoch_start
        on_batch_start → forward/backward → [on_step_end after each optimizer step] → on_batch_end
      on_validation_end (after the val pass, if any) → on_epoch_end
    on_fit_end (always: also after Ctrl-C, a stop or a non-finite loss)
"""
from __future__ import annotations

import contextlib
import difflib
import glob
import io
import json
import pprint
import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["EVENTS", "Callback", "TrainState", "History", "StopTraining", "NonFiniteLoss", "NonFiniteLossWarning",
           "schedule_from_events", "events_as_schedule", "atomic_write", "save_checkpoint", "load_checkpoint", "rng_state", "restore_rng", "eval_mode"]

EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_start", "on_step_end", "on_batch_end", "on_validation_end",
          "on_epoch_end", "on_fit_end")


# --------------------------------------------------------------------------- typed stops
class StopTraining(Exception):
    """Raise from a callback (or let ``fit`` raise it) to end training cleanly with ``reason``.

    ``fit`` catches it, records the reason in ``history.stop_reason``, runs ``on_fit_end`` and returns the History.
    ``partial_epoch=True`` (the default) means the running epoch gets step rows only, no epoch row.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NonFiniteLoss(StopTraining):
    """The loss or the gradient norm became NaN/inf; the update was not applied."""


class NonFiniteLossWarning(RuntimeWarning):
    """Training stopped because the loss (or the gradient) became NaN or infinite."""


# --------------------------------------------------------------------------- callbacks
class Callback:
    """Base class: override the events you need; each receives the shared :class:`TrainState`.

    A callback with state worth keeping across a resume (a best score, a patience counter, a file position)
    returns it from :meth:`state_dict` and takes it back in :meth:`load_state_dict`; checkpoints store it
    under :attr:`state_key` (the class name, unless two callbacks of one class need telling apart).
    ``log_keys`` names the epoch-log columns the callback adds (so monitors can check names before training).
    """

    log_keys: tuple[str, ...] = ()

    def on_fit_start(self, state): ...
    def on_epoch_start(self, state): ...
    def on_batch_start(self, state): ...
    def on_step_end(self, state): ...
    def on_batch_end(self, state): ...
    def on_validation_end(self, state): ...
    def on_epoch_end(self, state): ...
    def on_fit_end(self, state): ...

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Events:
    """Per-event lists of bound methods, built once: no per-batch ``getattr`` on every callback."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)
        for event in EVENTS:
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


# --------------------------------------------------------------------------- history
class History(Callback):
    """Plain data: ``steps`` (one dict per optimizer step), ``epochs`` (one dict per finished epoch) and
    ``events`` (one dict per manual change: step, epoch, name, old, new, source).

    ``history["val_loss"]`` lists an epoch column; ``to_frame("step")``, ``to_json(path)``, ``to_csv(path)``.
    """

    def __init__(self, steps=None, epochs=None, stop_reason=None, events=None):
        self.steps: list[dict] = list(steps or [])
        self.epochs: list[dict] = list(epochs or [])
        self.events: list[dict] = list(events or [])
        self.stop_reason: str | None = stop_reason

    def on_batch_end(self, state):
        self.steps.append({"epoch": state.epoch, "step": state.step, "loss": state.loss, "lr": state.lr})

    def on_epoch_end(self, state):
        self.epochs.append(state.logs)  # the live dict: later callbacks may still add columns

    def columns(self, which: str = "epoch") -> list[str]:
        rows = self.steps if _which(which) == "step" else self.epochs
        return list(dict.fromkeys(k for row in rows for k in row))

    def __getitem__(self, key):
        if self.epochs and not any(key in row for row in self.epochs):
            close = difflib.get_close_matches(key, self.columns(), n=1)
            raise KeyError(f"no epoch column {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                           + f" (columns: {', '.join(self.columns())})")
        return [row.get(key) for row in self.epochs]

    def __len__(self):
        return len(self.epochs)

    def __repr__(self):
        last = {k: round(v, 4) if isinstance(v, float) else v for k, v in (self.epochs[-1] if self.epochs else {}).items()}
        return f"History({len(self.epochs)} epochs, {len(self.steps)} steps, last={last})"

    def to_frame(self, which: str = "epoch"):
        import pandas as pd
        return pd.DataFrame(self.steps if _which(which) == "step" else self.epochs)

    def events_as_schedule(self) -> str:
        """The manual changes (``events``) as code that replays them in another fit (see :mod:`ftkit.replay`)."""
        return events_as_schedule(self)

    def to_dict(self):
        return {"steps": self.steps, "epochs": self.epochs, "events": self.events, "stop_reason": self.stop_reason}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        if path is not None:
            atomic_write(path, text.encode())
        return text

    def to_csv(self, path, which: str = "epoch"):
        self.to_frame(which).to_csv(path, index=False)

    @classmethod
    def from_dict(cls, data):
        return cls(data.get("steps"), data.get("epochs"), data.get("stop_reason"), data.get("events"))

    @classmethod
    def from_json(cls, path_or_text):
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            with open(path_or_text) as f:
                text = f.read()
        return cls.from_dict(json.loads(text))


def schedule_from_events(events) -> dict[int, dict]:
    """``{step: {name: value}}`` from a list of events (later events at one step win)."""
    schedule: dict[int, dict] = {}
    for e in events:
        schedule.setdefault(int(e["step"]), {})[e["name"]] = e["new"]
    return schedule


def events_as_schedule(history) -> str:
    """Python code that reapplies the manual changes of ``history`` (``history.events``) in another ``fit``."""
    schedule = schedule_from_events(history.events)
    groups = {e.get("groups") for e in history.events} - {None}
    return ("from ftkit.replay import Replay\n\n"
            f"# {len(history.events)} manual change(s), as optimizer step -> values set before that step's batch\n"
            f"replay = Replay({pprint.pformat(schedule, sort_dicts=True)}"
            + (f", param_groups={groups.pop()}" if len(groups) == 1 else "") + ")\n"
            "# history = ftkit.fit(model, train_loader, loss, optimizer, epochs, callbacks=[replay])\n")


def _which(which: str) -> str:
    key = {"step": "step", "steps": "step", "epoch": "epoch", "epochs": "epoch"}.get(which)
    if key is None:
        raise ValueError(f"which must be 'step' or 'epoch', got {which!r}")
    return key


# --------------------------------------------------------------------------- state
@dataclass
class TrainState:
    """What callbacks read and write. Set ``stop = True`` (or raise :class:`StopTraining`) to end training
    after the current batch."""
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
    max_steps: int | None = None    # training ends after this many optimizer steps (None: run all epochs)
    grad_accum: int = 1             # batches per optimizer step
    loss: float = float("nan")      # last batch loss
    lr: float = float("nan")        # lr used by the last step (param group 0)
    logs: dict = field(default_factory=dict)   # the epoch row being built (train_*, val_*, lr, time)
    stop: bool = False
    stop_reason: str | None = None
    lr_schedule: Any = None         # the one owner of the learning rate (ftkit.callbacks.LRSchedule)
    callbacks: list = field(default_factory=list)
    log_keys: set = field(default_factory=set)  # epoch-log columns fit will write (monitors check names)
    resume: dict = field(default_factory=dict)  # where a mid-epoch resume continues (batches done, sums, RNG)
    extra: dict = field(default_factory=dict)   # free room for callbacks

    @property
    def lr_override(self) -> bool:
        """True once a manual learning rate took over from the schedule (see ``LRSchedule``)."""
        return bool(self.lr_schedule is not None and self.lr_schedule.lr_is_manual)


# --------------------------------------------------------------------------- checkpoint I/O
def atomic_write(path, data: bytes | None = None, *, save=None) -> str:
    """Write ``data`` (or call ``save(file)``) to a temp file beside ``path``, fsync, then rename over ``path``:
    readers see the old file or the new one, never a torn one. Temp files left by killed writers are removed."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for orphan in glob.glob(glob.escape(path) + ".tmp-*"):
        pid = orphan.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            with _suppress_oserror():
                os.remove(orphan)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            save(f) if save is not None else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class _suppress_oserror:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, OSError)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"].cpu())  # map_location may have moved the states to the GPU
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def save_checkpoint(path, state, **extra) -> str:
    """Write model + optimizer + scheduler + RNG + history + every callback's state, atomically."""
    schedule = getattr(state, "lr_schedule", None)
    payload = {
        "format": "ftkit-checkpoint-1",
        "model": _unwrap(state.model).state_dict(),
        "model_class": type(_unwrap(state.model)).__name__,
        "optimizer": state.optimizer.state_dict(),
        "optimizer_class": type(state.optimizer).__name__,
        "scheduler": state.scheduler.state_dict() if getattr(state, "scheduler", None) is not None else None,
        "lr_schedule": schedule.state_dict() if schedule is not None else None,
        "epoch": state.epoch, "step": state.step, "lr_override": bool(getattr(state, "lr_override", False)),
        "resume": dict(getattr(state, "resume", None) or {}),
        "history": state.history.to_dict(),
        "callbacks": {cb.state_key: cb.state_dict() for cb in getattr(state, "callbacks", ()) if cb.state_dict()},
        "rng": rng_state(),
        **extra,
    }
    return atomic_write(path, save=lambda f: torch.save(payload, f))


def _unwrap(model):
    return getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, map_location="cpu") -> dict:
    """Load a checkpoint dict, with a clear error for a missing, truncated, foreign or mismatched file; with
    objects given, check that they fit (keys and shapes) *before* restoring their state in place."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"resume_from={path!r} is a folder; give the checkpoint file in it, e.g. "
                                f"{os.path.join(path, 'last.pt')!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint {path!r} is empty (0 bytes): it was never written completely; "
                         "use another checkpoint (e.g. best.pt) or start without resume_from")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # EOFError, UnpicklingError, BadZipFile, OverflowError… all mean: not readable
        raise ValueError(f"checkpoint {path!r} ({os.path.getsize(path)} bytes) cannot be read — it is truncated, "
                         f"corrupted or not a torch file ({type(e).__name__}: {str(e)[:120]}); use another "
                         "checkpoint (e.g. best.pt) or start without resume_from") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "optimizer" not in ckpt:
        what = (f"a plain state_dict of {len(ckpt)} tensors" if isinstance(ckpt, dict) and ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()) else f"a {type(ckpt).__name__}")
        raise ValueError(f"{path!r} holds {what}, not an ftkit checkpoint (model + optimizer + history, written by "
                         "ModelCheckpoint or save_checkpoint); load weights with model.load_state_dict("
                         "torch.load(path)) and train without resume_from")
    if model is not None:
        _check_fits(path, "model", _unwrap(model).state_dict(), ckpt["model"], ckpt.get("model_class"),
                    type(_unwrap(model)).__name__)
    if optimizer is not None:
        saved = ckpt.get("optimizer_class")
        if saved and saved != type(optimizer).__name__:
            raise ValueError(f"checkpoint {path!r} was trained with {saved}, but the optimizer given is "
                             f"{type(optimizer).__name__}; resume with the same optimizer type")
        n_saved, n_now = len(ckpt["optimizer"]["param_groups"]), len(optimizer.param_groups)
        if n_saved != n_now:
            raise ValueError(f"checkpoint {path!r} has {n_saved} optimizer param groups, the optimizer given has "
                             f"{n_now}; build the optimizer the same way as for the saved run")
    if model is not None:
        _unwrap(model).load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt


def _check_fits(path, what, current: dict, saved: dict, saved_class, current_class) -> None:
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    shapes = sorted(k for k in set(current) & set(saved) if tuple(current[k].shape) != tuple(saved[k].shape))
    if missing or unexpected or shapes:
        detail = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
            f"shape of {shapes[0]!r}: saved {tuple(saved[shapes[0]].shape)}, model "
            f"{tuple(current[shapes[0]].shape)}" if shapes else "") if part)
        raise ValueError(f"checkpoint {path!r} holds a different {what} ({saved_class or '?'}) than the one given "
                         f"({current_class}): {detail}. Nothing was loaded; build the same model as for the "
                         "saved run")


@contextlib.contextmanager
def eval_mode(model: nn.Module, enabled: bool = True, *, keep_buffers: bool = False):
    """``model.eval()`` for the block (dropout off, BatchNorm on running stats), then the mode it had.

    ``enabled=False`` leaves the mode alone; ``keep_buffers=True`` also restores every buffer (BatchNorm running
    statistics a train-mode forward would update) when the block ends."""
    was_training = model.training
    buffers = {n: b.clone() for n, b in model.named_buffers()} if keep_buffers else {}
    if enabled:
        model.eval()
    try:
        yield model
    finally:
        if buffers:
            with torch.no_grad():
                for n, b in model.named_buffers():
                    b.copy_(buffers[n])
        model.train(was_training)


def describe(obj) -> str:
    """Short description of a tensor or value for error messages."""
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return f"shape {tuple(obj.shape)}, {str(obj.dtype).replace('torch.', '')}"
    return repr(obj) if not isinstance(obj, (bytes, io.IOBase)) else type(obj).__name__
