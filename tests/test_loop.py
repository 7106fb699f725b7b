"""fit's records and metrics (train/loop.py): numbers of any type are stored as Python floats; torchmetrics objects
give the whole-set value of each split and epoch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.train.loggers import CSVLogger
from conftest import mlp, toy_data

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


# --------------------------------------------------------------------------- torchmetrics objects
torchmetrics = pytest.importorskip("torchmetrics")


def test_a_torchmetrics_f1_is_the_whole_split_value_not_a_mean_of_batches():
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


def test_a_torchmetrics_auroc_is_reset_each_epoch_and_per_split():
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


def test_a_torchmetrics_value_of_several_numbers_is_refused_by_name():
    model = mlp()
    per_class = torchmetrics.F1Score(task="multiclass", num_classes=3, average=None)
    with pytest.raises(ValueError, match=r"metric 'multiclass_f1_score' computed 3 values .* average='macro'"):
        ftkit.fit(model, DataLoader(TensorDataset(X77, Y77), batch_size=16), "cross_entropy", "sgd", 1,
                  metrics=[per_class], progress=False)


def test_a_torchmetrics_value_resumed_mid_epoch_equals_the_uninterrupted_one(tmp_path):
    from ftkit.train.callbacks import ModelCheckpoint

    class StopAt(ftkit.Callback):
        def on_batch_end(self, state):
            if state.step == 7:
                state.stop, state.stop_reason = True, "test stop"

    def run(callbacks=(), resume_from=None):
        ftkit.seed_everything(0)
        model = mlp()
        return ftkit.fit(model, DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True), "cross_entropy",
                         ftkit.make_optimizer("sgd", model, lr=0.5), 2, progress=False, callbacks=callbacks,
                         metrics=[torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro")],
                         resume_from=resume_from)

    run([ModelCheckpoint(tmp_path), StopAt()])            # stops after 2 of epoch 2's 5 batches
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["resume"]["batches"] == 2 and saved["resume"]["metric_states"]
    resumed, straight = run(resume_from=tmp_path / "last.pt"), run()
    assert resumed["train_multiclass_f1_score"][-1] == pytest.approx(straight["train_multiclass_f1_score"][-1],
                                                                     abs=1e-6)
