r"""The loss formulas as the articles print them, evaluated and trained next to the correct ones.

* S0-03 (000:130–135): one sigmoid output :math:`M=σ(W_1x+b_1)` and BCE :math:`-y\log M-(1-y)\log(1-M)` on labels
  :math:`y∈\{1,2,3,4\}`. For :math:`y ≥ 2` the term :math:`-(1-y)\log(1-M) = (y-1)\log(1-M) → -∞` as
  :math:`M → 1`: the loss has no minimum and every input is pushed to M = 1. :func:`bce_on_labels_vs_ce` trains
  it against a 4-logit softmax cross-entropy on the same data.
* S1-04 (001:80): :math:`-\sum y\log y^*` with prediction and label swapped: :math:`\log 0 = -∞` (:func:`swapped_ce`).
* S3-01 (003:15): the class *index* :math:`y_i` multiplying every :math:`\log \hat y_{ij}` (:func:`index_ce`).
* S3-05 (003:27): :math:`-\frac1N\sum_i\sum_{j=1}^T \log p(y_i|x_i)` — a summand without j (:func:`literal_ll`).
* S3-08 (003:99–105): softmax applied to probabilities (:func:`double_softmax_ce`).
* S2-06 (002:254–262): :math:`\ell = \frac1N\sum_i \ell_i(M(x), y)` "with each layer's loss": every
  :math:`\ell_i` takes the same output :math:`M(x)`, so the sum is one loss, not per-layer losses
  (:func:`per_layer_loss`).
* S2-03 (002:212): the gradient :math:`(M-y)\nabla_θ M` for a sigmoid + BCE, a factor :math:`M(1-M)` short
  (:func:`article_bce_gradient`, :func:`logistic_gd`).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..data.synthetic import blobs
from ..utils import check_int, check_number

__all__ = ["article_bce", "bce_on_labels_vs_ce", "swapped_ce", "index_ce", "literal_ll", "double_softmax_ce",
           "article_bce_gradient", "logistic_gd", "per_layer_loss"]


def article_bce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""000:135 on the logit z of :math:`M = σ(z)`: :math:`-y\log M - (1-y)\log(1-M)`, mean over the batch.
    Computed with ``logsigmoid`` (:math:`\log M = \log σ(z)`, :math:`\log(1-M) = \log σ(-z)`) so the value stays
    finite where M rounds to 1 — the formula itself, not a fix."""
    y = y.to(z.dtype)
    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()


def bce_on_labels_vs_ce(n: int = 400, steps: int = 300, lr: float = 0.1, *, dim: int = 2, seed: int = 0) -> dict:
    """Gradient descent on the same 4-class blobs: the article's single sigmoid + BCE on labels 1…4, and a
    4-logit softmax cross-entropy on labels 0…3.

    Returns the loss per step of each, the article model's outputs M at the end (``share_m_above_0.99``) and two
    accuracies: ``ce_accuracy`` (argmax) and ``bce_accuracy`` — for the single output, the best of every way to
    cut M into 4 ordered bins at its quartiles and name them (24 orders), i.e. the most generous reading.
    """
    n, steps = check_int("n", n), check_int("steps", steps)
    lr = check_number("lr", lr, positive=True)
    x, y = blobs(n, num_classes=4, dim=dim, seed=seed)
    x, y = x.double(), y
    g = torch.Generator().manual_seed(seed)
    lin_bce = torch.nn.Linear(dim, 1).double()
    lin_ce = torch.nn.Linear(dim, 4).double()
    for lin in (lin_bce, lin_ce):
        for p in lin.parameters():
            p.data = 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64)
    curves = {"bce_1to4": [], "softmax_ce": []}
    opt = torch.optim.SGD([*lin_bce.parameters(), *lin_ce.parameters()], lr=lr)
    for _ in range(steps):
        loss_bce = article_bce(lin_bce(x).squeeze(1), y + 1)          # labels 1…4, as 000:130
        loss_ce = F.cross_entropy(lin_ce(x), y)                        # labels 0…3
        opt.zero_grad()
        (loss_bce + loss_ce).backward()                                # independent parameters: two separate GDs
        opt.step()
        curves["bce_1to4"].append(loss_bce.item())
        curves["softmax_ce"].append(loss_ce.item())
    with torch.no_grad():
        m = torch.sigmoid(lin_bce(x).squeeze(1))
        ce_acc = float((lin_ce(x).argmax(1) == y).double().mean())
        bins = torch.bucketize(m, torch.quantile(m, torch.tensor([0.25, 0.5, 0.75], dtype=m.dtype)))
        bce_acc = max(float((torch.tensor(order)[bins] == y).double().mean())
                      for order in itertools.permutations(range(4)))
    return {"steps": steps, "lr": lr, "n": n, "curves": curves, "bce_final_loss": curves["bce_1to4"][-1],
            "ce_final_loss": curves["softmax_ce"][-1], "share_m_above_0.99": float((m > 0.99).double().mean()),
            "m_min": float(m.min()), "bce_accuracy": bce_acc, "ce_accuracy": ce_acc,
            "majority_share": float(torch.bincount(y).max() / n)}


def swapped_ce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""001:80 with y = prediction, y* = one-hot label: :math:`-\frac1N\sum_i\sum_c p_{ic}\log Y_{ic}` (inf)."""
    Y = F.one_hot(y, p.shape[1]).to(p.dtype)
    return -(p * torch.log(Y)).sum(1).mean()


def index_ce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""003:15 read literally: the label *index* :math:`y_i` times :math:`\sum_j \log \hat y_{ij}`."""
    return -(y.to(p.dtype)[:, None] * torch.log(p)).sum(1).mean()


def literal_ll(token_logp: torch.Tensor) -> torch.Tensor:
    r"""003:27 read literally on per-token log-probabilities (N × T): :math:`\log p(y_i|x_i) = \sum_t \log p_{it}`
    repeated T times by :math:`\sum_{j=1}^T` — :math:`T^2` times the per-token mean."""
    t = token_logp.shape[1]
    return -t * token_logp.sum(1).mean()


def double_softmax_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """003:99–105 with ŷ a probability: cross-entropy that applies softmax again to ``softmax(logits)``."""
    return F.cross_entropy(torch.softmax(logits, -1), y)


def article_bce_gradient(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(autograd's ∂BCE/∂w, 002:212's :math:`(M-y)∇_w M = (M-y)M(1-M)x`), batch means, for :math:`M=σ(x·w)`."""
    w = w.detach().clone().requires_grad_(True)
    m = torch.sigmoid(x @ w)
    F.binary_cross_entropy(m, y.to(m.dtype)).backward()
    m = m.detach()
    return w.grad, ((m - y) * m * (1 - m)) @ x / len(y)


def logistic_gd(x: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, steps: int = 200, lr: float = 1.0) -> dict:
    """Gradient descent on logistic regression from ``w0`` with the true gradient (M-y)x and with the article's
    (M-y)M(1-M)x; the BCE after each step of both."""
    out = {}
    for name in ("true", "article"):
        w = w0.detach().clone().double()
        curve = []
        for _ in range(check_int("steps", steps)):
            m = torch.sigmoid(x @ w)
            r = (m - y) if name == "true" else (m - y) * m * (1 - m)
            w = w - lr * (r @ x) / len(y)
            curve.append(float(F.binary_cross_entropy(torch.sigmoid(x @ w), y.double())))
        out[name] = curve
    return out


def per_layer_loss(logits: torch.Tensor, y: torch.Tensor, n_layers: int) -> dict:
    r"""002:254–262 evaluated as printed: :math:`\ell = \frac1N\sum_{i=1}^{N} \ell_i(M(x), y)` with N the layer
    count and :math:`\ell_i` "each layer's loss" — cross-entropy, each on the network's output :math:`M(x)` (the
    only thing the formula gives it). Returns the formula's value and gradient norm beside one cross-entropy's: the
    same numbers, because the :math:`\ell_i` are one function; per-layer losses would need per-layer outputs
    (auxiliary heads, i.e. deep supervision), which ResNet does not have."""
    check_int("n_layers", n_layers)
    z1, z2 = logits.detach().clone().requires_grad_(True), logits.detach().clone().requires_grad_(True)
    article = sum(F.cross_entropy(z1, y) for _ in range(n_layers)) / n_layers
    one = F.cross_entropy(z2, y)
    g1, g2 = torch.autograd.grad(article, z1)[0], torch.autograd.grad(one, z2)[0]
    return {"article": float(article.detach()), "one_loss": float(one.detach()), "n_layers": n_layers,
            "value_gap": abs(float((article - one).detach())), "gradient_gap": float((g1 - g2).abs().max())}
