"""Replaying a run steered by hand: ``fit(..., replay=history)`` and the code of ``history.events_as_schedule()``
reproduce its losses exactly on CPU; a replay into a different optimizer layout fails before any step."""
from __future__ import annotations

import pytest
import torch

import ftkit
from ftkit.train.callbacks import Callback, ParamControl
from ftkit.data import synthetic
from ftkit.train.replay import Replay, schedule_from_events
from conftest import mlp


class SetAt(Callback):
    """``control.set(**values)`` at the end of batch ``n`` (from 1): what a slider move mid-training does."""

    def __init__(self, control, moves):
        self.control, self.moves, self.seen = control, dict(moves), 0

    def on_batch_end(self, state):
        self.seen += 1
        if self.seen in self.moves:
            self.control.set(**self.moves[self.seen])


def run(replay=None, callbacks=(), param_groups=1):
    ftkit.seed_everything(0)
    train = synthetic.make_loaders(*synthetic.blobs(n=400, num_classes=3, spread=0.8), batch_size=32)[0]  # 10 batches
    model = mlp(2, 16, 3)
    params = list(model.parameters())
    groups = [{"params": params}] if param_groups == 1 else [{"params": params[:2]}, {"params": params[2:]}]
    optimizer = torch.optim.SGD(groups, lr=0.2, momentum=0.9)
    history = ftkit.fit(model, train, "cross_entropy", optimizer, 3, scheduler="cosine", replay=replay,
                        callbacks=list(callbacks), progress=False)
    return history, model


def test_two_manual_lr_changes_replay_to_identical_losses():
    control = ParamControl(source="slider")
    steered, _ = run(callbacks=[SetAt(control, {7: {"lr": 0.05}, 18: {"lr": 0.01, "momentum": 0.5}}), control])
    assert [(e["step"], e["name"], e["new"], e["source"]) for e in steered.events] == [
        (7, "lr", 0.05, "slider"), (18, "lr", 0.01, "slider"), (18, "momentum", 0.5, "slider")]
    assert steered.events[0]["old"] == pytest.approx(0.2 * (1 + torch.cos(torch.tensor(7 / 30 * torch.pi))) / 2)
    plain, _ = run()
    lrs = [r["lr"] for r in steered.steps]
    assert lrs[7:18] == [0.05] * 11 and lrs[18:] == [0.01] * 12           # the hand wins over the cosine
    assert [r["lr"] for r in plain.steps][7] < 0.2                        # (which the plain run follows)

    replayed, _ = run(replay=steered)
    losses = [r["loss"] for r in steered.steps]
    assert [r["loss"] for r in replayed.steps] == pytest.approx(losses, abs=1e-6, rel=0)
    assert [r["lr"] for r in replayed.steps] == lrs
    assert [(e["step"], e["name"], e["new"], e["source"]) for e in replayed.events] == [
        (7, "lr", 0.05, "replay"), (18, "lr", 0.01, "replay"), (18, "momentum", 0.5, "replay")]
    assert [r["loss"] for r in plain.steps] != pytest.approx(losses, abs=1e-6)   # the changes mattered

    code = steered.events_as_schedule()
    assert "Replay({7: {'lr': 0.05}, 18: {'lr': 0.01, 'momentum': 0.5}}, param_groups=1)" in code
    scope: dict = {}
    exec(code, scope)
    from_code, _ = run(callbacks=[scope["replay"]])
    assert [r["loss"] for r in from_code.steps] == pytest.approx(losses, abs=1e-6, rel=0)

    restored = ftkit.History.from_json(steered.to_json())                # a saved history replays too
    again, _ = run(replay=restored)
    assert [r["loss"] for r in again.steps] == pytest.approx(losses, abs=1e-6, rel=0)


def test_replay_into_another_optimizer_layout_fails_before_any_step():
    control = ParamControl()
    steered, _ = run(callbacks=[SetAt(control, {3: {"lr": 0.05}}), control])
    ftkit.seed_everything(0)
    before = [p.detach().clone() for p in mlp(2, 16, 3).parameters()]
    with pytest.raises(ValueError, match=r"the replayed run's optimizer had 1 param group\(s\), this one has 2: "
                                         r"its changes would not land on the same parameters"):
        run(replay=steered, param_groups=2)
    ftkit.seed_everything(0)
    model = mlp(2, 16, 3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match=r"set \['betas'\], which this optimizer \(SGD\) does not have"):
        run(replay={2: {"betas": (0.9, 0.99)}})
    with pytest.raises(TypeError, match="replay takes a History, its .events or a"):
        Replay(3.0)
    assert schedule_from_events(steered.events) == {3: {"lr": 0.05}}
