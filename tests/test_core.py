"""ftkit.core: the training vocabulary (History, Callback and its hooks)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.core import Callback, History

from conftest import mlp


# --------------------------------------------------------------------------- History files
def test_history_from_json_names_a_bad_file(tmp_path):
    good = History([{"epoch": 1, "step": 1, "loss": 1.0, "lr": 0.1}], [{"epoch": 1, "train_loss": 1.0}])
    path = tmp_path / "history.json"
    good.to_json(path)
    assert History.from_json(path).epochs == good.epochs
    text = path.read_text()
    path.write_text(text[:len(text) // 2])
    with pytest.raises(ValueError, match=r"history.json' is not valid JSON \(.* at line \d+, column \d+: "
                                         r"truncated or edited\?\); write it again"):
        History.from_json(path)
    path.write_text("")
    with pytest.raises(ValueError, match="history.json' is empty, not a History"):
        History.from_json(path)
    path.write_text(json.dumps({"test_accuracy": 0.9, "seconds": 3}))
    with pytest.raises(ValueError, match=r"is not a History: it has 'test_accuracy', 'seconds', but no 'steps' or "
                                         r"'epochs' \(a metrics file\?\)"):
        History.from_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a JSON list, not a History"):
        History.from_json(path)
    with pytest.raises(ValueError, match="the JSON text holds a JSON list"):
        History.from_json("[1, 2]")
    with pytest.raises(ValueError, match="'epochs' must be a list of dicts"):
        History.from_json('{"epochs": 3}')


def test_history_round_trips_through_json_csv_and_frame(blobs, tmp_path):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=2,
                        progress=False)
    history.to_json(tmp_path / "h.json")
    again = ftkit.History.from_json(tmp_path / "h.json")
    assert again.epochs == history.epochs and again.steps == history.steps
    history.to_csv(tmp_path / "steps.csv", which="step")
    assert len((tmp_path / "steps.csv").read_text().strip().splitlines()) == len(history.steps) + 1
    frame = history.to_frame()
    assert list(frame["epoch"]) == [1, 2] and frame["train_loss"].notna().all()


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def run(callbacks=(), epochs=2, batches=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = data()
    loader = batches if batches is not None else DataLoader(TensorDataset(x, y), batch_size=16)
    return model, ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs,
                            callbacks=callbacks, progress=False, device="cpu")


def test_a_hook_set_on_an_instance_fires():
    seen = []
    cb = Callback()
    cb.on_epoch_end = lambda state: seen.append(("epoch", state.epoch, state.logs["train_loss"]))
    cb.on_step_end = lambda state: seen.append(("step", state.step))
    _, history = run([cb])
    assert [s for s in seen if s[0] == "step"] == [("step", i) for i in range(1, 9)]
    assert [s[:2] for s in seen if s[0] == "epoch"] == [("epoch", 1), ("epoch", 2)]
    assert [s[2] for s in seen if s[0] == "epoch"] == history["train_loss"]


def test_an_instance_hook_wins_over_the_class_method_and_a_non_callable_one_is_refused():
    class Counter(Callback):
        def __init__(self):
            self.n = 0

        def on_batch_end(self, state):
            self.n += 1

    cb = Counter()
    cb.on_batch_end = lambda state: None    # replaces the class's method, as Python attribute lookup says
    run([cb])
    assert cb.n == 0
    bad = Callback()
    bad.on_epoch_end = "print"
    with pytest.raises(TypeError, match=r"Callback.on_epoch_end was set to 'print', which is not callable"):
        run([bad])
