"""Loggers that write a training to files as it runs: a CSV row per epoch, TensorBoard scalars. Both run on the
main process only, check their folder is writable before anything trains, and survive a resume."""
from __future__ import annotations

import csv
import io
import os
import warnings

from ..core import Callback, as_number
from ..utils import atomic_write, check_writable
from ..deps import require

__all__ = ["TensorBoardLogger", "CSVLogger"]


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard (``torch.utils.tensorboard``): step loss/lr every ``every`` steps, epoch logs."""

    main_process_only = True   # writes: on the main process only when several train

    def __init__(self, log_dir="runs/ftkit", every: int = 10):
        self.log_dir, self.every, self.writer = os.fspath(log_dir), int(every), None

    def check_fit(self, state):
        check_writable(self.log_dir, "TensorBoardLogger", "TensorBoardLogger('runs/run1')")

    def on_fit_start(self, state):
        require("torch.utils.tensorboard")
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
    """One row per epoch in a CSV file, rewritten atomically after each epoch (a crash never leaves half a row).

    A new fit starts the file afresh. A resumed fit (``resume_from``) keeps the file's rows up to the checkpoint's
    last epoch (rows of later epochs belong to the run the resume replaces: dropped, with a warning) and goes on
    after them. A column that appears later — a resume that adds ``val_loader`` — widens the header; the earlier
    rows get empty cells. Nothing logged is ever dropped.
    """

    main_process_only = True   # writes: on the main process only when several train

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fields: list[str] = []
        self._rows: list[dict] = []

    def check_fit(self, state):
        check_writable(os.path.dirname(os.path.abspath(self.path)), "CSVLogger", "CSVLogger('logs/run1.csv')")
        try:
            if os.path.exists(self.path):
                open(self.path, "a").close()   # a folder, or a file that cannot be replaced
        except OSError as e:
            raise PermissionError(f"CSVLogger cannot write {self.path!r} ({e.strerror or e}); give a file you can "
                                  "write to, e.g. CSVLogger('logs/run1.csv'). Nothing has been trained yet") from None

    def on_fit_start(self, state):
        self._fields, self._rows = [], []
        if not state.history.epochs:
            return
        last = state.history.epochs[-1].get("epoch", len(state.history.epochs))   # a resume: the checkpoint's rows,
        rows = {row.get("epoch"): dict(row) for row in state.history.epochs}       # or the file's (with the columns
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

    def on_epoch_end(self, state):
        self._add(dict(state.logs))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self._fields, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write(self.path, out.getvalue().encode())
