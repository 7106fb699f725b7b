"""``ftkit.lr_find``: an exponential lr ramp on the real model that leaves model, optimizer and RNG as they were,
a suggestion that trains well, the figure, and one clear error per bad input."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ftkit
from ftkit.data import synthetic
from ftkit.plots import lr_find_figure


@pytest.fixture
def setup():
    train = synthetic.make_loaders(*synthetic.blobs(n=640, num_classes=3, spread=0.7), batch_size=32)[0]  # 16 batches
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    return model, train, ftkit.make_optimizer("adam", model, lr=1e-3)


def test_lr_find_ramps_exponentially_restores_everything_and_suggests_an_lr_that_learns(setup):
    model, train, opt = setup
    ftkit.fit(model, train, "cross_entropy", opt, 1, progress=False)        # an optimizer with state to keep
    weights, opt_state = {k: v.clone() for k, v in model.state_dict().items()}, str(opt.state_dict())
    rng = torch.get_rng_state()
    result = ftkit.lr_find(model, train, "cross_entropy", opt, start_lr=1e-5, end_lr=10, num_steps=60)
    n = len(result.lrs)
    assert 10 < n <= 60 and result.lrs[0] == pytest.approx(1e-5)
    ratio = (10 / 1e-5) ** (1 / 59)                                        # η_i = η_start (η_end/η_start)^(i/(n-1))
    assert [b / a for a, b in zip(result.lrs, result.lrs[1:])] == pytest.approx([ratio] * (n - 1))
    beta, avg = 0.98, 0.0                                                  # the debiased EMA of the raw losses
    for i, x in enumerate(result.raw_losses, 1):
        avg = beta * avg + (1 - beta) * x
    assert result.losses[-1] == pytest.approx(avg / (1 - beta ** n))
    assert result.stopped_early == (n < 60)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())   # the model is restored
    assert str(opt.state_dict()) == opt_state and opt.param_groups[0]["lr"] == 1e-3
    assert torch.equal(torch.get_rng_state(), rng)
    assert 1e-5 < result.suggestion < result.lrs[min(range(n), key=result.losses.__getitem__)]
    assert result.suggestions["minimum/10"] == pytest.approx(min(zip(result.losses, result.lrs))[1] / 10)

    fresh = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))   # the suggestion trains well
    history = ftkit.fit(fresh, train, "cross_entropy", ftkit.make_optimizer("adam", fresh, lr=result.suggestion), 2,
                        metrics=["accuracy"], progress=False)
    assert history["train_accuracy"][-1] > 0.8                             # chance is 1/3

    fig = lr_find_figure(result)
    [marks] = [t for t in fig.data if t.name.startswith("suggested lr")]
    assert list(marks.x) == [result.suggestion] and fig.layout.xaxis.type == "log"
    assert f"suggested lr {result.suggestion:.2g}" in fig.layout.title.text and marks.name in fig.layout.title.text


def test_lr_find_bad_input_fails_before_touching_the_model(setup):
    model, train, opt = setup
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"lr_find got an empty train_loader \(0 batches\)"):
        ftkit.lr_find(model, [], "cross_entropy", opt)
    with pytest.raises(ValueError, match=r"lr_find needs start_lr < end_lr \(an increasing ramp\), got "
                                         r"start_lr=1, end_lr=0.001"):
        ftkit.lr_find(model, train, "cross_entropy", opt, start_lr=1, end_lr=1e-3)
    with pytest.raises(ValueError, match="start_lr must be > 0, got 0"):
        ftkit.lr_find(model, train, "cross_entropy", opt, start_lr=0)
    with pytest.raises(TypeError, match="lr_find needs the optimizer object you will train with"):
        ftkit.lr_find(model, train, "cross_entropy", "adam")
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert math.isclose(opt.param_groups[0]["lr"], 1e-3)
