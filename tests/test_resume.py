"""Resume under changed settings, safe checkpoints, output folders and no lost work (issue 24).

The task: ``X, Y = torch.randn(64, 4), torch.randint(0, 3, (64,))``, an MLP, batches of 4 unless a test says
otherwise; every run seeds with ``ftkit.seed_everything``.
"""
from __future__ import annotations

import contextlib
import csv
import os
import subprocess

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.core import Callback
from ftkit.train.callbacks import CSVLogger, ModelCheckpoint, ParamControl, TensorBoardLogger
from ftkit.train.checkpoint import load_checkpoint, save_checkpoint

torch.manual_seed(0)
X, Y = torch.randn(64, 4), torch.randint(0, 3, (64,))


def mlp():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def loader(batch_size=4, data=None, shuffle=True):
    return DataLoader(data if data is not None else TensorDataset(X, Y), batch_size=batch_size, shuffle=shuffle)


def run(epochs, *, batch_size=4, callbacks=(), resume_from=None, scheduler=None, lr=0.1, seed=1, model=None,
        opt=None, data=None, **kw):
    ftkit.seed_everything(seed)
    model = model or mlp()
    opt = opt or ftkit.make_optimizer("sgd", model, lr=lr)
    history = ftkit.fit(model, loader(batch_size, data), "cross_entropy", opt, epochs, callbacks=callbacks,
                        resume_from=resume_from, scheduler=scheduler, progress=False, **kw)
    return history, model


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class StopAt(Callback):
    """Stops after optimizer step ``step`` (a mid-epoch resume point) or after epoch ``epoch``."""

    def __init__(self, step=None, epoch=None):
        self.step, self.epoch = step, epoch

    def on_batch_end(self, state):
        if state.step == self.step:
            state.stop = True

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            state.stop = True


@contextlib.contextmanager
def read_only(folder):
    """``chattr +i``: the process runs as root, which ignores permission bits but not the immutable flag."""
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


# --------------------------------------------------------------------------- a checkpoint runs no code
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_runs_nothing_and_the_error_says_why(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"format": "ftkit-checkpoint-1", "model": {}, "optimizer": _Evil(marker)}, tmp_path / "evil.pt")
    model = mlp()
    before = weights(model).clone()
    with pytest.raises(ValueError, match=r"was refused: it holds a pickled posix\.system, an object whose loading "
                                         r"can run code .*weights_only=True.* nothing from the file was run"):
        run(2, model=model, resume_from=tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="Do not load this file"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists() and torch.equal(weights(model), before)


def test_checkpoints_are_plain_data_and_resume_bit_for_bit(tmp_path):
    class NumpyLogs(Callback):   # numpy numbers in the logs (common in user callbacks) become Python numbers
        def on_epoch_end(self, state):
            state.logs["np_metric"] = np.float64(0.5)

    run(4, callbacks=[NumpyLogs(), ModelCheckpoint(tmp_path), StopAt(step=22)])   # mid-epoch 2
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)   # raises if anything is not plain data
    assert ckpt["history"]["epochs"][0]["np_metric"] == 0.5 and type(ckpt["history"]["epochs"][0]["np_metric"]) is float
    assert ckpt["resume"]["batches"] == 6
    straight, model_a = run(4)
    resumed, model_b = run(4, resume_from=tmp_path / "last.pt")
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in straight.steps], abs=1e-6)
    assert torch.allclose(weights(model_a), weights(model_b), atol=1e-6)


def test_a_callback_state_that_is_not_plain_data_is_named_before_training(tmp_path):
    class Keeps(Callback):
        def state_dict(self):
            return {"when": object()}

    model = mlp()
    before = weights(model).clone()
    with pytest.raises(TypeError, match=r"\['callbacks'\]\['.*Keeps'\]\['when'\] is a builtins\.object: a checkpoint "
                                        r"holds only tensors, numbers, strings"):
        run(1, model=model, callbacks=[Keeps(), ModelCheckpoint(tmp_path)])
    assert torch.equal(weights(model), before) and not (tmp_path / "last.pt").exists()


# --------------------------------------------------------------------------- output folders, CSV columns
@pytest.mark.parametrize("make", [lambda d: ModelCheckpoint(d / "ckpt"), lambda d: CSVLogger(d / "ckpt" / "log.csv"),
                                  lambda d: TensorBoardLogger(d / "ckpt")], ids=["checkpoint", "csv", "tensorboard"])
def test_a_read_only_output_folder_fails_at_fit_start_before_any_training(tmp_path, make):
    (tmp_path / "ckpt").mkdir()
    callback = make(tmp_path)
    model = mlp()
    before = weights(model).clone()
    steps = []

    class Count(Callback):
        def on_batch_end(self, state):
            steps.append(state.step)

    with read_only(tmp_path / "ckpt"):
        with pytest.raises(PermissionError, match=r"cannot write to the folder '.*ckpt' \(PermissionError: "
                                                  r"Operation not permitted\); give a folder you can write to, e\.g\. "
                                                  r".*Nothing has been trained yet"):
            run(2, model=model, callbacks=[Count(), callback])
    assert steps == [] and torch.equal(weights(model), before)


def test_csv_logger_keeps_the_validation_columns_a_resume_adds(tmp_path):
    path = tmp_path / "log.csv"
    run(3, callbacks=[CSVLogger(path), ModelCheckpoint(tmp_path), StopAt(epoch=1)])
    run(3, callbacks=[CSVLogger(path)], resume_from=tmp_path / "last.pt",
        val_loader=loader(16, TensorDataset(X[:16], Y[:16])))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["val_loss"] == "" and all(float(r["val_loss"]) > 0 for r in rows[1:])
    assert all(float(r["train_loss"]) > 0 for r in rows)


def test_csv_logger_resumed_from_an_earlier_checkpoint_replaces_the_later_rows(tmp_path):
    path = tmp_path / "log.csv"
    run(2, callbacks=[CSVLogger(path), ModelCheckpoint(tmp_path)])
    os.replace(tmp_path / "last.pt", tmp_path / "epoch2.pt")
    run(4, callbacks=[CSVLogger(path)], resume_from=tmp_path / "epoch2.pt")   # rows 1..4
    with pytest.warns(UserWarning, match=r"rows for epochs \[3, 4\] after the checkpoint's last epoch 2"):
        run(3, callbacks=[CSVLogger(path)], resume_from=tmp_path / "epoch2.pt")
    with open(path, newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    (tmp_path / "new.csv").unlink(missing_ok=True)
    run(3, callbacks=[CSVLogger(tmp_path / "new.csv")], resume_from=tmp_path / "epoch2.pt")   # a new file on resume
    with open(tmp_path / "new.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]


# --------------------------------------------------------------------------- schedules and manual lr on resume
def two_groups(model, lr=0.1):
    """SGD with the head at 10x the body's lr (what LRSchedule.set keeps)."""
    return torch.optim.SGD([{"params": model[0].parameters(), "lr": lr},
                            {"params": model[2].parameters(), "lr": 10 * lr}], lr=lr)


def test_a_manual_lr_survives_a_resume_with_a_named_schedule_and_more_epochs(tmp_path):
    control = ParamControl()

    class At(Callback):
        def on_batch_end(self, state):
            if state.step == 20:
                control.set(lr=0.005)

    model = mlp()
    run(2, model=model, opt=two_groups(model), scheduler="cosine", callbacks=[At(), control, ModelCheckpoint(tmp_path)])
    model = mlp()
    opt = two_groups(model)
    resumed, _ = run(4, model=model, opt=opt, scheduler="cosine", resume_from=tmp_path / "last.pt")
    assert [r["lr"] for r in resumed.steps[20:]] == pytest.approx([0.005] * 44)   # from the change on, to the end
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.05])    # the head keeps its 10x
    assert resumed.events[0]["new"] == 0.005
