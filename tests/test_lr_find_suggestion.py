"""``lr_find``'s suggestion is an lr a beginner can train with: on three problems (SGD on a linear regression with
standardized features, Adam on the CIFAR CNN with synthetic images, AdamW fine-tuning a small BERT), training a
fixed number of steps at the suggested lr removes at least 95 % (99 % for the regression) of the loss that the best
lr of a short sweep removes in the same steps; a curve that
never falls gives no suggestion and says so; a noisy flat start does not fool it."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.plots.style import figure_problems
from ftkit.plots.training import lr_find_figure


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
