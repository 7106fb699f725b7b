"""Loggers that write a training to files as it runs: a CSV row per epoch, TensorBoard scalars, Weights & Biases.
They run on the main process only, check their folder is writable before anything trains, and survive a resume."""
from __future__ import annotations

import csv
import io
import os
import time
import warnings
from typing import Any

from ..core import Callback, TrainState, as_number
from ..utils import atomic_write, check_writable
from ..env import require

__all__ = ["TensorBoardLogger", "WandbLogger", "CSVLogger"]


def _run_name(name) -> str:
    """``<date>_<time>_<name>``: each fit in a folder of its own, sorted by time (as Lightning and HF name runs)."""
    return f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{name or 'ftkit'}"


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard (``torch.utils.tensorboard``): step loss/lr every ``every`` steps, epoch logs.

    Each fit writes into a folder of its own, ``log_dir/<date>_<time>_<name>`` (``run_dir``), so two runs never mix
    in one folder; ``tensorboard --logdir runs`` shows them side by side."""

    main_process_only = True   # writes: on the main process only when several train

    def __init__(self, log_dir="runs", name: str | None = None, every: int = 10) -> None:
        self.log_dir, self.name, self.every, self.writer = os.fspath(log_dir), name, int(every), None
        self.run_dir = None

    def check_fit(self, state: TrainState) -> None:
        check_writable(self.log_dir, "TensorBoardLogger", "TensorBoardLogger('runs', name='run1')")

    def on_fit_start(self, state: TrainState) -> None:
        require("torch.utils.tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        self.run_dir = os.path.join(self.log_dir, _run_name(self.name))
        n = 1
        while os.path.exists(self.run_dir if n == 1 else f"{self.run_dir}-{n}"):   # two fits in one second
            n += 1
        self.run_dir = self.run_dir if n == 1 else f"{self.run_dir}-{n}"
        self.writer = SummaryWriter(self.run_dir)

    def on_batch_end(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self.writer.add_scalar("step/loss", state.loss, state.step)
            self.writer.add_scalar("step/lr", state.lr, state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        for key, value in state.logs.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, state.epoch)
        self.writer.flush()

    def on_fit_end(self, state: TrainState) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbLogger(Callback):
    """Logs to Weights & Biases: step loss/lr every ``every`` steps and the epoch logs, at the optimizer step.

    ``WandbLogger(project="ftkit", name="run1", config={...})``; other keyword arguments go to ``wandb.init`` (e.g.
    ``mode="offline"``, ``dir=``). Without a network or an account, ``WANDB_MODE=offline`` writes the run locally
    (``wandb sync`` uploads it later). ``summary`` holds the last value sent for each key."""

    main_process_only = True   # writes: on the main process only when several train

    def __init__(self, project: str = "ftkit", name: str | None = None, config: dict | None = None, every: int = 10,
                 **init_kwargs) -> None:
        self.project, self.name, self.config, self.every = project, name, dict(config or {}), int(every)
        self.init_kwargs, self.run, self.summary = init_kwargs, None, {}

    def check_fit(self, state: TrainState) -> None:
        require("wandb")              # missing: one line naming pip install "ftkit[wandb]", before any training

    def on_fit_start(self, state: TrainState) -> None:
        wandb = require("wandb")
        config = {"epochs": state.epochs, "optimizer": type(state.optimizer).__name__,
                  "lr": as_number(state.optimizer.param_groups[0]["lr"]), **self.config}
        self.run = wandb.init(project=self.project, name=self.name or _run_name(None), config=config,
                              **self.init_kwargs)

    def _log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)
        self.summary.update(values)      # the last value of each key sent (what W&B shows as the run's summary)

    def on_batch_end(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self._log({"step/loss": as_number(state.loss), "step/lr": as_number(state.lr)}, state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        self._log({f"epoch/{k}": as_number(v) for k, v in state.logs.items()
                   if isinstance(as_number(v), (int, float)) and not isinstance(v, bool)}, state.step)

    def on_fit_end(self, state: TrainState) -> None:
        if self.run is not None:
            self.run.finish()


class CSVLogger(Callback):
    """One row per epoch in a CSV file, rewritten atomically after each epoch (a crash never leaves half a row).

    A new fit starts the file afresh. A resumed fit (``resume_from``) keeps the file's rows up to the checkpoint's
    last epoch (rows of later epochs belong to the run the resume replaces: dropped, with a warning) and goes on
    after them. A column that appears later — a resume that adds ``val_loader`` — widens the header; the earlier
    rows get empty cells. Nothing logged is ever dropped.
    """

    main_process_only = True   # writes: on the main process only when several train

    def __init__(self, path) -> None:
        self.path = os.fspath(path)
        self._fields: list[str] = []
        self._rows: list[dict] = []

    def check_fit(self, state: TrainState) -> None:
        check_writable(os.path.dirname(os.path.abspath(self.path)), "CSVLogger", "CSVLogger('logs/run1.csv')")
        try:
            if os.path.exists(self.path):
                open(self.path, "a").close()   # a folder, or a file that cannot be replaced
        except OSError as e:
            raise PermissionError(f"CSVLogger cannot write {self.path!r} ({e.strerror or e}); give a file you can "
                                  "write to, e.g. CSVLogger('logs/run1.csv'). Nothing has been trained yet") from None

    def on_fit_start(self, state: TrainState) -> None:
        self._fields, self._rows = [], []
        if not state.history.epochs:
            return
        last = state.history.epochs[-1].get("epoch", len(state.history.epochs))   # a resume: the checkpoint's rows,
        rows: dict = {row.get("epoch"): dict(row) for row in state.history.epochs}  # or the file's (with the columns
        if os.path.exists(self.path):                                              # later callbacks added)
            with open(self.path, newline="") as f:
                rows.update({int(r["epoch"]): r for r in csv.DictReader(f) if str(r.get("epoch") or "").isdigit()})
        dropped = sorted(e for e in rows if e > last)
        if dropped:
            warnings.warn(f"CSVLogger: {self.path!r} has rows for epochs {dropped} after the checkpoint's last epoch "
                          f"{last}; the resumed run replaces them", stacklevel=2)
        for epoch in sorted(e for e in rows if e <= last):
            self._add(rows[epoch])

    def _add(self, row: dict) -> None:
        row = {k: as_number(v) for k, v in row.items()}   # tensor(0.1) would be written as its repr
        self._fields += [k for k in row if k not in self._fields]
        self._rows.append(row)

    def on_epoch_end(self, state: TrainState) -> None:
        self._add(dict(state.logs))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self._fields, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write(self.path, out.getvalue().encode())
