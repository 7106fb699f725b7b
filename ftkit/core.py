"""The base every other module builds on: :class:`Callback`, :class:`TrainState`, :class:`History`, the typed
stops and ``eval_mode`` (file writing is in :mod:`ftkit.utils`). It imports nothing from ftkit above :mod:`ftkit.utils`;
every topic (``train``, ``optviz``, ``nlp``, ``ui``) builds on it.

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
import io
import json
import pprint
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

import torch
from torch import nn

from .utils import EXPORTERS, atomic_write

__all__ = ["EVENTS", "Callback", "TrainState", "History", "StopTraining", "NonFiniteLoss", "NonFiniteLossWarning",
           "schedule_from_events", "events_as_schedule", "as_number", "eval_mode", "describe",
           "IGNORE"]

IGNORE = -100  # the label cross-entropy skips (HF convention); losses, metrics and the loop leave it out

EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_start", "on_step_end", "on_batch_end", "on_validation_end",
          "on_epoch_end", "on_fit_end")


# --------------------------------------------------------------------------- typed stops
class StopTraining(Exception):
    """Raise from a callback (or let ``fit`` raise it) to end training cleanly with ``reason``.

    ``fit`` catches it, records the reason in ``history.stop_reason``, runs ``on_fit_end`` and returns the History.
    ``partial_epoch=True`` (the default) means the running epoch gets step rows only, no epoch row.
    """

    def __init__(self, reason: str) -> None:
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
    ``main_process_only = True`` on a class that writes (files, plots, the terminal) runs it on the main process only
    when several processes train.

    A hook may also be set on an instance (``cb.on_epoch_end = lambda state: ...``): it fires like an overridden one.
    """

    log_keys: tuple[str, ...] = ()
    main_process_only: bool = False

    def check_fit(self, state) -> None:
        """Raise if this callback cannot do its work in this fit (an unwritable folder, an unknown monitor):
        ``fit`` calls it first, before a checkpoint is loaded or anything trains. Not an event."""

    def on_fit_start(self, state: "TrainState") -> None: ...
    def on_epoch_start(self, state: "TrainState") -> None: ...
    def on_batch_start(self, state: "TrainState") -> None: ...
    def on_step_end(self, state: "TrainState") -> None: ...
    def on_batch_end(self, state: "TrainState") -> None: ...
    def on_validation_end(self, state: "TrainState") -> None: ...
    def on_epoch_end(self, state: "TrainState") -> None: ...
    def on_fit_end(self, state: "TrainState") -> None: ...

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Events:
    """Per-event lists of hooks, built once: no per-batch ``getattr`` on every callback. A hook is a method the
    callback's class overrides or a callable set on the instance (``cb.on_epoch_end = f``); the base class's empty
    methods are left out."""

    def __init__(self, callbacks) -> None:
        self.callbacks = list(callbacks)
        for event in EVENTS:
            setattr(self, event, self._fire([getattr(cb, event) for cb in self.callbacks if _has_hook(cb, event)]))

    @staticmethod
    def _fire(hooks):
        def fire(state):
            for hook in hooks:
                hook(state)
        return fire


def _has_hook(callback, event: str) -> bool:
    if event in getattr(callback, "__dict__", {}):   # set on the instance
        hook = callback.__dict__[event]
        if not callable(hook):
            raise TypeError(f"{type(callback).__name__}.{event} was set to {hook!r}, which is not callable: set it to "
                            f"a function of the training state, e.g. cb.{event} = lambda state: print(state.epoch)")
        return True
    base = getattr(Callback, event)
    return getattr(type(callback), event, base) is not base and callable(getattr(callback, event, None))


# --------------------------------------------------------------------------- history
class History(Callback):
    """Plain data: ``steps`` (one dict per optimizer step), ``epochs`` (one dict per finished epoch) and
    ``events`` (one dict per manual change: step, epoch, name, old, new, source).

    ``history["val_loss"]`` lists an epoch column; ``to_frame("step")``, ``to_json(path)``, ``to_csv(path)``.
    """

    def __init__(self, steps: list[dict] | None = None, epochs: list[dict] | None = None,
                 stop_reason: str | None = None, events: list[dict] | None = None) -> None:
        self.steps: list[dict] = list(steps or [])
        self.epochs: list[dict] = list(epochs or [])
        self.events: list[dict] = list(events or [])
        self.stop_reason: str | None = stop_reason

    def on_batch_end(self, state: "TrainState") -> None:
        self.steps.append({"epoch": state.epoch, "step": state.step, "loss": as_number(state.loss),
                           "lr": as_number(state.lr)})

    def on_epoch_end(self, state: "TrainState") -> None:
        state.logs.update({k: as_number(v) for k, v in state.logs.items()})
        self.epochs.append(state.logs)  # the live dict while the epoch ends: later callbacks may still add columns

    def close_epoch(self, state: "TrainState") -> None:
        """After every callback's ``on_epoch_end`` (``fit`` calls it): the last row becomes a copy of plain numbers,
        so a later change to ``state.logs`` (in the next epoch, after ``fit``) does not rewrite the record."""
        if self.epochs and self.epochs[-1] is state.logs:
            self.epochs[-1] = {k: as_number(v) for k, v in state.logs.items()}

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

    def to_frame(self, which: str = "epoch") -> "pd.DataFrame":
        import pandas as pd
        return pd.DataFrame(self.steps if _which(which) == "step" else self.epochs)

    def events_as_schedule(self) -> str:
        """The manual changes (``events``) as code that replays them in another fit (see :mod:`ftkit.train.replay`)."""
        return events_as_schedule(self)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "epochs": self.epochs, "events": self.events, "stop_reason": self.stop_reason}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True, default=_json_number)
        if path is not None:
            atomic_write(path, text.encode())
        return text

    def to_csv(self, path: str | os.PathLike, which: str = "epoch") -> None:
        self.to_frame(which).to_csv(path, index=False)

    def export_html(self, path: str | os.PathLike, **kwargs: Any) -> Any:
        """This run as one self-contained HTML file to share (curves with the LR events and a slider that replays
        them, parameters, metrics, environment): :func:`ftkit.export.export_run_html` writes it (needs plotly);
        ``params=`` and ``metrics=`` add the run's settings and results."""
        return EXPORTERS["run_html"](self, path, **kwargs)

    @classmethod
    def from_dict(cls, data, where: str = "the data"):
        """A History from :meth:`to_dict`'s dict; anything else (a metrics file, a list) fails naming what it is."""
        if not isinstance(data, dict):
            raise ValueError(f"{where} holds a JSON {type(data).__name__}, not a History (a JSON object with "
                             "'steps' and 'epochs' lists, as History.to_json writes)")
        if "steps" not in data and "epochs" not in data:
            keys = ", ".join(map(repr, list(data)[:6])) or "no keys"
            raise ValueError(f"{where} is not a History: it has {keys}, but no 'steps' or 'epochs' (a metrics file?); "
                             "load the file that history.to_json(path) wrote")
        for key in ("steps", "epochs", "events"):
            rows = data.get(key)
            if rows is not None and not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
                raise ValueError(f"{where}: {key!r} must be a list of dicts (one per {key[:-1]}), "
                                 f"got {type(rows).__name__}")
        return cls(data.get("steps"), data.get("epochs"), data.get("stop_reason"), data.get("events"))

    @classmethod
    def from_json(cls, path_or_text):
        """A History from a path or from JSON text (as :meth:`to_json` writes); a truncated, empty or foreign
        file fails naming the file and what is wrong with it."""
        text = str(path_or_text)
        where = "the JSON text"
        if not text.lstrip().startswith(("{", "[")):
            where = repr(os.fspath(path_or_text))
            with open(path_or_text) as f:
                text = f.read()
        if not text.strip():
            raise ValueError(f"{where} is empty, not a History; was the run interrupted while writing it? "
                             "Write it again with history.to_json(path)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}: truncated "
                             "or edited?); write it again with history.to_json(path)") from None
        return cls.from_dict(data, where)


def as_number(value):
    """A number of any numeric type (a 0-d tensor, a NumPy scalar) as a Python ``float`` (``int`` stays ``int``);
    anything else unchanged. Records hold plain numbers: a tensor lr that a scheduler changes in place would
    otherwise make every row show its final value."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().cpu().item())
    if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
        return value.item() if np.issubdtype(type(value), np.integer) else float(value)
    return value


def _json_number(value):
    plain = as_number(value)
    if plain is value:
        raise TypeError(f"a History value is a {type(value).__name__}, which JSON cannot hold: log numbers or strings")
    return plain


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
    return ("from ftkit.train.replay import Replay\n\n"
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
    train_loader: Any = None        # what fit trains on, as given (the LR finder of a dashboard reads it)
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
    lr_schedule: Any = None         # the one owner of the learning rate (ftkit.train.callbacks.LRSchedule)
    callbacks: list = field(default_factory=list)
    log_keys: set = field(default_factory=set)  # epoch-log columns fit will write (monitors check names)
    resume: dict = field(default_factory=dict)  # where a mid-epoch resume continues (batches done, sums, RNG)
    extra: dict = field(default_factory=dict)   # free room for callbacks

    @property
    def lr_override(self) -> bool:
        """True once a manual learning rate took over from the schedule (see ``LRSchedule``)."""
        return bool(self.lr_schedule is not None and self.lr_schedule.lr_is_manual)


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
