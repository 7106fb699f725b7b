"""fit's records and metrics (train/loop.py): numbers of any type are stored as Python floats; torchmetrics objects
give the whole-set value of each split and epoch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.train.loggers import CSVLogger

torch.manual_seed(0)
X, Y = torch.randn(77, 4), torch.randint(0, 3, (77,))


def mlp():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("lr", [torch.tensor(0.1), np.float32(0.1), np.float64(0.1)], ids=["tensor", "np32", "np64"])
def test_a_tensor_or_numpy_lr_is_recorded_as_the_float_of_each_step(tmp_path, lr):
    ftkit.seed_everything(0)
    model = mlp()
    opt = ftkit.make_optimizer("sgd", model, lr=lr)
    history = ftkit.fit(model, DataLoader(TensorDataset(X, Y), batch_size=16), "cross_entropy", opt, 2,
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
    history = ftkit.fit(model, DataLoader(TensorDataset(X, Y), batch_size=16), "cross_entropy", opt, 1,
                        scheduler="cosine", progress=False)
    lrs = [row["lr"] for row in history.steps]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.05 * (1 + np.cos(np.pi * 4 / 5)))
    json.loads(history.to_json())
