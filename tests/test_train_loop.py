"""ftkit.train.loop: fit — what it checks before training, what it records (numbers as Python floats, whole-split
torchmetrics values, the history), how it ends."""
from __future__ import annotations

import ast
import contextlib
import inspect
import json
import math
import subprocess

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.core import Callback
from ftkit.train import load_checkpoint, loop, NonFiniteLossWarning
from ftkit.train.callbacks import EarlyStopping, ModelCheckpoint
from ftkit.train.loggers import CSVLogger, TensorBoardLogger

from conftest import At, fit_toy, fit_toy_adamw, mlp, toy_data, toy_loader, weights, X

X77, Y77 = toy_data(77)    # 77 samples: the last batch of 16 is a partial one


@pytest.mark.parametrize("lr", [torch.tensor(0.1), np.float32(0.1), np.float64(0.1)], ids=["tensor", "np32", "np64"])
def test_a_tensor_or_numpy_lr_is_recorded_as_the_float_of_each_step(tmp_path, lr):
    ftkit.seed_everything(0)
    model = mlp()
    opt = ftkit.make_optimizer("sgd", model, lr=lr)
    history = ftkit.fit(model, DataLoader(TensorDataset(X77, Y77), batch_size=16), "cross_entropy", opt, 2,
                        scheduler="cosine", callbacks=[CSVLogger(tmp_path / "log.csv")], progress=False)
    lrs = [row["lr"] for row in history.steps]
    assert all(type(v) is float for v in lrs)
    # cosine over 10 steps from 0.1: the lr of step s (0-based) is 0.05 (1 + cos(pi s / 10))
    assert lrs == pytest.approx([0.05 * (1 + np.cos(np.pi * s / 10)) for s in range(10)], abs=1e-7)
    assert type(history.epochs[-1]["lr"]) is float
    assert json.loads(history.to_json())["steps"][3]["lr"] == pytest.approx(lrs[3])
    assert "tensor" not in (tmp_path / "log.csv").read_text()


def test_a_user_optimizer_with_a_tensor_lr_still_records_floats():
    ftkit.seed_everything(0)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1))
    history = ftkit.fit(model, DataLoader(TensorDataset(X77, Y77), batch_size=16), "cross_entropy", opt, 1,
                        scheduler="cosine", progress=False)
    lrs = [row["lr"] for row in history.steps]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.05 * (1 + np.cos(np.pi * 4 / 5)))
    json.loads(history.to_json())


# --------------------------------------------------------------------------- torchmetrics objects (conftest's fixture)
def test_a_torchmetrics_f1_is_the_whole_split_value_not_a_mean_of_batches(torchmetrics):
    """Macro F1 on 77 samples in batches of 16: the logged value is the metric of the whole split (each epoch)."""
    ftkit.seed_everything(0)
    model = mlp()
    f1 = torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro")
    train = DataLoader(TensorDataset(X77, Y77), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(X77, Y77), batch_size=16)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.5), 2,
                        val_loader=val, metrics=[f1, "accuracy"], progress=False)
    with torch.no_grad():
        whole = torchmetrics.functional.f1_score(model(X77).argmax(1), Y77, task="multiclass", num_classes=3,
                                                 average="macro")
    assert history["val_multiclass_f1_score"][-1] == pytest.approx(float(whole), abs=1e-6)
    with torch.no_grad():
        per_batch = np.mean([float(torchmetrics.functional.f1_score(model(x).argmax(1), y, task="multiclass",
                                                                    num_classes=3, average="macro")) for x, y in val])
    assert abs(per_batch - float(whole)) > 1e-3     # the number a per-batch mean would have logged differs
    assert f1.update_count == 0                      # the object given is not changed: fit works on copies


def test_a_torchmetrics_auroc_is_reset_each_epoch_and_per_split(torchmetrics):
    """AUROC of the last epoch's validation outputs only: a state kept over 3 epochs (or shared with the training
    split) would give another number."""
    ftkit.seed_everything(0)
    model = mlp()
    auroc = torchmetrics.AUROC(task="multiclass", num_classes=3)
    train = DataLoader(TensorDataset(X77, Y77), batch_size=16, shuffle=True)
    val_x, val_y = X77[:40], Y77[:40]
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 3,
                        val_loader=DataLoader(TensorDataset(val_x, val_y), batch_size=16), metrics=[auroc],
                        progress=False)
    with torch.no_grad():
        whole = torchmetrics.functional.auroc(model(val_x), val_y, task="multiclass", num_classes=3)
    assert history["val_multiclass_auroc"][-1] == pytest.approx(float(whole), abs=1e-6)
    assert history["val_multiclass_auroc"][0] != pytest.approx(float(whole), abs=1e-4)   # it changed over epochs


def test_a_torchmetrics_value_of_several_numbers_is_refused_by_name(torchmetrics):
    model = mlp()
    per_class = torchmetrics.F1Score(task="multiclass", num_classes=3, average=None)
    with pytest.raises(ValueError, match=r"metric 'multiclass_f1_score' computed 3 values .* average='macro'"):
        ftkit.fit(model, DataLoader(TensorDataset(X77, Y77), batch_size=16), "cross_entropy", "sgd", 1,
                  metrics=[per_class], progress=False)


def test_a_torchmetrics_value_resumed_mid_epoch_equals_the_uninterrupted_one(tmp_path, torchmetrics):
    from ftkit.train.callbacks import ModelCheckpoint

    class StopAt(ftkit.Callback):
        def on_batch_end(self, state):
            if state.step == 7:
                state.stop, state.stop_reason = True, "test stop"

    def run(callbacks=(), resume_from=None):
        ftkit.seed_everything(0)
        model = mlp()
        return ftkit.fit(model, DataLoader(TensorDataset(X77, Y77), batch_size=16, shuffle=True), "cross_entropy",
                         ftkit.make_optimizer("sgd", model, lr=0.5), 2, progress=False, callbacks=callbacks,
                         metrics=[torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro")],
                         resume_from=resume_from)

    run([ModelCheckpoint(tmp_path), StopAt()])            # stops after 2 of epoch 2's 5 batches
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["resume"]["batches"] == 2 and saved["resume"]["metric_states"]
    resumed, straight = run(resume_from=tmp_path / "last.pt"), run()
    assert resumed["train_multiclass_f1_score"][-1] == pytest.approx(straight["train_multiclass_f1_score"][-1],
                                                                     abs=1e-6)


def test_batchnorm_with_a_one_sample_batch_says_what_to_change():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    data = torch.utils.data.TensorDataset(torch.randn(9, 3), torch.randint(2, (9,)))
    loader = torch.utils.data.DataLoader(data, batch_size=4)  # 4 + 4 + 1: the last batch has one sample
    with pytest.raises(ValueError, match=r"BatchNorm in training mode got a batch of 1 sample .*N % batch_size == 1"
                                         r"\): pass drop_last=True"):
        ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), progress=False)
    loader = torch.utils.data.DataLoader(data, batch_size=4, drop_last=True)
    ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), progress=False)


# --------------------------------------------------------------------------- 5, 6: wrong objects, names
def test_optimizer_built_for_another_model_is_refused():
    model = mlp(dropout=0.2)
    opt = ftkit.make_optimizer("adam", model, lr=1e-2)
    model = mlp(dropout=0.2)                             # the model cell re-run, the optimizer cell not
    with pytest.raises(ValueError, match=r"optimizer holds \d+ of \d+ parameters that are not this model's.*Re-run"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, progress=False)


# --------------------------------------------------------------------------- 11-13: types, NaN grads, -100
def test_wrong_types_name_the_parameter():
    model = mlp(dropout=0.2)
    opt = ftkit.make_optimizer("sgd", model, lr=0.1)
    with pytest.raises(ValueError, match=r"grad_accum must be a whole number >= 1 .* got 2.5"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, grad_accum=2.5, progress=False)
    with pytest.raises(ValueError, match="epochs must be a whole number .* got 2.7"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, epochs=2.7, progress=False)
    with pytest.raises(ValueError, match="lr must be a number, got True"):
        ftkit.make_optimizer("sgd", model, lr=True)
    with pytest.raises(ValueError, match="grad_clip must be a number, got 'abc'"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, grad_clip="abc", progress=False)
    with pytest.raises(ValueError, match=r"scheduler 'step' needs step_size.*build the scheduler yourself"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, scheduler="step", progress=False)
    with pytest.raises(ValueError, match=r"total_steps must be a whole number >= 1 .* got 'abc'"):
        ftkit.make_scheduler("cosine", opt, total_steps="abc")
    with pytest.raises(ValueError, match="an iterator is used up after one epoch"):
        ftkit.fit(model, iter(toy_loader(16)), "cross_entropy", opt, epochs=2, progress=False)


def test_metrics_and_callbacks_may_be_given_alone():
    stopper = EarlyStopping("train_loss", patience=0, min_delta=1e9)  # nothing after epoch 1 counts as better
    history, _ = fit_toy_adamw(3, metrics="accuracy", callbacks=stopper)
    assert len(history) == 2 and history.stop_reason.startswith("early stopping: train_loss did not improve")
    assert stopper.best == history["train_loss"][0] and stopper.best_epoch == history.epochs[0]["epoch"]
    for acc in history["train_accuracy"]:  # correct predictions / samples of the epoch
        assert 0 <= acc <= 1 and acc * len(X) == pytest.approx(round(acc * len(X)))


def test_max_steps_ends_training_after_that_many_steps_and_closes_the_epoch():
    history, _ = fit_toy_adamw(None, max_steps=6, val_loader=toy_loader(16, shuffle=False), scheduler="cosine")
    assert len(history.steps) == 6 and [r["epoch"] for r in history.epochs] == [1, 2]
    assert history.stop_reason is None and "val_loss" in history.epochs[-1]
    assert np.isclose(history.steps[-1]["lr"], 1e-2 * (1 + math.cos(math.pi * 5 / 6)) / 2)


def test_fit_draws_no_random_numbers_of_its_own_so_it_equals_a_plain_loop():
    losses = {}
    for name in ("fit", "plain"):
        ftkit.seed_everything(5)
        model, data = mlp(dropout=0.2), toy_loader(16)
        opt = ftkit.make_optimizer("sgd", model, lr=0.1, momentum=0.9)
        if name == "fit":
            losses[name] = [r["loss"] for r in ftkit.fit(model, data, "cross_entropy", opt, 2, progress=False).steps]
            continue
        losses[name] = []
        for _ in range(2):
            for x, y in data:
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses[name].append(loss.item())
    assert losses["fit"] == pytest.approx(losses["plain"], abs=1e-7)


@contextlib.contextmanager
def read_only(folder):
    """``chattr +i``: the process runs as root, which ignores permission bits but not the immutable flag."""
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


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
            fit_toy(2, model=model, callbacks=[Count(), callback])
    assert steps == [] and torch.equal(weights(model), before)


def test_fit_learns_blobs_above_chance_and_records_history(blobs):
    train, val = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("adam", model, lr=1e-2), epochs=4,
                        val_loader=val, metrics=["accuracy"], progress=False)
    assert len(history) == 4 and len(history.steps) == 4 * len(train)
    assert history["val_accuracy"][-1] > 0.9  # chance is 1/3
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert [r["step"] for r in history.steps] == list(range(1, 4 * len(train) + 1))
    assert ftkit.evaluate(model, val, "cross_entropy", ["accuracy"])["accuracy"] == pytest.approx(
        history["val_accuracy"][-1])


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_finite_weights(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    opt = ftkit.make_optimizer("sgd", model, lr=1e12)
    with pytest.warns(NonFiniteLossWarning, match=r"non-finite loss .* at epoch 1, step \d+"):
        history = ftkit.fit(model, train, "cross_entropy", opt, epochs=3, progress=False)
    assert history.stop_reason.startswith("non-finite loss")
    assert len(history.epochs) == 0 and all(math.isfinite(r["loss"]) for r in history.steps)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_keyboard_interrupt_mid_epoch_keeps_model_history_and_writes_last(blobs, tmp_path):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    ended = []

    class Ended(Callback):
        def on_fit_end(self, state):
            ended.append(state.stop_reason)

    def interrupt(state):
        raise KeyboardInterrupt

    ckpt = ModelCheckpoint(tmp_path)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=3,
                        callbacks=[At(5, interrupt), Ended(), ckpt], progress=False)
    assert len(history.steps) == 5 and "interrupted at epoch 1, step 5" in history.stop_reason
    assert ended == [history.stop_reason]
    saved = load_checkpoint(ckpt.last_path, model=mlp(2, 32, 3, dropout=0.0))
    assert saved["step"] == 5 and len(saved["history"]["steps"]) == 5


def test_state_stop_mid_epoch_ends_after_that_batch(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=3,
                        callbacks=[At(3, lambda s: setattr(s, "stop", True))], progress=False)
    assert len(history.steps) == 3
    [row] = history.epochs                  # the stopped epoch, recorded as such (issue 35: Stop keeps notebooks running)
    assert (row["epoch"], row["partial"], row["batches"]) == (1, True, 3)


def test_bad_inputs_give_one_clear_error_each():
    model = mlp(2, 32, 3, dropout=0.0)
    opt = ftkit.make_optimizer("sgd", model, lr=0.1)
    with pytest.raises(ValueError, match="train_loader is empty"):
        ftkit.fit(model, DataLoader(TensorDataset(torch.randn(0, 2), torch.zeros(0).long())), "cross_entropy", opt)
    x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
    with pytest.raises(ValueError, match=r"model output \(shape \(8, 3\).*label \d is outside \[0, 2\]"):
        ftkit.fit(model, DataLoader(TensorDataset(x, y + 5), batch_size=8), "cross_entropy", opt, progress=False)
    with pytest.raises(TypeError, match=r"integer class labels .* targets.long\(\)"):
        ftkit.fit(model, DataLoader(TensorDataset(x, y.float()), batch_size=8), "cross_entropy", opt, progress=False)
    with pytest.raises(ValueError, match=r"prediction shape \(8, 3\) differs from target shape \(8,\)"):
        ftkit.fit(model, DataLoader(TensorDataset(x, y.float()), batch_size=8), "mse", opt, progress=False)
    with pytest.raises(ValueError, match="epochs must be a whole number >= 1 \\(passes over train_loader\\), got 0"):
        ftkit.fit(model, [(x, y)], "cross_entropy", opt, epochs=0)
    with pytest.raises(ValueError, match="batch must be \\(inputs, targets\\)"):
        ftkit.fit(model, [x], "cross_entropy", opt, progress=False)


def test_grad_accum_equals_a_bigger_batch():
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    def run(batch_size, accum):
        ftkit.seed_everything(3)
        model = mlp(2, 32, 2, dropout=0.0)
        ftkit.fit(model, DataLoader(TensorDataset(x, y), batch_size=batch_size), "cross_entropy",
                  ftkit.make_optimizer("sgd", model, lr=0.5), epochs=2, grad_accum=accum, progress=False)
        return torch.cat([p.flatten() for p in model.parameters()])
    assert torch.allclose(run(32, 1), run(16, 2), atol=1e-6)


def test_grad_clip_bounds_the_update():
    x, y = torch.randn(32, 2) * 100, torch.randint(0, 2, (32,))
    model = mlp(2, 32, 2, dropout=0.0)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    ftkit.fit(model, [(x, y)], "cross_entropy", ftkit.make_optimizer("sgd", model, lr=1.0), grad_clip=0.01,
              progress=False)
    after = torch.cat([p.detach().cpu().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 0.01 + 1e-6


def test_fit_is_at_most_40_lines_of_code():
    src = inspect.getsource(loop.fit)
    fn = ast.parse(src).body[0]
    doc = fn.body[0]
    lines = [line for i, line in enumerate(src.splitlines(), 1)
             if not doc.lineno <= i <= doc.end_lineno and line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 40, len(lines)


def test_grad_accum_records_the_lr_each_batch_trains_with():
    """With grad_accum=2 a row is recorded per batch, numbered by the steps finished: the first batch comes before
    any step, and its row holds the lr the first step uses (a cosine schedule's start, 0.1), never nan."""
    model = mlp(dropout=0.0)
    h = ftkit.fit(model, toy_loader(16), "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1,
                  grad_accum=2, scheduler="cosine", progress=False)
    lrs = [row["lr"] for row in h.steps]
    assert len(lrs) == 4 and [row["step"] for row in h.steps] == [0, 1, 1, 2]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05])   # cosine over 2 steps: 0.1, then 0.1·(1 + cos π/2)/2


def test_epoch_rows_are_final_when_recorded():
    """An epoch's row is state.logs once every callback's on_epoch_end ran (LRMonitor's columns included), then a
    copy of plain numbers: a change to those logs later — in the next epoch, after fit — does not rewrite it."""
    class Meddle(Callback):
        kept = None

        def on_epoch_end(self, state):
            self.kept = state.logs

        def on_batch_end(self, state):
            if self.kept is not None:
                self.kept["train_loss"] = 123.0

        def on_fit_end(self, state):
            state.logs["epoch"] = -1

    from ftkit.train.callbacks import LRMonitor
    model = mlp(dropout=0.0)
    h = ftkit.fit(model, toy_loader(16), "cross_entropy", ftkit.make_optimizer("sgd", model, lr=torch.tensor(0.1)),
                  2, callbacks=[Meddle(), LRMonitor()], progress=False)
    assert [row["epoch"] for row in h.epochs] == [1, 2]
    assert all(row["train_loss"] != 123.0 and type(row["train_loss"]) is float for row in h.epochs)
    assert [row["lr_0"] for row in h.epochs] == [pytest.approx(0.1)] * 2
    assert all(type(row["lr_0"]) is float for row in h.epochs + h.steps)


def test_a_partial_epoch_row_holds_plain_numbers():
    """A stop inside an epoch writes its row after no on_epoch_end: its lr is a float too, also from an optimizer
    built by hand with a tensor lr (torch.optim keeps the tensor)."""
    model = mlp(dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1))
    stop = At(2, lambda s: setattr(s, "stop", True) or setattr(s, "stop_reason", "stop"))
    h = ftkit.fit(model, toy_loader(16), "cross_entropy", opt, 2, callbacks=[stop], progress=False)
    assert h.epochs[-1]["partial"] is True and type(h.epochs[-1]["lr"]) is float
    assert h.epochs[-1]["lr"] == pytest.approx(0.1)


def test_epoch_losses_are_whole_set_means_with_an_uneven_last_batch():
    """77 samples in batches of 16 (the last one 13): each epoch loss is the mean over samples — equal to the loss
    of the whole set at once — not a mean of batch means (which weighs the 13 like 16). lr 0 keeps the weights, so
    the training and the validation epoch both equal it (≤ 1e-6)."""
    ftkit.seed_everything(0)
    model = mlp(dropout=0.0)
    h = ftkit.fit(model, DataLoader(TensorDataset(X77, Y77), batch_size=16, shuffle=True), "cross_entropy",
                  ftkit.make_optimizer("sgd", model, lr=0.0), 1,
                  val_loader=DataLoader(TensorDataset(X77, Y77), batch_size=16), progress=False)
    with torch.no_grad():
        whole = nn.functional.cross_entropy(model(X77), Y77).item()
        batch_means = sum(nn.functional.cross_entropy(model(X77[i:i + 16]), Y77[i:i + 16]).item()
                          for i in range(0, 77, 16)) / 5
    assert abs(whole - batch_means) > 1e-4      # the two means differ here, so the test tells them apart
    assert h.epochs[0]["train_loss"] == pytest.approx(whole, abs=1e-6)
    assert h.epochs[0]["val_loss"] == pytest.approx(whole, abs=1e-6)
