"""ftkit.train.strategy: one loop path for 1 or N processes; only the main process writes."""
from __future__ import annotations

import ast
import inspect
from types import SimpleNamespace

import torch

import ftkit
from ftkit.core import Callback
from ftkit.train import loop
from ftkit.train.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from ftkit.train.distributed import Distributed
from ftkit.train.loggers import CSVLogger, TensorBoardLogger
from ftkit.train.strategy import Local, strategy_for
from ftkit.ui import LivePlot, TrainingDashboard


def test_local_and_distributed_have_the_same_methods_and_the_loop_has_no_dist_branch():
    public = lambda cls: {n for n, v in vars(cls).items() if not n.startswith("_") and callable(v)}
    assert public(Local) == public(Distributed)
    assert isinstance(strategy_for(None, "cpu"), Local)
    tree = ast.parse(inspect.getsource(loop))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"dist", "distributed_for", "Distributed"}


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
