"""ftkit.schedules: cosine with warmup, ReduceLROnPlateau stepped on the monitored value at epoch end, and schedules
given to ``fit`` as ``(name, options)`` pairs (re-timed on a resume with another batch size)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.core import Callback
from ftkit.optim import make_optimizer
from ftkit.schedules import make_scheduler
from ftkit.train.callbacks import ModelCheckpoint
from conftest import X, Y, mlp



def lrs(name, steps=10, **options):
    p = nn.Parameter(torch.zeros(1))
    opt = make_optimizer("sgd", [p], lr=1.0)
    sched = make_scheduler(name, opt, **options)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_warmup_follows_its_formula():
    # W = 2 of T = 10: (s+1)/2, then f + (1-f)(1 + cos(π(s-2)/8))/2 with f = 0.1, reaching 0.1 at s = 10
    values = lrs("cosine_warmup", steps=12, total_steps=10, warmup_ratio=0.2, final_factor=0.1)
    want = [0.5, 1.0] + [0.1 + 0.9 * (1 + math.cos(math.pi * (s - 2) / 8)) / 2 for s in range(2, 12)]
    want[10:] = [0.1, 0.1]   # stays at f after T
    assert values == pytest.approx(want)
    assert lrs("cosine_warmup", steps=4, total_steps=4) == pytest.approx(
        [(1 + math.cos(math.pi * s / 4)) / 2 for s in range(4)])   # no warmup: a plain cosine to 0


def test_schedule_options_are_checked_with_a_suggestion():
    with pytest.raises(ValueError, match=r"scheduler 'cosine_warmup' has an unknown option 'warmup_ratoi': did you "
                                         r"mean 'warmup_ratio'\?"):
        make_scheduler("cosine_warmup", make_optimizer("sgd", [nn.Parameter(torch.zeros(1))]), total_steps=10,
                       warmup_ratoi=0.1)
    with pytest.raises(ValueError, match=r"unknown scheduler 'cosin_warmup'; choose one of: .*; did you mean "
                                         r"'cosine_warmup'\?"):
        make_scheduler("cosin_warmup", make_optimizer("sgd", [nn.Parameter(torch.zeros(1))]), total_steps=10)
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\)"):
        make_scheduler("reduce_on_plateau", make_optimizer("sgd", [nn.Parameter(torch.zeros(1))]), factor=2)


def run(epochs, *, batch_size=4, scheduler=None, lr=0.1, resume_from=None, callbacks=(), val=False, **kw):
    ftkit.seed_everything(1)
    model = mlp()
    data = DataLoader(TensorDataset(X, Y), batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(TensorDataset(X[:16], Y[:16]), batch_size=8) if val else None
    return ftkit.fit(model, data, "cross_entropy", make_optimizer("sgd", model, lr=lr), epochs, scheduler=scheduler,
                     val_loader=val_loader, resume_from=resume_from, callbacks=callbacks, progress=False,
                     device="cpu", **kw)


def test_fit_takes_a_schedule_with_its_options_and_counts_the_steps():
    history = run(2, scheduler=("linear_warmup", {"warmup_ratio": 0.25}))   # 32 steps: W = 8
    got = [r["lr"] for r in history.steps]
    want = [0.1 * (s + 1) / 8 for s in range(8)] + [0.1 * (1 - (s - 8) / 24) for s in range(8, 32)]
    assert got == pytest.approx(want)
    with pytest.raises(ValueError, match="fit counts total_steps itself"):
        run(1, scheduler=("cosine", {"total_steps": 5}))
    with pytest.raises(ValueError, match=r"has an unknown option 'warmup_ration': did you mean 'warmup_ratio'\?.*"
                                         r"fit fills in total_steps"):
        run(1, scheduler=("cosine_warmup", {"warmup_ration": 0.1}))


def test_a_schedule_pair_is_re_timed_on_a_resume_with_another_batch_size(tmp_path):
    class StopAt(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 2:
                state.stop = True

    schedule = ("cosine_warmup", {"warmup_ratio": 0.1, "final_factor": 0.05})
    run(4, scheduler=schedule, callbacks=[ModelCheckpoint(tmp_path), StopAt()])       # 32 of 64 steps of 4
    straight = run(4, batch_size=16, scheduler=schedule)                                # 16 steps of 16
    resumed = run(4, batch_size=16, scheduler=schedule, resume_from=tmp_path / "last.pt")
    after = [r["lr"] for r in resumed.steps if r["step"] > 32]
    assert len(after) == 8 and after == pytest.approx([r["lr"] for r in straight.steps[8:]], rel=1e-9)


class Spy(Callback):
    """Records val_loss and the lr in force for the next epoch, after LRSchedule's on_epoch_end."""

    def __init__(self):
        self.rows = []

    def on_epoch_end(self, state):
        self.rows.append((state.logs["val_loss"], state.optimizer.param_groups[0]["lr"]))


def test_reduce_on_plateau_steps_on_the_monitored_value_at_epoch_end():
    spy = Spy()
    # lr 1e-4: the loss barely moves, so with threshold 0.5 (rel) no epoch counts as better than the first
    history = run(4, lr=1e-4, val=True, callbacks=[spy],
                  scheduler=("reduce_on_plateau", {"patience": 1, "factor": 0.5, "threshold": 0.5}))
    # epoch 1 sets the best; epoch 2 is bad epoch 1 (≤ patience); epoch 3 is bad epoch 2 → lr × 0.5; then cooldown 0,
    # epoch 4 bad epoch 1 again
    assert [lr for _, lr in spy.rows] == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5])
    # within an epoch the lr does not move (no per-step stepping)
    assert len({r["lr"] for r in history.steps if r["epoch"] == 3}) == 1
    # the same torch object given directly is stepped the same way (it raised a TypeError inside fit before)
    spy2 = Spy()
    ftkit.seed_everything(1)
    model = mlp()
    opt = make_optimizer("sgd", model, lr=1e-4)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5, threshold=0.5)
    ftkit.fit(model, DataLoader(TensorDataset(X, Y), batch_size=4, shuffle=True), "cross_entropy", opt, 4,
              scheduler=sched, val_loader=DataLoader(TensorDataset(X[:16], Y[:16]), batch_size=8),
              callbacks=[spy2], progress=False, device="cpu")
    assert [x for row in spy2.rows for x in row] == pytest.approx([x for row in spy.rows for x in row])


def test_reduce_on_plateau_refuses_a_monitor_the_logs_will_not_have():
    with pytest.raises(KeyError, match=r"reduce_on_plateau monitors 'val_los'.*did you mean 'val_loss'\?"):
        run(1, val=True, scheduler=("reduce_on_plateau", {"monitor": "val_los"}))
    with pytest.raises(KeyError, match=r"monitors 'val_accuracy'.*pass val_loader= to fit or monitor 'train_loss'"):
        run(1, scheduler=("reduce_on_plateau", {"monitor": "val_accuracy", "mode": "max"}))
