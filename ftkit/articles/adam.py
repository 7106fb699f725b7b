r"""Adam as seed 004 writes it (004:56): :math:`θ_{t+1} = θ_t + α\,m_t/\sqrt{v_t}` — a plus sign (S4-04), no
bias correction (S4-05), no ε (S4-06) — next to the real rule
:math:`θ_{t+1} = θ_t - α\,\hat m_t/(\sqrt{\hat v_t} + ε)`, :math:`\hat m = m/(1-β_1^t)`, :math:`\hat v = v/(1-β_2^t)`.

:class:`ArticleAdam` is one optimizer with the three switches; with ``sign=-1, bias_correction=True, eps=1e-8``
it is ``torch.optim.Adam`` step for step (tests check it). :func:`adam_variants` races the variants on a 2-D
surface of :mod:`ftkit.optviz` and returns :class:`~ftkit.optviz.races.OptimizerPath` objects the descent figures
draw; :func:`bias_factor` is the ratio of the uncorrected to the corrected step.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..optviz.races import OptimizerPath
from ..optviz.surfaces import make_surface
from ..utils import check_int, check_number

__all__ = ["ArticleAdam", "VARIANTS", "adam_variants", "bias_factor", "zero_gradient_step"]


class ArticleAdam(torch.optim.Optimizer):
    """Adam with the article's three changes as switches: ``sign`` (+1: the article's ascent, -1: descent),
    ``bias_correction`` (divide m and v by 1-β^t) and ``eps`` (0: the article's bare √v)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, *, sign: int = -1, bias_correction=True):
        if sign not in (-1, 1):
            raise ValueError(f"sign must be -1 (descent, the real Adam) or +1 (the article's plus), got {sign!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, sign=sign, bias_correction=bias_correction))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["t"] += 1
                t, m, v, g = st["t"], st["m"], st["v"], p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                if group["bias_correction"]:
                    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
                else:
                    m_hat, v_hat = m, v
                p.add_(group["sign"] * group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))
        return loss


# label -> ArticleAdam switches; "as written" is 004:56 verbatim
VARIANTS = {
    "adam": dict(sign=-1, bias_correction=True, eps=1e-8),
    "no bias correction": dict(sign=-1, bias_correction=False, eps=1e-8),
    "plus sign": dict(sign=1, bias_correction=True, eps=1e-8),
    "as written (004:56)": dict(sign=1, bias_correction=False, eps=0.0),
}


def bias_factor(t, betas=(0.9, 0.999)) -> np.ndarray:
    r"""How many times larger the uncorrected step :math:`m/\sqrt v` is than :math:`\hat m/\sqrt{\hat v}` at step
    t (same m, v): :math:`\frac{1-β_1^t}{\sqrt{1-β_2^t}}` — 3.16 at t=1, ≈6.5 near t=10, 1.26 at t=1000."""
    t = np.asarray(t, dtype=float)
    b1, b2 = betas
    return (1 - b1 ** t) / np.sqrt(1 - b2 ** t)


def adam_variants(fn="booth", variants=None, start=None, lr: float | None = None, steps: int = 100, *,
                  bound: float = 10.0) -> dict[str, OptimizerPath]:
    """Run each variant (``VARIANTS`` by default: label -> switches) from one start on surface ``fn``.

    ``lr`` defaults to the surface's suggested Adam lr. A path that leaves the surface's box scaled by
    ``bound`` (or whose loss is not finite) is cut there and marked ``diverged``, as in :func:`ftkit.optviz.race`.
    """
    surface = make_surface(fn)
    steps = check_int("steps", steps)
    lr = check_number("lr", surface.lr.get("adam", 0.1) if lr is None else lr, positive=True)
    x0, y0 = surface.start if start is None else start
    (dx0, dx1), (dy0, dy1) = surface.domain
    centre = np.array([(dx0 + dx1) / 2, (dy0 + dy1) / 2])
    half = bound * np.array([(dx1 - dx0) / 2, (dy1 - dy0) / 2])
    out = {}
    for label, switches in (VARIANTS if variants is None else variants).items():
        w = torch.tensor([float(x0), float(y0)], dtype=torch.float64, requires_grad=True)
        opt = ArticleAdam([w], lr=lr, **switches)
        points, losses, note = [w.detach().numpy().copy()], [], ""
        for k in range(steps + 1):
            x, y = w.detach().tolist()
            f, gx, gy = surface.value_and_grad(x, y)
            losses.append(float(f))
            if k == steps:
                break
            w.grad = torch.tensor([float(gx), float(gy)], dtype=torch.float64)
            opt.step()
            p = w.detach().numpy().copy()
            if not (np.isfinite(p).all() and (np.abs(p - centre) <= half).all()):
                note = f"{label} diverged: left the box at step {k + 1} (lr={lr:g}); drawn up to step {k}"
                break
            points.append(p)
        out[label] = OptimizerPath(label, "adam", lr, dict(switches), np.array(points), np.array(losses[:len(points)]),
                                   bool(note), note)
    return out


def zero_gradient_step(eps: float) -> float:
    """One Adam step (bias-corrected) on a coordinate whose gradient has always been exactly 0: 0.0 with ε > 0,
    ``nan`` (0/0) with the article's ε = 0 — an unused embedding row, a dead ReLU's weights."""
    w = torch.zeros(1, requires_grad=True)
    w.grad = torch.zeros(1)
    ArticleAdam([w], lr=1e-3, eps=eps).step()
    return float(w.detach()[0]) if math.isfinite(float(w.detach()[0])) else float("nan")
