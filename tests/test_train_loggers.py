"""ftkit.train.loggers: CSV and TensorBoard logs, and what a resume does to them."""
from __future__ import annotations

import csv
import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.train.callbacks import LRMonitor, ModelCheckpoint
from ftkit.train.loggers import CSVLogger, TensorBoardLogger

from conftest import fit_toy, mlp, StopAt, toy_loader, X, Y

X40, Y40 = torch.randn(40, 4), torch.randint(0, 3, (40,))


def _fit(callbacks, epochs=2):
    ftkit.seed_everything(0)
    model = nn.Linear(4, 3)
    return ftkit.fit(model, DataLoader(TensorDataset(X40, Y40), batch_size=8), "cross_entropy",
                     ftkit.make_optimizer("sgd", model, lr=0.1), epochs, callbacks=callbacks, progress=False)


def test_callbacks_and_loggers_are_exported_from_ftkit():
    from ftkit.train import callbacks, loggers
    assert (ftkit.EarlyStopping, ftkit.ModelCheckpoint) == (callbacks.EarlyStopping, callbacks.ModelCheckpoint)
    assert (ftkit.CSVLogger, ftkit.TensorBoardLogger, ftkit.WandbLogger) == (
        loggers.CSVLogger, loggers.TensorBoardLogger, loggers.WandbLogger)
    assert {"EarlyStopping", "ModelCheckpoint", "CSVLogger", "TensorBoardLogger", "WandbLogger"} <= set(ftkit.__all__)


def test_each_tensorboard_fit_writes_a_folder_of_its_own(tmp_path):
    pytest.importorskip("tensorboard")
    first, second = ftkit.TensorBoardLogger(tmp_path, name="lr0.1", every=1), ftkit.TensorBoardLogger(tmp_path, name="lr0.1", every=1)
    _fit([first])
    _fit([second])
    runs = sorted(os.listdir(tmp_path))
    assert len(runs) == 2 and first.run_dir != second.run_dir and all("_lr0.1" in r for r in runs)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(second.run_dir)
    events.Reload()
    assert len(events.Scalars("step/loss")) == 10 and [e.step for e in events.Scalars("epoch/train_loss")] == [1, 2]


def test_wandb_logger_in_offline_mode_logs_the_epoch_values(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = ftkit.WandbLogger(project="ftkit-test", name="offline-run", every=1)
    history = _fit([logger])
    assert logger.summary["epoch/train_loss"] == pytest.approx(history.epochs[-1]["train_loss"])
    assert logger.summary["step/lr"] == pytest.approx(0.1)
    run_files = [os.path.join(root, f) for root, _, files in os.walk(tmp_path) for f in files if f.endswith(".wandb")]
    assert len(run_files) == 1 and os.path.getsize(run_files[0]) > 0    # the offline run, for `wandb sync` later


def test_bf16_amp_computes_the_forward_in_bfloat16_on_cpu():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            out = self.linear(x)
            seen.append(out.dtype)
            return out

    ftkit.seed_everything(0)
    model = Probe()
    history = ftkit.fit(model, DataLoader(TensorDataset(X40, Y40), batch_size=8), "cross_entropy", "sgd", 1,
                        amp="bf16", device="cpu", progress=False)
    assert set(seen) == {torch.bfloat16} and len(history.steps) == 5
    assert model.linear.weight.dtype == torch.float32               # the weights stay fp32: only compute changes
    seen.clear()
    ftkit.fit(model, DataLoader(TensorDataset(X40, Y40), batch_size=8), "cross_entropy", "sgd", 1, device="cpu",
              progress=False)
    assert set(seen) == {torch.float32}
    with pytest.raises(ValueError, match=r"amp='fp16' needs a CUDA GPU .* use amp='bf16'"):
        ftkit.fit(model, DataLoader(TensorDataset(X40, Y40), batch_size=8), "cross_entropy", "sgd", 1, amp="fp16",
                  device="cpu", progress=False)


def test_csv_logger_keeps_the_validation_columns_a_resume_adds(tmp_path):
    path = tmp_path / "log.csv"
    fit_toy(3, callbacks=[CSVLogger(path), ModelCheckpoint(tmp_path), StopAt(epoch=1)])
    fit_toy(3, callbacks=[CSVLogger(path)], resume_from=tmp_path / "last.pt",
        val_loader=toy_loader(16, TensorDataset(X[:16], Y[:16])))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["val_loss"] == "" and all(float(r["val_loss"]) > 0 for r in rows[1:])
    assert all(float(r["train_loss"]) > 0 for r in rows)


def test_csv_logger_resumed_from_an_earlier_checkpoint_replaces_the_later_rows(tmp_path):
    path = tmp_path / "log.csv"
    fit_toy(2, callbacks=[CSVLogger(path), ModelCheckpoint(tmp_path)])
    os.replace(tmp_path / "last.pt", tmp_path / "epoch2.pt")
    fit_toy(4, callbacks=[CSVLogger(path)], resume_from=tmp_path / "epoch2.pt")   # rows 1..4
    with pytest.warns(UserWarning, match=r"rows for epochs \[3, 4\] after the checkpoint's last epoch 2"):
        fit_toy(3, callbacks=[CSVLogger(path)], resume_from=tmp_path / "epoch2.pt")
    with open(path, newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    (tmp_path / "new.csv").unlink(missing_ok=True)
    fit_toy(3, callbacks=[CSVLogger(tmp_path / "new.csv")], resume_from=tmp_path / "epoch2.pt")   # a new file on resume
    with open(tmp_path / "new.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


def test_loggers_write_tensorboard_events_csv_and_lr_columns(blobs, tmp_path):
    train, val = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("adamw", model, lr=1e-2,
                                                                            weight_decay=0.1),
                        epochs=2, val_loader=val, progress=False,
                        callbacks=[TensorBoardLogger(tmp_path / "tb", every=5), CSVLogger(tmp_path / "log.csv"),
                                   LRMonitor()])
    (run,) = os.listdir(tmp_path / "tb")                      # one folder per fit: <date>_<time>_ftkit
    assert run.endswith("_ftkit") and any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb" / run))
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss") and len(rows) == 3
    assert {"lr_0", "lr_1"} <= set(history.steps[0]) and {"lr_0", "lr_1"} <= set(history.epochs[0])
