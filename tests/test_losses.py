"""Losses: each from-scratch twin equals torch (float64, ≤ 1e-6), the textbook gradients hold, and bad input
fails with one message that says what to fix."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ftkit.losses import LOSSES, SCRATCH_LOSSES, l2_penalty, make_loss

N, C = 16, 5
TOL = 1e-6


def close(a: torch.Tensor, b: torch.Tensor | float) -> bool:
    return abs(float(torch.as_tensor(a).detach()) - float(torch.as_tensor(b).detach())) <= TOL


def logits_and_labels(shape=(N, C), seed=0):
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(*shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return z, y


def test_every_loss_has_a_twin():
    assert set(LOSSES) == set(SCRATCH_LOSSES)


def test_cross_entropy_by_hand():
    # p = softmax([0, ln 3]) = [1/4, 3/4]: label 1 costs -ln(3/4), label 0 costs -ln(1/4)
    z = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]], dtype=torch.float64)
    assert close(make_loss("cross_entropy")(z, torch.tensor([1, 0])), -(math.log(3 / 4) + math.log(1 / 4)) / 2)
    assert close(SCRATCH_LOSSES["cross_entropy"](z, torch.tensor([1, 0])),
                 -(math.log(3 / 4) + math.log(1 / 4)) / 2)


WEIGHT = [0.5, 2.0, 1.0, 3.0, 0.25]
CE_CASES = {
    "plain": {},
    "label_smoothing": {"label_smoothing": 0.1},
    "class_weights": {"weight": WEIGHT},
    "weights+smoothing": {"weight": WEIGHT, "label_smoothing": 0.2},
    "ignore_index": {"ignore_index": -100},
    "ignore_index=2+all": {"ignore_index": 2, "weight": WEIGHT, "label_smoothing": 0.3},
}


@pytest.mark.parametrize("shape", [(N, C), (4, C, 6)], ids=["NC", "NCL"])
@pytest.mark.parametrize("options", CE_CASES.values(), ids=CE_CASES.keys())
def test_cross_entropy_twin_equals_torch(options, shape):
    z, y = logits_and_labels(shape)
    if "ignore_index" in options:
        y.view(-1)[::3] = options["ignore_index"]  # every third label ignored
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    ours, twin = make_loss("cross_entropy", **options)(z1, y), SCRATCH_LOSSES["cross_entropy"](z2, y, **options)
    ref_options = {**options, "weight": torch.tensor(WEIGHT, dtype=torch.float64)} if "weight" in options else options
    assert close(ours, F.cross_entropy(z, y, **ref_options)) and close(ours, twin)
    ours.backward(), twin.backward()
    assert (z1.grad - z2.grad).abs().max() <= TOL


def test_cross_entropy_single_example_and_soft_labels():
    z, y = logits_and_labels()
    assert close(make_loss("cross_entropy")(z[0], y[0]), F.cross_entropy(z[:1], y[:1]))
    onehot = F.one_hot(y, C).double()
    assert close(make_loss("cross_entropy")(z, onehot), F.cross_entropy(z, y))  # one-hot = hard labels


def test_mse_nll_bce_twins_equal_torch():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(N, 3, generator=g, dtype=torch.float64), torch.randn(N, 3, generator=g, dtype=torch.float64)
    assert close(make_loss("mse")(a, b), SCRATCH_LOSSES["mse"](a, b)) and close(make_loss("mse")(a, b),
                                                                               F.mse_loss(a, b))
    z, y = logits_and_labels()
    logq = z.log_softmax(1)
    y[::4] = -100
    assert close(make_loss("nll")(logq, y), SCRATCH_LOSSES["nll"](logq, y))
    assert close(make_loss("nll")(logq, y), F.nll_loss(logq, y))
    p = torch.sigmoid(a)
    for target in ((b > 0).double(), torch.sigmoid(b)):  # hard 0/1 labels and soft labels in [0, 1]
        assert close(make_loss("bce")(p, target), SCRATCH_LOSSES["bce"](p, target))
        assert close(make_loss("bce")(p, target), F.binary_cross_entropy(p, target))
        assert close(make_loss("bce_with_logits")(a, target), SCRATCH_LOSSES["bce_with_logits"](a, target))
        assert close(make_loss("bce_with_logits")(a, target), make_loss("bce")(p, target))


def test_bce_with_logits_is_stable_where_sigmoid_saturates():
    z, y = torch.tensor([100.0, -100.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    # each example is wrong by a margin of 100, so each loss is log(1 + e^100) ≈ 100
    assert close(make_loss("bce_with_logits")(z, y), 100) and close(SCRATCH_LOSSES["bce_with_logits"](z, y), 100)
    assert make_loss("bce")(torch.sigmoid(z), y) == 100  # σ(100) rounds to 1: torch clamps log at -100


@pytest.mark.parametrize("loss", ["bce", "bce_with_logits"])
def test_bce_gradient_of_a_sigmoid_model_is_residual_times_input(loss):
    g = torch.Generator().manual_seed(2)
    X = torch.randn(32, 4, generator=g, dtype=torch.float64)
    y = (torch.rand(32, generator=g, dtype=torch.float64) > 0.5).double()
    w = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    z = X @ w
    make_loss(loss)(torch.sigmoid(z) if loss == "bce" else z, y).backward()
    p = torch.sigmoid(X @ w).detach()
    assert (w.grad - X.T @ (p - y) / len(y)).abs().max() <= 1e-12  # ∂L/∂w = Xᵀ(ŷ - y)/N
    assert (w.grad - X[0] * (p[0] - y[0])).abs().max() > 1e-3      # ...a mean, not one example's (ŷ - y)x


COMBINED = {"ce only": (1.0, 0.0, 0.0), "mse only": (0.0, 1.0, 0.0), "nll only": (0.0, 0.0, 1.0),
            "mix": (0.7, 2.0, 0.3)}


@pytest.mark.parametrize("ce_options", [{}, {"label_smoothing": 0.1, "ignore_index": -100}], ids=["plain", "smooth"])
@pytest.mark.parametrize("abc", COMBINED.values(), ids=COMBINED.keys())
def test_combined_is_weighted_sum_and_equals_twin(abc, ce_options):
    alpha, beta, gamma = abc
    z, y = logits_and_labels()
    if ce_options:
        y[::5] = -100
    keep = y != -100
    ours = make_loss("combined", alpha=alpha, beta=beta, gamma=gamma, **ce_options)(z, y)
    by_hand = (alpha * F.cross_entropy(z, y, **ce_options)
               + beta * ((z[keep].softmax(1) - F.one_hot(y[keep], C)) ** 2).mean()
               + gamma * F.nll_loss(z.log_softmax(1), y))
    assert close(ours, by_hand)
    assert close(ours, SCRATCH_LOSSES["combined"](z, y, alpha, beta, gamma, **ce_options))


def test_combined_nll_on_log_softmax_is_cross_entropy():
    z, y = logits_and_labels()
    assert close(make_loss("combined", alpha=0, gamma=1)(z, y), make_loss("cross_entropy")(z, y))
    assert close(make_loss("combined", alpha=1, gamma=1)(z, y), 2 * make_loss("cross_entropy")(z, y))


# --------------------------------------------------------------------------- L2 penalty and weight decay
def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)).double()


def test_l2_penalty_skips_biases_and_norm_weights():
    net, lam = small_net(), 0.3
    weights = [net[0].weight, net[2].weight]
    assert close(l2_penalty(net, lam), lam / 2 * sum((w ** 2).sum().item() for w in weights))
    everything = sum((p ** 2).sum().item() for p in net.parameters())
    assert close(l2_penalty(net, lam, skip_bias_and_norm=False), lam / 2 * everything)
    assert close(l2_penalty(net.parameters(), lam), lam / 2 * everything)  # a list is taken as given
    l2_penalty(net, lam).backward()
    assert torch.equal(net[0].weight.grad, lam * net[0].weight)  # ∇(λ/2‖θ‖²) = λθ
    assert net[0].bias.grad is None and net[1].weight.grad is None


def test_sgd_weight_decay_is_the_l2_gradient_step():
    lr, lam = 0.1, 0.05
    X = torch.randn(8, 3, dtype=torch.float64)
    nets = [small_net() for _ in range(3)]
    before = [p.detach().clone() for p in nets[0].parameters()]
    grads = torch.autograd.grad(nets[0](X).pow(2).mean(), list(nets[0].parameters()))
    # torch.optim.SGD(weight_decay=λ) ...
    opt = torch.optim.SGD(nets[1].parameters(), lr=lr, weight_decay=lam)
    nets[1](X).pow(2).mean().backward()
    opt.step()
    # ... equals plain SGD on L + λ/2‖θ‖² over every parameter ...
    opt = torch.optim.SGD(nets[2].parameters(), lr=lr)
    (nets[2](X).pow(2).mean() + l2_penalty(nets[2], lam, skip_bias_and_norm=False)).backward()
    opt.step()
    # ... equals θ ← θ - η∇L - ηλθ
    for theta, g, p1, p2 in zip(before, grads, nets[1].parameters(), nets[2].parameters()):
        expected = theta - lr * g - lr * lam * theta
        assert (p1 - expected).abs().max() <= 1e-12 and (p2 - expected).abs().max() <= 1e-12


# --------------------------------------------------------------------------- bad input
def test_unknown_loss_lists_the_choices():
    with pytest.raises(ValueError, match="unknown loss 'crossentropy'; choose one of: bce, bce_with_logits, "
                                         "combined, cross_entropy, mse, nll"):
        make_loss("crossentropy")
    assert isinstance(make_loss("Cross-Entropy"), nn.CrossEntropyLoss)  # case and dashes forgiven
    with pytest.raises(TypeError, match="loss name or a callable, got int"):
        make_loss(3)


@pytest.mark.parametrize("options, message", [
    ({"alpha": -1.0}, r"alpha must be >= 0, got -1.0"),
    ({"beta": float("nan")}, r"beta must be finite, got nan"),
    ({"gamma": float("inf")}, r"gamma must be finite, got inf"),
    ({"alpha": 0, "beta": 0, "gamma": 0}, r"at least one of alpha, beta, gamma > 0"),
    ({"weight": [1.0, -2.0, 1.0, 1.0, 1.0]}, r"weight \(class weights\) must be .* >= 0, one per class"),
    ({"weight": [1.0, float("nan"), 1.0, 1.0, 1.0]}, r"weight \(class weights\) must be .*finite"),
    ({"label_smoothing": -0.1}, r"label_smoothing must be >= 0"),
    ({"label_smoothing": 1.5}, r"label_smoothing must be in \[0, 1\], got 1.5"),
])
def test_bad_loss_options_name_the_argument(options, message):
    name = "combined" if {"alpha", "beta", "gamma"} & set(options) else "cross_entropy"
    with pytest.raises(ValueError, match=message):
        make_loss(name, **options)


def test_l2_penalty_bad_lambda_and_no_parameters():
    with pytest.raises(ValueError, match="lam must be >= 0, got -0.1"):
        l2_penalty(small_net(), -0.1)
    with pytest.raises(ValueError, match="lam must be finite, got inf"):
        l2_penalty(small_net(), float("inf"))
    with pytest.raises(ValueError, match="l2_penalty got no parameters to penalize"):
        l2_penalty([], 0.1)
    with pytest.raises(ValueError, match="skip_bias_and_norm=False"):
        l2_penalty(nn.LayerNorm(4), 0.1)  # only norm weights: nothing decays by default


def test_cross_entropy_label_errors_say_which_and_how_to_fix():
    z, y = logits_and_labels()
    ce = make_loss("cross_entropy")
    with pytest.raises(TypeError, match=r"expects integer class labels \(torch.long\), got torch.float32 .*"
                                        r"targets.long\(\)"):
        ce(z, y.float())
    y[3] = C
    with pytest.raises(ValueError, match=r"label 5 is outside \[0, 4\] for a model with 5 outputs; give the model's "
                                         r"last layer as many outputs as there are classes, or remap the labels"):
        ce(z, y)
    y[3] = -1
    with pytest.raises(ValueError, match=r"label -1 is outside \[0, 4\]"):
        ce(z, y)
    with pytest.raises(ValueError, match=r"input of shape \(16, 5\) \(N, C, ...\) needs targets of shape \(16,\), "
                                         r"got \(16, 1\)"):
        ce(z, y.clamp_min(0).unsqueeze(1))
    with pytest.raises(ValueError, match=r"combined: label 7 is outside"):
        make_loss("combined", beta=1)(z, torch.full((N,), 7))


def test_bce_range_errors_suggest_the_fix():
    z = torch.tensor([-2.0, 0.5, 3.0])
    with pytest.raises(ValueError, match=r"bce: predictions must lie in \[0, 1\], got values in \[-2, 3\]; these "
                                         r"look like logits: use make_loss\('bce_with_logits'\)"):
        make_loss("bce")(z, torch.tensor([0.0, 1.0, 1.0]))
    labels = torch.tensor([1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\], got values in \[1, 4\]; binary labels are "
                                         r"0/1; for labels such as \{1, 2, 3, 4\} use cross_entropy"):
        make_loss("bce")(torch.sigmoid(z), labels)
    with pytest.raises(ValueError, match=r"bce_with_logits: targets must lie in \[0, 1\].*use cross_entropy"):
        make_loss("bce_with_logits")(z, labels)
    with pytest.raises(ValueError, match=r"prediction shape \(3, 1\) differs from target shape \(3,\); reshape"):
        make_loss("mse")(z.unsqueeze(1), z)


def test_nll_on_logits_says_apply_log_softmax():
    z, y = logits_and_labels()
    with pytest.raises(ValueError, match=r"nll expects log-probabilities \(<= 0\).*apply torch.log_softmax"):
        make_loss("nll")(z, y)
