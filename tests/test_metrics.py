"""ftkit.metrics: accuracy, top-k and the tracker against hand counts, ignored labels, bad targets."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import ftkit
from ftkit.metrics import top_k

from conftest import mlp, toy_loader


# --------------------------------------------------------------------------- metrics
def test_top_k_skips_ignored_labels_like_accuracy():
    outputs = torch.tensor([[3.0, 2.0, 1.0, 0.0]] * 4)
    targets = torch.tensor([0, 3, -100, -100])
    hits, count = top_k(2)(outputs, targets)
    assert (int(hits), int(count)) == (1, 2)  # the two -100 rows count neither as hits nor in the total
    acc_hits, acc_count = ftkit.metrics.accuracy(outputs, targets)
    assert int(count) == int(acc_count)


# --------------------------------------------------------------------------- 7, 8: metrics and batch shapes
def test_accuracy_with_one_hot_soft_and_single_logit_targets():
    from ftkit.metrics import accuracy
    out = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 2.0, 0.0], [0.0, 2.0, 1.0]])
    one_hot = nn.functional.one_hot(torch.tensor([0, 0, 1, 2]), 3).float()
    assert [int(v) for v in accuracy(out, one_hot)] == [2, 4]
    soft = one_hot * 0.8 + 0.2 / 3
    assert [int(v) for v in accuracy(out, soft)] == [2, 4]
    logits = torch.tensor([[1.5], [-0.5], [0.3], [-2.0]])
    assert [int(v) for v in accuracy(logits, torch.tensor([1, 0, 0, 1]))] == [2, 4]
    assert [int(v) for v in accuracy(logits, torch.tensor([[1.0], [0.0], [0.0], [1.0]]))] == [2, 4]
    with pytest.raises(ValueError, match="top5 accuracy needs at least 5 classes, but the model outputs 3"):
        ftkit.evaluate(mlp(dropout=0.2), toy_loader(16), "cross_entropy", ["top5"])


def test_metrics_accuracy_and_top_k_against_hand_counts():
    from ftkit.metrics import MetricTracker, accuracy, top_k
    out = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 2.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 1, 1, -100])
    correct, count = accuracy(out, y)
    assert (int(correct), int(count)) == (2, 3)
    top2, n = top_k(2)(out, torch.tensor([2, 1, 0, 0]))
    assert (int(top2), int(n)) == (2, 4)   # rows 2 and 3 have their label in the top 2
    tracker = MetricTracker(["accuracy"])
    tracker.update(out[:2], y[:2])
    tracker.update(out[2:], y[2:])
    assert tracker.compute("val_") == {"val_accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="unknown metric 'f1'; choose one of: acc, accuracy"):
        MetricTracker(["f1"])


def test_accuracy_reads_classes_from_the_right_axis_for_sequences_and_images():
    from ftkit.metrics import accuracy
    tokens = torch.zeros(1, 4, 3)                       # (B, T, C) token logits, as HF returns them
    tokens[0, torch.arange(4), torch.tensor([2, 0, 1, 1])] = 1
    correct, count = accuracy(tokens, torch.tensor([[2, 0, 0, -100]]))
    assert (int(correct), int(count)) == (2, 3)
    pixels = tokens.permute(0, 2, 1).unsqueeze(-1)      # (N, C, H, W) with (N, H, W) labels
    correct, count = accuracy(pixels, torch.tensor([[[2], [0], [0], [1]]]))
    assert (int(correct), int(count)) == (3, 4)
