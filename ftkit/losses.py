r"""Losses: a string-keyed factory and a from-scratch twin of every formula.

Notation: a batch of N examples, C classes, logits :math:`z`, probabilities :math:`p=\mathrm{softmax}(z)`,
integer labels :math:`y`, one-hot labels :math:`Y`.

* MSE            :math:`\frac1N\sum_i (\hat y_i - y_i)^2` (mean over every element).
* Cross-entropy  :math:`-\frac1N\sum_i \log p_{i,y_i}`, i.e. :math:`-\sum_c Y_c \log p_c`.
  The *label* multiplies the *log of the prediction*. Articles that write :math:`-\sum_c p_c \log Y_c`
  have prediction and label swapped: :math:`\log 0 = -\infty` for every wrong class, so that version
  is not even finite.
  With label smoothing ε the target becomes :math:`q = (1-ε)Y + ε/C`; with class weights :math:`w` too,
  :math:`\ell_i = -\sum_c w_c q_{i,c}\log p_{i,c}` and the mean is :math:`\sum_i \ell_i / \sum_i w_{y_i}`
  (as ``torch.nn.functional.cross_entropy``; rows whose label is ``ignore_index`` leave both sums).
* BCE            :math:`-\frac1N\sum_i [y_i\log p_i + (1-y_i)\log(1-p_i)]` on probabilities
  :math:`p\in[0,1]` and labels :math:`y\in\{0,1\}` (or soft labels in [0, 1]). Labels such as
  {1,2,3,4} make it meaningless: that is a multi-class problem, use cross-entropy.
  For a sigmoid model :math:`p=\sigma(w^\top x)` one example's gradient is :math:`\partial \ell/\partial w = (p-y)x`,
  the batch mean's is :math:`X^\top(p-y)/N`.
* BCE with logits :math:`\max(z,0) - zy + \log(1+e^{-|z|})`: the same loss, computed stably from logits.
* NLL            :math:`-\frac1N\sum_i \log q_{i,y_i}` on log-probabilities :math:`\log q` (log-likelihood).
* combined       :math:`α\,\mathrm{CE}(z,y) + β\,\mathrm{MSE}(\mathrm{softmax}(z), Y) + γ\,\mathrm{NLL}(\mathrm{log\_softmax}(z), y)`
  from one set of logits. Our choice: MSE compares the softmax *probabilities* with the one-hot labels
  (mean over the N·C entries: the Brier score :math:`\sum_c (p_c - Y_c)^2 \in [0, 2]` divided by C), and NLL is taken on ``log_softmax`` so all three terms read the same
  logits. NLL on log-softmax equals CE without smoothing/weights, so γ adds to α there; with label smoothing or
  class weights on CE the two differ.
* L2 penalty     :math:`\frac λ2 \sum_j θ_j^2` over weights (biases and norm-layer weights skipped by
  default). Its gradient is :math:`λθ`, so one SGD step reads :math:`θ ← θ - η∇L - ηλθ`.

Every loss validates its inputs and fails with one message saying what was wrong and how to fix it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .utils import check_number, choose

__all__ = ["LOSSES", "SCRATCH_LOSSES", "make_loss", "l2_penalty", "CrossEntropyLoss", "BCELoss",
           "BCEWithLogitsLoss", "NLLLoss", "MSELoss", "CombinedLoss"]


# --------------------------------------------------------------------------- input checks
def _check_class_targets(input: torch.Tensor, target: torch.Tensor, ignore_index: int, what: str) -> None:
    """Integer class labels in [0, C) (or ignore_index), shaped like ``input`` minus the class dim."""
    if target.is_floating_point():
        raise TypeError(
            f"{what} expects integer class labels (torch.long), got {target.dtype} targets of shape "
            f"{tuple(target.shape)}; convert them with targets.long(), or, for one-hot/soft labels, pass "
            f"float targets with the same shape as the {tuple(input.shape)} input")
    expected = input.shape[:1] + input.shape[2:] if input.dim() > 1 else torch.Size()  # (C,) input: one label
    if input.dim() < 1 or target.shape != expected:
        raise ValueError(
            f"{what}: input of shape {tuple(input.shape)} (N, C, ...) needs targets of shape "
            f"{tuple(expected)}, got {tuple(target.shape)}")
    n_classes = input.shape[1] if input.dim() > 1 else input.shape[0]
    valid = target[target != ignore_index]
    if valid.numel():
        lo, hi = int(valid.min()), int(valid.max())
        if hi >= n_classes or lo < 0:
            bad = hi if hi >= n_classes else lo
            raise ValueError(
                f"{what}: label {bad} is outside [0, {n_classes - 1}] for a model with {n_classes} outputs; "
                f"give the model's last layer as many outputs as there are classes, or remap the labels "
                f"to 0..{n_classes - 1}")


def _check_same_shape(input: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if input.shape != target.shape:
        raise ValueError(f"{what}: prediction shape {tuple(input.shape)} differs from target shape "
                         f"{tuple(target.shape)}; reshape one of them (e.g. pred.squeeze(-1))")


def _check_class_weight(weight) -> torch.Tensor | None:
    if weight is None:
        return None
    weight = torch.as_tensor(weight, dtype=torch.float32)
    if weight.dim() != 1 or not torch.isfinite(weight).all() or (weight < 0).any():
        raise ValueError(f"weight (class weights) must be a 1-D list of finite numbers >= 0, one per class, "
                         f"got {weight.tolist()}")
    return weight


def _cast(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Class weights in the input's dtype (a float64 model gets float64 weights)."""
    return None if weight is None else weight.to(like.dtype)


def _check_probabilities(x: torch.Tensor, name: str, what: str, hint: str) -> None:
    if x.numel() and (bool((x < 0).any()) or bool((x > 1).any())):
        raise ValueError(f"{what}: {name} must lie in [0, 1], got values in "
                         f"[{float(x.min()):.4g}, {float(x.max()):.4g}]; {hint}")


# --------------------------------------------------------------------------- torch-backed losses
class MSELoss(nn.MSELoss):
    """Mean squared error, :math:`\\frac1N\\sum (\\hat y - y)^2`."""

    def forward(self, input, target):
        _check_same_shape(input, target, "mse")
        return super().forward(input, target.to(input.dtype))


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Cross-entropy on logits with integer labels (or soft labels of the input's shape)."""

    def __init__(self, weight=None, ignore_index: int = -100, label_smoothing: float = 0.0, reduction="mean"):
        check_number("label_smoothing", label_smoothing)
        if label_smoothing > 1:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        super().__init__(weight=_check_class_weight(weight), ignore_index=ignore_index,
                         label_smoothing=label_smoothing, reduction=reduction)

    def forward(self, input, target):
        if not (target.is_floating_point() and target.shape == input.shape):  # float, input-shaped: soft labels
            _check_class_targets(input, target, self.ignore_index, "cross_entropy")
        return F.cross_entropy(input, target, weight=_cast(self.weight, input), ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(nn.NLLLoss):
    """Negative log-likelihood on log-probabilities (e.g. the output of ``log_softmax``)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction="mean"):
        super().__init__(weight=_check_class_weight(weight), ignore_index=ignore_index, reduction=reduction)

    def forward(self, input, target):
        _check_class_targets(input, target, self.ignore_index, "nll")
        if input.numel() and bool((input > 1e-6).any()):
            raise ValueError("nll expects log-probabilities (<= 0), got positive values; apply "
                             "torch.log_softmax to the logits first, or use make_loss('cross_entropy')")
        return F.nll_loss(input, target, weight=_cast(self.weight, input), ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCELoss(nn.BCELoss):
    """Binary cross-entropy on probabilities in [0, 1]."""

    def forward(self, input, target):
        _check_same_shape(input, target, "bce")
        _check_probabilities(input, "predictions", "bce",
                             "these look like logits: use make_loss('bce_with_logits'), or apply torch.sigmoid")
        _check_probabilities(target, "targets", "bce",
                             "binary labels are 0/1; for labels such as {1, 2, 3, 4} use cross_entropy")
        return super().forward(input, target.to(input.dtype))


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """Binary cross-entropy on logits (numerically stable sigmoid + BCE)."""

    def forward(self, input, target):
        _check_same_shape(input, target, "bce_with_logits")
        _check_probabilities(target, "targets", "bce_with_logits",
                             "binary labels are 0/1; for labels such as {1, 2, 3, 4} use cross_entropy")
        return super().forward(input, target.to(input.dtype))


class CombinedLoss(nn.Module):
    """α·CE(z, y) + β·MSE(softmax(z), one_hot(y)) + γ·NLL(log_softmax(z), y) from one set of logits."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.0, gamma: float = 0.0, **ce_options):
        super().__init__()
        self.alpha = check_number("alpha", alpha)
        self.beta = check_number("beta", beta)
        self.gamma = check_number("gamma", gamma)
        if self.alpha == self.beta == self.gamma == 0:
            raise ValueError("combined loss needs at least one of alpha, beta, gamma > 0")
        self.ce = CrossEntropyLoss(**ce_options)

    def forward(self, input, target):
        _check_class_targets(input, target, self.ce.ignore_index, "combined")
        keep = target != self.ce.ignore_index
        loss = self.alpha * self.ce(input, target)
        if self.beta:
            probs = input.softmax(1)
            onehot = F.one_hot(torch.where(keep, target, 0), input.shape[1]).movedim(-1, 1).to(probs.dtype)
            keep_c = keep.unsqueeze(1).expand_as(probs)
            loss = loss + self.beta * F.mse_loss(probs[keep_c], onehot[keep_c])
        if self.gamma:
            loss = loss + self.gamma * F.nll_loss(input.log_softmax(1), target, ignore_index=self.ce.ignore_index)
        return loss

    def extra_repr(self):
        return f"alpha={self.alpha}, beta={self.beta}, gamma={self.gamma}"


LOSSES: dict[str, type[nn.Module]] = {
    "mse": MSELoss,
    "cross_entropy": CrossEntropyLoss,
    "bce": BCELoss,
    "bce_with_logits": BCEWithLogitsLoss,
    "nll": NLLLoss,
    "combined": CombinedLoss,
}


def make_loss(name: str | Callable[..., torch.Tensor], **options: Any) -> nn.Module:
    """``make_loss("cross_entropy", label_smoothing=0.1)``; an ``nn.Module`` or callable passes through."""
    if not isinstance(name, str):
        if callable(name):
            return name
        raise TypeError(f"make_loss takes a loss name or a callable, got {type(name).__name__}")
    return choose("loss", name, LOSSES)(**options)


def l2_penalty(model_or_params: nn.Module | Iterable[torch.Tensor], lam: float, skip_bias_and_norm: bool = True) -> torch.Tensor:
    r""":math:`\frac λ2\sum θ^2`. Add it to the loss; its gradient is :math:`λθ` (weight decay for SGD).

    Given a model, biases and norm-layer weights are skipped (see ``optim.split_decay_params``); a list of
    parameters is taken as it is.
    """
    lam = check_number("lam", lam)
    if isinstance(model_or_params, nn.Module):
        from .optim import split_decay_params  # one definition of "what decays"
        decay, no_decay = split_decay_params(model_or_params)
        params = decay if skip_bias_and_norm else decay + no_decay
    else:
        params = list(model_or_params)
    if not params:
        raise ValueError("l2_penalty got no parameters to penalize (an empty list, a model without weights, or "
                         "only biases/norm weights; pass skip_bias_and_norm=False to include those)")
    return lam / 2 * sum(p.pow(2).sum() for p in params)


# --------------------------------------------------------------------------- from-scratch twins
# Each twin is the formula above in plain tensor ops (no torch.nn.functional losses), used by the tests to
# prove the library versions right, and by readers who want to see the equation run.

def _log_softmax(z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    z = z - z.amax(dim, keepdim=True)  # shift for stability: softmax is shift-invariant
    return z - z.exp().sum(dim, keepdim=True).log()


def scratch_mse(pred, target):
    return ((pred - target) ** 2).mean()


def scratch_cross_entropy(logits, target, weight=None, ignore_index=-100, label_smoothing=0.0):
    logp = _log_softmax(logits, 1)
    n_classes = logits.shape[1]
    keep = target != ignore_index
    safe = torch.where(keep, target, torch.zeros_like(target))
    w = torch.ones(n_classes, dtype=logits.dtype, device=logits.device) if weight is None \
        else torch.as_tensor(weight, dtype=logits.dtype, device=logits.device)
    w_shape = [1, n_classes] + [1] * (logits.dim() - 2)
    picked = logp.gather(1, safe.unsqueeze(1)).squeeze(1)        # log p_{i, y_i}
    w_y = w[safe] * keep                                          # w_{y_i}, 0 where ignored
    nll = -(w_y * picked).sum() / w_y.sum()
    smooth = -(logp * w.view(w_shape)).sum(1) * keep              # -Σ_c w_c log p_{i,c}
    smooth = smooth.sum() / (w_y.sum() if weight is not None else keep.sum())
    return (1 - label_smoothing) * nll + label_smoothing / n_classes * smooth


def scratch_bce(p, y):
    # clamp log at -100 like torch, so p = 0 or 1 gives a finite loss
    return -(y * p.log().clamp_min(-100) + (1 - y) * (1 - p).log().clamp_min(-100)).mean()


def scratch_bce_with_logits(z, y):
    return (z.clamp_min(0) - z * y + (1 + (-z.abs()).exp()).log()).mean()


def scratch_nll(logq, y, ignore_index=-100):
    keep = y != ignore_index
    safe = torch.where(keep, y, torch.zeros_like(y))
    return -(logq.gather(1, safe.unsqueeze(1)).squeeze(1) * keep).sum() / keep.sum()


def scratch_combined(logits, y, alpha=1.0, beta=0.0, gamma=0.0, ignore_index=-100, **ce_options):
    keep = y != ignore_index
    probs = _log_softmax(logits, 1).exp()
    onehot = (torch.arange(logits.shape[1], device=y.device) == y.unsqueeze(1)).to(logits.dtype)
    return (alpha * scratch_cross_entropy(logits, y, ignore_index=ignore_index, **ce_options)
            + beta * scratch_mse(probs[keep], onehot[keep])
            + gamma * scratch_nll(_log_softmax(logits, 1), y, ignore_index))


SCRATCH_LOSSES = {
    "mse": scratch_mse,
    "cross_entropy": scratch_cross_entropy,
    "bce": scratch_bce,
    "bce_with_logits": scratch_bce_with_logits,
    "nll": scratch_nll,
    "combined": scratch_combined,
}
