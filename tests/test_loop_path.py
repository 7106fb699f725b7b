"""One loop path for one and several processes (Local / Distributed strategies), hooks set on instances,
main-process-only writers, Mapping batches, and fit's size."""
from __future__ import annotations

import ast
import collections
import inspect
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.core import Callback
from ftkit.train import loop
from ftkit.train.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from ftkit.train.loggers import CSVLogger, TensorBoardLogger
from ftkit.train.distributed import Distributed
from ftkit.train.strategy import Local, strategy_for
from ftkit.ui import LivePlot, TrainingDashboard


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


def test_local_and_distributed_have_the_same_methods_and_the_loop_has_no_dist_branch():
    public = lambda cls: {n for n, v in vars(cls).items() if not n.startswith("_") and callable(v)}
    assert public(Local) == public(Distributed)
    assert isinstance(strategy_for(None, "cpu"), Local)
    tree = ast.parse(inspect.getsource(loop))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"dist", "distributed_for", "Distributed"}


def test_fit_is_at_most_40_lines_of_code():
    src = inspect.getsource(loop.fit)
    fn = ast.parse(src).body[0]
    doc = fn.body[0]
    lines = [line for i, line in enumerate(src.splitlines(), 1)
             if not doc.lineno <= i <= doc.end_lineno and line.strip() and not line.strip().startswith("#")]
    assert len(lines) <= 40, len(lines)


def test_writers_run_on_the_main_process_only():
    writers = [ProgressBar, ModelCheckpoint, CSVLogger, TensorBoardLogger, LivePlot, TrainingDashboard]
    assert all(cls.main_process_only for cls in writers)
    assert not any(cls.main_process_only for cls in (Callback, EarlyStopping, ftkit.History))

    class Mine(Callback):
        main_process_only = True

    def strategy(rank):
        acc = SimpleNamespace(process_index=rank, num_processes=2, is_main_process=rank == 0,
                              device=torch.device("cpu"))
        return Distributed(acc)

    callbacks = [ftkit.History(), ProgressBar(), EarlyStopping(), Mine()]
    assert strategy(0).callbacks(callbacks) == callbacks
    assert [type(c).__name__ for c in strategy(1).callbacks(callbacks)] == ["History", "EarlyStopping"]


def test_a_mapping_batch_that_is_not_a_dict_trains_like_a_dict():
    """Hugging Face collators yield a BatchEncoding (a Mapping, not a dict); fit sends it to the device whole."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))

        def forward(self, x, labels=None):
            return self.net(x)

    x, y = data()
    losses = {}
    for kind in (dict, collections.UserDict):
        torch.manual_seed(0)
        model = Net()
        batches = [kind(x=x[i:i + 16], labels=y[i:i + 16]) for i in range(0, 64, 16)]
        history = ftkit.fit(model, batches, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                            progress=False, device="cpu")
        losses[kind] = [r["loss"] for r in history.steps]
    assert len(losses[dict]) == 8 and losses[dict] == losses[collections.UserDict]
    assert losses[dict][-1] < losses[dict][0]
