"""ftkit.train.callbacks: EarlyStopping, ModelCheckpoint, ParamControl — their options and their state across a resume."""
from __future__ import annotations

import os

import pytest
import torch

import ftkit
from ftkit.core import Callback
from ftkit.train.callbacks import EarlyStopping, ModelCheckpoint, ParamControl
from ftkit.train.checkpoint import load_checkpoint

from conftest import At, fit_toy, fit_toy_adamw, mlp, toy_loader, Values, weights


def test_param_control_checks_each_option_range():
    control = ParamControl()
    for key, value, match in (("momentum", 5, r"momentum must be in \[0, 1\), got 5"),
                              ("lr", -0.1, r"lr must be >= 0, got -0.1"),
                              ("weight_decay", -1, r"weight_decay must be >= 0"),
                              ("betas", 0.9, r"betas must be a pair"),
                              ("lr", "0.1", r"lr must be a number, got '0.1' \(a string")):
        with pytest.raises(ValueError, match=match):
            control.set(**{key: value})
    assert not control._pending  # nothing refused was queued
    control.set(momentum=0.5, betas=[0.8, 0.9])
    assert control._pending == {"momentum": 0.5, "betas": (0.8, 0.9)}


def test_early_stopping_patience_and_min_delta():
    with pytest.raises(ValueError, match=r"patience must be a whole number >= 0 \(epochs without improvement"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="patience must be a whole number >= 0.*got 2.5"):
        EarlyStopping(patience=2.5)
    with pytest.raises(ValueError, match="min_delta must be >= 0, got -0.1"):
        EarlyStopping(min_delta=-0.1)
    assert EarlyStopping(patience=0).patience == 0


def test_monitor_and_mode_are_checked_before_the_first_epoch(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'minimum'"):
        ModelCheckpoint(tmp_path, mode="minimum")
    steps = []

    class Count(Callback):
        def on_batch_end(self, state):
            steps.append(state.step)

    for cb in (ModelCheckpoint(tmp_path, monitor="val_acc"), EarlyStopping("val_acc")):
        with pytest.raises(KeyError, match=r"monitors 'val_acc'.*did you mean 'val_accuracy'"):
            fit_toy_adamw(2, callbacks=[Count(), cb], val_loader=toy_loader(16, shuffle=False), metrics=["accuracy"])
    assert steps == [] and not os.path.exists(tmp_path / "best.pt")
    with pytest.raises(ValueError, match="val_loader is empty"):
        fit_toy_adamw(1, val_loader=[])


def test_model_checkpoint_min_mode_keeps_the_lowest(tmp_path):
    ckpt = ModelCheckpoint(tmp_path, monitor="val_loss", mode="min")
    fit_toy_adamw(4, callbacks=[Values({1: 3.0, 2: 1.0, 3: 2.0, 4: 5.0}), ckpt])
    assert load_checkpoint(ckpt.best_path)["best"] == 1.0 and load_checkpoint(ckpt.best_path)["epoch"] == 2


def test_manual_changes_are_events_in_the_history():
    control = ParamControl()

    class At(Callback):
        def on_batch_end(self, state):
            if state.step == 2:
                control.set(lr=0.05, momentum=0.5)

    history, _ = fit_toy_adamw(1, opt="momentum", lr=0.1, callbacks=[At(), control])
    assert [(e["step"], e["name"], e["old"], e["new"]) for e in history.events] == [
        (2, "lr", 0.1, 0.05), (2, "momentum", 0.9, 0.5)]
    assert [r["lr"] for r in history.steps] == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_a_manual_lr_keeps_each_param_groups_ratio():
    model = mlp(dropout=0.2)
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
                           {"params": model[3].parameters(), "lr": 0.1}], lr=0.01)   # a head at 10x
    control = ParamControl()

    class At(Callback):
        def on_batch_end(self, state):
            if state.step == 2:
                control.set(lr=0.003)

    ftkit.fit(model, toy_loader(16), "cross_entropy", opt, 1, callbacks=[At(), control], progress=False)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.003, 0.03])


def test_early_stopping_restores_the_best_only_when_it_stopped_the_run_not_on_ctrl_c(tmp_path):
    from ftkit.train.callbacks import EarlyStopping

    class Vals(Callback):
        def on_epoch_end(self, state):
            state.logs["val_loss"] = {1: 0.5, 2: 0.9}.get(state.epoch, 1.0)

    class CtrlC(Callback):
        def on_batch_end(self, state):
            if state.step == 37:
                raise KeyboardInterrupt

    history, model = fit_toy(4, callbacks=[Vals(), EarlyStopping(patience=5), ModelCheckpoint(tmp_path), CtrlC()])
    assert history.stop_reason.startswith("interrupted at epoch 3")
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["step"] == 37   # the model keeps its last weights, those of last.pt (not epoch 1's best)
    assert torch.equal(weights(model), torch.cat([t.flatten() for t in saved["model"].values()]))
    straight, model_a = fit_toy(4, callbacks=[Vals(), EarlyStopping(patience=5, restore_best=False)])
    resumed, model_b = fit_toy(4, callbacks=[Vals(), EarlyStopping(patience=5, restore_best=False)],
                           resume_from=tmp_path / "last.pt")
    assert torch.allclose(weights(model_a), weights(model_b), atol=1e-6)


def test_early_stopping_stops_on_patience_and_restores_best(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    fake = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    kept = {}

    class FakeVal(Callback):
        def on_epoch_end(self, state):
            state.logs["val_loss"] = next(fake)
            if state.epoch == 2:
                kept.update({k: v.clone() for k, v in state.model.state_dict().items()})

    stopper = EarlyStopping(patience=2)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=6,
                        callbacks=[FakeVal(), stopper], progress=False)
    assert len(history) == 4 and "did not improve for 2 epochs (best 0.5 at epoch 2)" in history.stop_reason
    assert all(torch.equal(v, kept[k]) for k, v in model.state_dict().items())
    with pytest.raises(KeyError, match="pass val_loader= to fit"):
        ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1),
                  callbacks=[EarlyStopping("val_accuracy")], progress=False)


def test_param_control_sets_lr_at_next_step_and_overrides_the_scheduler(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    control = ParamControl()
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=2,
                        scheduler="cosine", callbacks=[At(4, lambda s: control.set(lr=0.0123)), control],
                        progress=False)
    lrs = [r["lr"] for r in history.steps]
    assert lrs[0] == pytest.approx(0.1) and lrs[3] < 0.1           # the cosine schedule drove steps 1-4
    assert all(lr == pytest.approx(0.0123) for lr in lrs[4:])      # from step 5 on the hand wins
    assert control.applied == [{"step": 4, "lr": 0.0123}]
    with pytest.raises(ValueError, match="lr must be finite, got nan"):
        control.set(lr=float("nan"))
    with pytest.raises(ValueError, match="lr must be >= 0, got -1"):
        control.set(lr=-1)
