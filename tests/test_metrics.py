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


def test_torchmetrics_states_of_two_processes_merge_into_the_whole_split_value(torchmetrics):
    """What a multi-process checkpoint saves: each process's F1 / AUROC state merged is the state of one process
    that saw every batch (sums added, predictions joined); a metric torchmetrics cannot merge is named."""
    from ftkit.metrics import MetricTracker
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(40, 3, generator=g), torch.randint(0, 3, (40,), generator=g)
    metrics = [torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro"),
               torchmetrics.AUROC(task="multiclass", num_classes=3)]
    ranks = [MetricTracker(metrics), MetricTracker(metrics)]
    for i in range(0, 40, 8):
        ranks[(i // 8) % 2].update(logits[i:i + 8], y[i:i + 8])
    merged, why = ranks[0].merged_states([r.state()["stateful"] for r in ranks])
    assert why is None
    resumed = MetricTracker(metrics)
    resumed.load_state({"stateful": merged})
    got = resumed.compute()
    assert got["multiclass_f1_score"] == pytest.approx(torchmetrics.functional.f1_score(
        logits, y, task="multiclass", num_classes=3, average="macro").item(), abs=1e-6)
    assert got["multiclass_auroc"] == pytest.approx(torchmetrics.functional.auroc(
        logits, y, task="multiclass", num_classes=3).item(), abs=1e-6)
    pearson = MetricTracker([torchmetrics.PearsonCorrCoef()])
    pearson.update(logits[:, 0], y.float())
    merged, why = pearson.merged_states([pearson.state()["stateful"]] * 2)
    assert merged is None and why.startswith("pearson_corr_coef (PearsonCorrCoef): ``merge_state`` is not supported")
