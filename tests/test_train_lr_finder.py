"""``ftkit.lr_find``: an exponential lr ramp on the real model that leaves model, optimizer and RNG as they were,
a suggestion that trains well, the figure, and one clear error per bad input."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.data import synthetic
from ftkit.plots import lr_find_figure
from ftkit.plots.style import figure_problems


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


def _loader(x, y, batch_size):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def _train(make, loader, loss, optimizer, lr, steps, x, y, loss_fn):
    model = make()
    ftkit.seed_everything(0)
    ftkit.fit(model, loader, loss, ftkit.make_optimizer(optimizer, model, lr=lr), max_steps=steps, progress=False)
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y))


def _check(make, loader, loss, optimizer, sweep, steps, x, y, loss_fn, share=0.95, **find):
    """(result, the suggested lr's loss, the sweep's losses); the margin: training ``steps`` at the suggested lr
    removes at least ``share`` of the loss that the best lr of the sweep removes in the same steps."""
    model = make()
    result = ftkit.lr_find(model, loader, loss, ftkit.make_optimizer(optimizer, model, lr=sweep[0]), **find)
    assert result.suggestion is not None, result.advice()
    assert result.valley[0] < result.suggestion < result.valley[1]
    losses = {lr: _train(make, loader, loss, optimizer, lr, steps, x, y, loss_fn) for lr in sweep}
    best = min(losses.values())
    mine = _train(make, loader, loss, optimizer, result.suggestion, steps, x, y, loss_fn)
    init = make()
    init.eval()
    with torch.no_grad():
        first = float(loss_fn(init(x), y))
    assert first - best > 0.1 * abs(first)                                   # the sweep learns something …
    assert first - mine >= share * (first - best), (result, first, losses, mine)   # … and so does the suggestion
    assert figure_problems(lr_find_figure(result)) == []
    return result, mine, losses


@pytest.mark.parametrize("seed", [0, 2, 6])   # 2 and 6: where the valley's middle alone gave 0.024 and 0.001
def test_sgd_linear_regression_standardized_features(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1024, 8, generator=g) * torch.tensor([1, 2, 5, 10, 0.5, 3, 1, 7.0]) + 3
    x = (x - x.mean(0)) / x.std(0)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(1024, 1, generator=g)    # noise floor: MSE 0.01

    def make():
        torch.manual_seed(0)
        return nn.Linear(8, 1)
    # lrs of 1e-2 – 1e-1 train it (the issue: the old steepest-point rule suggested 7.7e-7 – 8.7e-6)
    result, mine, losses = _check(make, _loader(x, y, 32), "mse", "sgd", [1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0], 64,
                                  x, y, nn.functional.mse_loss, share=0.99, start_lr=1e-7, end_lr=10, num_steps=100)
    assert 1e-2 <= result.suggestion <= 0.5 and mine < 0.1 * losses[1e-2]   # far better than the sweep's 1e-2


def test_adam_cifar_cnn_on_synthetic_images():
    from ftkit.models import SimpleCNN
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (192,), generator=g)
    x = torch.randn(4, 3, 32, 32, generator=g)[labels] + 0.5 * torch.randn(192, 3, 32, 32, generator=g)

    def make():
        torch.manual_seed(0)
        return SimpleCNN(num_classes=4)
    _check(make, _loader(x, labels, 16), "cross_entropy", "adam", [1e-4, 1e-3, 1e-2], 15, x, labels,
           nn.functional.cross_entropy, start_lr=1e-4, end_lr=1, num_steps=30)


def test_adamw_fine_tunes_a_small_bert(tmp_path):
    """A pre-trained-style checkpoint (a small BERT encoder saved and reloaded; the classification head starts
    random, as in any fine-tune) learns a class written in the first token."""
    from transformers import BertConfig, BertModel, BertForSequenceClassification
    from transformers.utils import logging as hf_logging
    config = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()          # the load report names the new head: expected here
    try:
        pretrained = BertForSequenceClassification.from_pretrained(tmp_path / "bert", num_labels=2)
    finally:
        hf_logging.set_verbosity(verbosity)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(6, 300, (256, 8), generator=g)
    labels = torch.randint(0, 2, (256,), generator=g)
    ids[:, 0] = 4 + labels                    # the class is the first token (where the classifier reads)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = copy.deepcopy(pretrained)     # the same "pre-trained" weights and head every time

        def forward(self, input_ids):
            return self.bert(input_ids=input_ids).logits

    _check(Classifier, _loader(ids, labels, 16), "cross_entropy", "adamw", [1e-4, 1e-3, 1e-2], 20, ids,
           labels, nn.functional.cross_entropy, start_lr=1e-5, end_lr=1, num_steps=40)


def test_a_curve_that_never_falls_gets_no_suggestion_and_a_message():
    from ftkit.train.lr_finder import _suggest
    lrs = [1e-6 * 1.2 ** i for i in range(60)]
    rising = [1.0 + 0.01 * i for i in range(60)]
    s, named, valley, message = _suggest(lrs, rising, rising, 0.98)
    assert s is None and named == {} and valley is None and message.startswith("no suggestion: the loss never fell")
    g = torch.Generator().manual_seed(0)
    flat = (1.0 + 0.05 * torch.randn(60, generator=g)).tolist()              # noise only: nothing to suggest
    assert _suggest(lrs, ftkit.metrics.ema(flat, 0.98), flat, 0.98)[0] is None


def test_a_noisy_flat_start_does_not_fool_it():
    from ftkit.train.lr_finder import _suggest
    g = torch.Generator().manual_seed(1)
    lrs = [1e-6 * (1e7) ** (i / 99) for i in range(100)]                     # 1e-6 → 10
    clean = [2.0 if lr < 1e-3 else max(2.0 - 0.6 * (torch.tensor(lr / 1e-3).log10().item()), 0.3)
             for lr in lrs if lr < 2]                                        # flat, falls from 1e-3, floor at 0.7
    clean += [0.3 * 3 ** k for k in range(1, 100 - len(clean) + 1)]          # then blows up
    clean = clean[:100]
    raw = [c + 0.15 * float(torch.randn(1, generator=g)) for c in clean]
    s = _suggest(lrs, ftkit.metrics.ema(raw, 0.98), raw, 0.98)[0]
    assert 3e-3 < s < 0.2                                                    # inside the valley, not in the noise
