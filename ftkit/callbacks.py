"""Callbacks for :func:`ftkit.fit`: each is a small class overriding the events it needs.

``ProgressBar`` (on by default), ``LivePlot``, ``EarlyStopping``, ``ModelCheckpoint``, ``LRMonitor``,
``ParamControl`` (apply values set from outside — a widget, another thread — at the next step),
``TensorBoardLogger`` and ``CSVLogger``. ``History`` lives in :mod:`ftkit.train` and is always attached.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import threading
import time

from .train import Callback, History, TrainState, save_checkpoint

__all__ = ["Callback", "History", "TrainState", "ProgressBar", "LivePlot", "EarlyStopping", "ModelCheckpoint", "LRMonitor",
           "ParamControl", "TensorBoardLogger", "CSVLogger"]


def _fmt(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in logs.items() if isinstance(v, float) and k != "time")


class ProgressBar(Callback):
    """One tqdm bar for the whole fit (terminal, JupyterLab, papermill) and one summary line per epoch.

    ``tqdm.auto`` picks the notebook widget or the text bar; ``mininterval`` keeps papermill logs short.
    """

    def __init__(self, mininterval: float = 1.0, summary: bool = True):
        self.mininterval, self.summary, self.bar = mininterval, summary, None

    def on_fit_start(self, state):
        from tqdm.auto import tqdm
        per_epoch = state.batches_per_epoch
        total = per_epoch * state.epochs if per_epoch else None
        self.bar = tqdm(total=total, initial=(len(state.history.steps) if total else 0), unit="batch",
                        mininterval=self.mininterval, dynamic_ncols=True, leave=True)

    def on_batch_end(self, state):
        self.bar.update(1)
        if self.bar.n % 20 == 0 or state.batch_idx == 0:
            self.bar.set_postfix(epoch=state.epoch, loss=f"{state.loss:.4f}", refresh=False)

    def on_epoch_end(self, state):
        if self.summary:
            self.bar.write(f"epoch {state.epoch}/{state.epochs}  {_fmt(state.logs)}  ({state.logs.get('time', 0):.1f}s)")

    def on_fit_end(self, state):
        if self.bar is not None:
            if state.stop_reason:
                self.bar.write(f"stopped: {state.stop_reason}")
            self.bar.close()


class LivePlot(Callback):
    """Loss (per step) and epoch metrics in a plotly ``FigureWidget`` refreshed at most every ``every_ms``.

    With no widget frontend (papermill, a terminal, no ``anywidget``) nothing live is shown; at the end the
    live view is replaced by one static figure, so saved notebooks always carry the plot.
    """

    def __init__(self, every_ms: int = 500, metrics=("loss", "accuracy"), title: str = "training"):
        self.every_ms, self.metrics, self.title = every_ms, tuple(metrics), title
        self.fig = self.handle = None
        self._last = 0.0

    def on_fit_start(self, state):
        from .plots.training import training_figure
        fig = training_figure(state.history, self.metrics, title=self.title)
        try:
            from IPython import get_ipython
            from IPython.display import display
            if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
                return
            import plotly.graph_objects as go
            self.fig = go.FigureWidget(fig)
            self.handle = display(self.fig, display_id=True)
        except Exception:  # no frontend / no anywidget: static figure at the end only
            self.fig = self.handle = None

    def refresh(self, state, force=False):
        now = time.perf_counter()
        if self.fig is None or (not force and (now - self._last) * 1000 < self.every_ms):
            return
        self._last = now
        from .plots.training import update_training_figure
        with self.fig.batch_update():
            update_training_figure(self.fig, state.history, self.metrics)

    def on_batch_end(self, state):
        self.refresh(state)

    def on_epoch_end(self, state):
        self.refresh(state, force=True)

    def on_fit_end(self, state):
        from .plots.training import training_figure
        static = training_figure(state.history, self.metrics, title=self.title)
        try:
            from IPython.display import display
            if self.handle is not None:
                self.handle.update(static)
            else:
                display(static)
        except Exception:
            pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs; optionally restore best."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 3, min_delta: float = 0.0,
                 restore_best: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, int(patience), float(min_delta)
        self.restore_best = restore_best
        self.best, self.best_epoch, self.best_weights, self.wait = None, None, None, 0

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, state):
        if self.monitor not in state.logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, but the epoch logs have only "
                           f"{sorted(state.logs)}; pass val_loader= to fit or monitor 'train_loss'")
        value = state.logs[self.monitor]
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best:
                self.best_weights = copy.deepcopy(state.model.state_dict())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop = True
                state.stop_reason = (f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
                                     f"(best {self.best:.4g} at epoch {self.best_epoch})")

    def on_fit_end(self, state):
        if self.restore_best and self.best_weights is not None and self.best_epoch != state.epoch:
            state.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Writes ``last.pt`` after every epoch (and at the end, also after an interrupt) and ``best.pt``.

    Each write is atomic (temp file + fsync + rename): a crash mid-save never leaves a file that fails to load.
    """

    def __init__(self, dirpath, monitor: str = "val_loss", mode: str = "min", save_best: bool = True,
                 save_last: bool = True):
        self.dirpath, self.monitor, self.mode = os.fspath(dirpath), monitor, mode
        self.save_best, self.save_last = save_best, save_last
        self.best = None
        os.makedirs(self.dirpath, exist_ok=True)

    @property
    def last_path(self):
        return os.path.join(self.dirpath, "last.pt")

    @property
    def best_path(self):
        return os.path.join(self.dirpath, "best.pt")

    def on_epoch_end(self, state):
        if self.save_last:
            save_checkpoint(self.last_path, state)
        value = state.logs.get(self.monitor)
        if self.save_best and value is not None and math.isfinite(value):
            if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
                self.best = value
                save_checkpoint(self.best_path, state, best=value, monitor=self.monitor)

    def on_fit_end(self, state):
        if self.save_last and state.stop and state.stop_reason:
            save_checkpoint(self.last_path, state, stop_reason=state.stop_reason)


class LRMonitor(Callback):
    """Adds every param group's lr to the step rows (``lr_0``, ``lr_1``…) and to the epoch rows."""

    def on_batch_end(self, state):
        row = state.history.steps[-1] if state.history.steps else None
        if row is not None:
            for i, group in enumerate(state.optimizer.param_groups):
                row[f"lr_{i}"] = group["lr"]

    def on_epoch_end(self, state):
        for i, group in enumerate(state.optimizer.param_groups):
            state.logs[f"lr_{i}"] = group["lr"]


class ParamControl(Callback):
    """Apply values set from outside the loop (a slider, a button, another thread) at the next step.

    ``control.set(lr=1e-3)`` sets ``lr`` in every param group before the next batch; other keys
    (``momentum``, ``weight_decay``, ``betas``…) are set the same way when the optimizer has them.
    **Rule with a scheduler:** a manual ``lr`` wins. From the step it is applied the scheduler stops
    driving the learning rate (``state.lr_override``) and the lr stays where you put it; the step rows of
    the history show the new value from that step on. ``control.stop()`` ends training after the current
    batch (pressing it twice is harmless). Thread-safe.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict = {}
        self._stop_requested = False
        self.applied: list[dict] = []   # (step, values) actually applied, for the record

    def set(self, **values):
        for key, value in values.items():
            if key == "lr" and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"lr must be a finite number >= 0, got {value!r}")
        with self._lock:
            self._pending.update(values)

    def stop(self):
        self._stop_requested = True

    @property
    def stop_requested(self):
        return self._stop_requested

    def on_batch_start(self, state):
        if self._stop_requested and not state.stop:
            state.stop = True
            state.stop_reason = f"stopped by request at epoch {state.epoch}, step {state.step}"
        if not self._pending:
            return
        with self._lock:
            values, self._pending = self._pending, {}
        for group in state.optimizer.param_groups:
            for key, value in values.items():
                if key in group:
                    group[key] = value
        if "lr" in values:
            state.lr_override = True
        self.applied.append({"step": state.step, **values})


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard (``torch.utils.tensorboard``): step loss/lr every ``every`` steps, epoch logs."""

    def __init__(self, log_dir="runs/ftkit", every: int = 10):
        self.log_dir, self.every, self.writer = os.fspath(log_dir), int(every), None

    def on_fit_start(self, state):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(self.log_dir)

    def on_batch_end(self, state):
        if state.step % self.every == 0:
            self.writer.add_scalar("step/loss", state.loss, state.step)
            self.writer.add_scalar("step/lr", state.lr, state.step)

    def on_epoch_end(self, state):
        for key, value in state.logs.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, state.epoch)
        self.writer.flush()

    def on_fit_end(self, state):
        if self.writer is not None:
            self.writer.close()


class CSVLogger(Callback):
    """Appends one row per epoch to a CSV file (header from the first row's keys)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fields = None

    def on_epoch_end(self, state):
        row = dict(state.logs)
        new = not os.path.exists(self.path) or self._fields is None
        if self._fields is None:
            self._fields = list(row)
        with open(self.path, "a" if not new else "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

