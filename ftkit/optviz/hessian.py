r"""The loss Hessian's extreme eigenvalues (sharpness) and the edge of stability.

On a quadratic, gradient descent is stable only while :math:`η\,λ_{\max} < 2` (notebook 02). Real networks
trained by full-batch GD raise their sharpness :math:`λ_{\max}(∇^2L)` until it reaches :math:`2/η` and then hover
there while the loss keeps falling, non-monotonically: the *edge of stability* (Cohen et al., ICLR 2021).

* :func:`hessian_eigenvalues` — the top-``k`` (and optionally the smallest) eigenvalues of :math:`∇^2 L(θ)`,
  ``L`` the mean loss over ``data = (inputs, targets)``, by block Lanczos with full reorthogonalization on
  Hessian-vector products :math:`Hv = ∇_θ (∇_θ L · v)`. Only the trainable parameters (``requires_grad``) vary.
* :class:`SharpnessMonitor` — a ``fit`` callback: :math:`λ_{\max}` every ``every`` steps, logged in the step rows
  of the history beside the stability edge of the optimizer (:func:`stability_edge`).

**Hessian-vector products.** The model runs through ``torch.func.functional_call`` at detached copies of its
weights (the model itself is never modified); the gradient is built once with ``create_graph=True`` and each
product is one backward pass through it: ≈ 1.6 forward+backward passes per product for a small CNN on a CPU,
against ≈ 3.1 for forward-over-reverse ``torch.func.jvp(grad(f))``, which recomputes the forward each time. The
graphs are kept while ``data`` holds at most ``cache_images`` rows; beyond that each product recomputes them
batch by batch (memory stays that of one batch, each product costs ≈ 3 passes).

**BatchNorm and Dropout** (the policy): by default the model is evaluated in **eval mode** — BatchNorm uses its
running statistics, Dropout is off — so :math:`L` is a fixed function of the weights and the spectrum does not
depend on the batching. ``eval_mode=False`` keeps the model's mode: train-mode BatchNorm then normalizes with each
batch's statistics (the Hessian of the function full-batch training descends) and its running statistics are
restored afterwards; active Dropout is refused (every product would be random).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .directions import Params
from .landscape import check_data
from ..losses import make_loss
from ..core import Callback
from ..core import eval_mode as _eval_mode
from ..utils import check_int, check_number

__all__ = ["Spectrum", "hessian_eigenvalues", "stability_edge", "adam_preconditioner", "SharpnessMonitor"]


@dataclass
class Spectrum:
    """Extreme eigenvalues of the loss Hessian: ``top`` (largest first), ``smallest`` (if asked for)."""
    top: np.ndarray
    smallest: float | None
    vectors: list[Params] | None     # unit eigenvectors of ``top`` as {parameter name: tensor}, if asked for
    residuals: np.ndarray            # ‖Hv − λv‖ of each top pair (the error bound of λ is about residual²/gap)
    converged: bool
    hvps: int                        # Hessian-vector products used
    seconds: float

    @property
    def max(self) -> float:
        """:math:`λ_{\\max}`, the sharpness."""
        return float(self.top[0])


# --------------------------------------------------------------------------- Hessian-vector products
class _HessianOperator:
    """``H @ V`` for flat vectors over the trainable parameters, the mean loss over ``data`` in batches."""

    def __init__(self, model, loss_fn, data, batch_size, cache_images):
        self.model, self.loss_fn = model, loss_fn
        named = list(model.named_parameters())
        self.names = [n for n, p in named if p.requires_grad]
        if not self.names:
            raise ValueError(f"{type(model).__name__} has no trainable parameters (none with requires_grad=True): "
                             "there is no Hessian to take; unfreeze some, e.g. p.requires_grad_(True)")
        self.fixed = {n: p.detach() for n, p in named if not p.requires_grad}
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in named if p.requires_grad}
        self.shapes = [self.params[n].shape for n in self.names]
        self.sizes = [self.params[n].numel() for n in self.names]
        self.n = sum(self.sizes)
        self.dtype, self.device = self.params[self.names[0]].dtype, self.params[self.names[0]].device
        bs = max(1, min(int(batch_size), len(data[0])))
        self.batches = [(x.to(self.device), y.to(self.device)) for x, y in zip(data[0].split(bs), data[1].split(bs))]
        self.n_images = len(data[0])
        self.cache = len(data[0]) <= cache_images
        self._grads: list | None = None
        self.count = 0

    def _grad(self, x, y):
        loss = self.loss_fn(functional_call(self.model, {**self.fixed, **self.params}, (x,)), y)
        if not torch.isfinite(loss):
            raise ValueError(f"the loss at these weights is {loss.item()} (not finite): the Hessian is undefined "
                             "there; evaluate at finite-loss weights (e.g. before training diverged) or check "
                             "the inputs and the loss")
        g = torch.autograd.grad(loss, [self.params[n] for n in self.names], create_graph=True)
        return loss, g

    def loss(self) -> float:
        """Mean loss over the data (also builds the gradient graphs when they are cached)."""
        total, grads = 0.0, []
        for x, y in self.batches:
            loss, g = self._grad(x, y)
            total += loss.item() * len(x)
            if self.cache:
                grads.append(g)
        self._grads = grads if self.cache else None
        return total / self.n_images

    def flatten(self, tensors) -> torch.Tensor:
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, flat: torch.Tensor) -> Params:
        return {n: part.view(s) for n, part, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def matmul(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for an n × b block (one product per column)."""
        out = torch.zeros_like(V)
        for i, (x, y) in enumerate(self.batches):
            g = self._grads[i] if self.cache else self._grad(x, y)[1]
            w = len(x) / self.n_images
            for j in range(V.shape[1]):
                # a gradient part that is constant (the loss linear in that parameter) has no second derivative
                pairs = [(gi, vi.view(s)) for gi, vi, s in zip(g, V[:, j].split(self.sizes), self.shapes)
                         if gi.requires_grad]
                if not pairs:
                    continue
                hv = torch.autograd.grad([gi for gi, _ in pairs], [self.params[n] for n in self.names],
                                         grad_outputs=[vi for _, vi in pairs],
                                         retain_graph=self.cache or j + 1 < V.shape[1], allow_unused=True)
                out[:, j] += w * self.flatten([torch.zeros_like(self.params[n]) if h is None else h
                                               for n, h in zip(self.names, hv)])
        self.count += V.shape[1]
        return out


# --------------------------------------------------------------------------- block Lanczos
def _block_lanczos(matmul, n, k, smallest, max_iter, tol, start):
    r"""Ritz values of ``H`` on the Krylov space of ``start``: :math:`T = Q^\top H Q`, :math:`Q` kept orthonormal
    (Gram–Schmidt twice). Stops when the wanted pairs' residuals :math:`\|R s\|` fall below ``tol``·|λ|max, or
    when :math:`Q` spans the whole space (then the values are exact)."""
    X = torch.linalg.qr(start)[0]
    Q = X[:, :0]
    cols = []                                              # (offset, Qᵀ H X) per step: T's upper triangle
    for _ in range(max_iter):
        Q = torch.cat([Q, X], 1)
        W = matmul(X)
        C = Q.T @ W
        cols.append((Q.shape[1] - X.shape[1], C.double().cpu()))
        W = W - Q @ C
        W = W - Q @ (Q.T @ W)                              # twice is enough (Kahan–Parlett)
        X, R = torch.linalg.qr(W)
        m = Q.shape[1]
        T = torch.zeros(m, m, dtype=torch.float64)
        for off, c in cols:
            T[:c.shape[0], off:off + c.shape[1]] = c
        T = torch.triu(T) + torch.triu(T, 1).T            # symmetric from the upper triangle
        theta, S = torch.linalg.eigh(T)                    # ascending
        resid = torch.linalg.vector_norm(R.double().cpu() @ S[-R.shape[1]:, :], dim=0)
        wanted = list(range(m - 1, max(m - 1 - k, -1), -1)) + ([0] if smallest else [])
        scale = float(theta.abs().max()) or 1.0
        if m >= n or (m >= k and bool((resid[wanted] <= tol * scale).all())):
            return theta, S, resid, Q, True
        X = X[:, :n - m]                                   # the last block fills the space exactly
        X = torch.linalg.qr(X - Q @ (Q.T @ X))[0]         # keeps Q orthonormal where W had (near) zero columns
    return theta, S, resid, Q, False


def hessian_eigenvalues(model: nn.Module, loss, data, k: int = 1, *, smallest: bool = False, tol: float = 1e-3,
                        max_iter: int = 100, block_size: int | None = None, batch_size: int = 1024,
                        cache_images: int = 4096, eval_mode: bool = True, seed: int = 0, start=None,
                        preconditioner: Params | None = None, return_vectors: bool = False) -> Spectrum:
    r"""Top-``k`` eigenvalues of the Hessian of the mean loss over ``data = (inputs, targets)`` at the model's weights.

    ``smallest``: also the smallest (most negative) one. ``tol``: relative residual ``‖Hv−λv‖/|λ|max`` at which a
    pair counts as converged (the eigenvalue is then off by at most about (tol·|λ|max)²/gap). ``block_size``
    (default ``k``): start vectors per Lanczos step; an eigenvalue repeated m times needs ``block_size ≥ m`` to be
    counted m times. ``max_iter`` Lanczos steps (``block_size`` products each). ``start``: a flat tensor or a
    ``{name: tensor}`` direction to start from (e.g. the last call's top vector); else Gaussian with ``seed``.
    ``preconditioner``: positive ``{name: tensor}`` :math:`D`; the eigenvalues are then those of
    :math:`D^{-1}H` (computed as :math:`D^{-1/2} H D^{-1/2}`), e.g. :func:`adam_preconditioner`.
    """
    k = check_int("k", k, 1, " (how many top eigenvalues)")
    check_number("tol", tol, positive=True)
    max_iter = check_int("max_iter", max_iter, 1)
    check_data(data)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    loss_fn = make_loss(loss)
    if not eval_mode and any(isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0
                             for m in model.modules()):
        raise ValueError("the model has Dropout in training mode: every Hessian-vector product would be random; "
                         "use eval_mode=True (the default) or model.eval()")
    t0 = time.perf_counter()
    with _eval_mode(model, eval_mode, keep_buffers=True):
        with torch.enable_grad():  # also inside a torch.no_grad() block
            op = _HessianOperator(model, loss_fn, data, batch_size, cache_images)
            if k > op.n:
                raise ValueError(f"k={k} is larger than the number of trainable parameters ({op.n}): the Hessian is "
                                 f"{op.n} × {op.n}; ask for k <= {op.n}")
            block = min(check_int("block_size", block_size, 1) if block_size is not None else k, op.n)
            matmul = op.matmul
            if preconditioner is not None:
                scale = op.flatten([_check_positive(preconditioner, n, op.params[n]) for n in op.names]).rsqrt()
                matmul = lambda V: scale[:, None] * op.matmul(scale[:, None] * V)  # noqa: E731
            g = torch.Generator().manual_seed(int(seed))
            X = torch.randn(op.n, block, generator=g, dtype=torch.float64).to(op.device, op.dtype)
            if start is not None:
                s = op.flatten([start[n] for n in op.names]) if isinstance(start, dict) else start.reshape(-1)
                if s.numel() != op.n:
                    raise ValueError(f"start has {s.numel()} entries, the trainable parameters {op.n}")
                X[:, 0] = s.to(X)
            op.loss()  # raises on a non-finite loss, before any product
            theta, S, resid, Q, converged = _block_lanczos(matmul, op.n, k, smallest, max_iter, float(tol), X)
    m = len(theta)
    top_idx = list(range(m - 1, max(m - 1 - k, -1), -1))
    if len(top_idx) < k:
        warnings.warn(f"only {len(top_idx)} of k={k} eigenvalues found (the Krylov space closed early); raise "
                      "block_size", RuntimeWarning, stacklevel=2)
    vectors = None
    if return_vectors:
        vectors = []
        for i in top_idx:
            v = Q @ S[:, i].to(Q)
            if preconditioner is not None:  # eigenvector of D^{-1/2} H D^{-1/2} → of D^{-1} H
                v = scale * v
                v = v / v.norm()
            vectors.append({n: t.detach().clone() for n, t in op.unflatten(v).items()})
    return Spectrum(theta[top_idx].numpy(), float(theta[0]) if smallest else None, vectors,
                    resid[top_idx].numpy(), converged, op.count, time.perf_counter() - t0)


def _check_positive(preconditioner: Params, name: str, like: torch.Tensor) -> torch.Tensor:
    if name not in preconditioner:
        raise ValueError(f"preconditioner has no entry for the parameter {name!r}")
    d = preconditioner[name].to(like)
    if d.shape != like.shape or not bool((d > 0).all()):
        raise ValueError(f"preconditioner[{name!r}] must be positive and shaped {tuple(like.shape)}")
    return d


# --------------------------------------------------------------------------- stability edges
def adam_preconditioner(optimizer: torch.optim.Optimizer, model: nn.Module) -> Params | None:
    r"""Adam's diagonal :math:`P = (1-β_1^t)\,(\sqrt{\hat v_t} + ε)`, so that its step is :math:`-η P^{-1} m_t` with
    :math:`m_t` the uncorrected momentum (Cohen et al. 2022); ``None`` before the first step."""
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    out = {}
    for name, p in model.named_parameters():
        st = optimizer.state.get(p, {})
        if "exp_avg_sq" not in st:
            if p.requires_grad:
                return None
            continue
        t = float(st["step"])
        out[name] = (1 - beta1 ** t) * ((st["exp_avg_sq"] / (1 - beta2 ** t)).sqrt() + group["eps"])
    return out


def stability_edge(optimizer: torch.optim.Optimizer) -> tuple[float | None, str]:
    r"""The sharpness at which the optimizer's update stops being stable on a quadratic, and what to compare it to.

    GD :math:`2/η`; heavy-ball momentum μ (``torch.optim.SGD``) :math:`(2+2μ)/η`; Nesterov :math:`(2+2μ)/((1+2μ)η)`;
    Adam/AdamW :math:`(2+2β_1)/((1-β_1)η)` for the *preconditioned* sharpness :math:`λ_{\max}(P^{-1}H)` (38/η at
    β₁ = 0.9). Other optimizers: ``(None, reason)`` — their raw :math:`λ_{\max}` is not comparable to :math:`2/η`.
    """
    group = optimizer.param_groups[0]
    lr = float(group["lr"])
    if type(optimizer) is torch.optim.SGD:
        mu = float(group.get("momentum", 0.0))
        if mu == 0:
            return 2 / lr, "sharpness"
        if group.get("nesterov"):
            return (2 + 2 * mu) / ((1 + 2 * mu) * lr), "sharpness"
        return (2 + 2 * mu) / lr, "sharpness"
    if type(optimizer) in (torch.optim.Adam, torch.optim.AdamW):
        beta1 = float(group["betas"][0])
        return (2 + 2 * beta1) / ((1 - beta1) * lr), "preconditioned_sharpness"
    return None, (f"no stability edge for {type(optimizer).__name__}: its raw λ_max is logged but is not comparable "
                  "to 2/η (the edge is known for SGD/GD, heavy ball, Nesterov and Adam/AdamW)")


class SharpnessMonitor(Callback):
    r""":math:`λ_{\max}` of the loss Hessian on a fixed ``data = (inputs, targets)`` every ``every`` optimizer steps.

    Writes into the step row of the measured step (``state.history.steps[-1]``): ``sharpness`` (λ_max of H),
    ``stability_edge`` (:func:`stability_edge` at that step's lr) and, for Adam/AdamW, ``preconditioned_sharpness``
    (:math:`λ_{\max}(P^{-1}H)`, the number the edge is about). The same numbers, with the weights at the start
    (step 0) too, are kept in ``self.rows``. Each estimate starts from the previous top eigenvector, so after the
    first one a few Lanczos steps suffice. ``loss`` defaults to the ``fit`` loss.
    """

    def __init__(self, data, every: int = 10, *, loss=None, tol: float = 1e-2, max_iter: int = 30, **options):
        check_data(data)
        self.data, self.every, self.loss = data, check_int("every", every, 1, " (optimizer steps)"), loss
        self.options = dict(tol=tol, max_iter=max_iter, **options)
        self.rows: list[dict] = []
        self._start = {"sharpness": None, "preconditioned_sharpness": None}
        self._warned = False

    def _estimate(self, model, loss, key, preconditioner=None) -> Spectrum:
        spec = hessian_eigenvalues(model, loss, self.data, start=self._start[key], preconditioner=preconditioner,
                                   return_vectors=True, **self.options)
        self._start[key] = spec.vectors[0]
        return spec

    def measure(self, state) -> dict:
        loss = self.loss if self.loss is not None else state.loss_fn
        if loss is None:
            raise ValueError("SharpnessMonitor needs a loss: fit(loss=None) uses the model's own; pass loss=...")
        spec = self._estimate(state.model, loss, "sharpness")
        edge, kind = stability_edge(state.optimizer)
        row = {"step": state.step, "sharpness": spec.max, "stability_edge": edge,
               "lr": state.optimizer.param_groups[0]["lr"], "hvps": spec.hvps, "seconds": spec.seconds}
        if kind == "preconditioned_sharpness":
            p = adam_preconditioner(state.optimizer, state.model)
            row["preconditioned_sharpness"] = (None if p is None else
                                               self._estimate(state.model, loss, kind, p).max)
        elif edge is None and not self._warned:
            warnings.warn(f"SharpnessMonitor: {kind}", RuntimeWarning, stacklevel=2)
            self._warned = True
        self.rows.append(row)
        return row

    def on_fit_start(self, state):
        self.measure(state)

    def on_batch_end(self, state):
        if state.step % self.every == 0 and (not self.rows or self.rows[-1]["step"] != state.step):
            row = self.measure(state)
            if state.history.steps:
                state.history.steps[-1].update({k: v for k, v in row.items()
                                                if k in ("sharpness", "stability_edge", "preconditioned_sharpness")})

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame(self.rows)
