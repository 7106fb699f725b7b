r"""Optimizers: a string-keyed factory over ``torch.optim`` and a from-scratch twin of each rule.

Update rules (gradient :math:`g_t=\nabla L(θ_{t-1})`, learning rate :math:`η`, weight decay :math:`λ`):

* GD / SGD        :math:`θ ← θ - η(g + λθ)`: L2 regularization is the ``- ηλθ`` term.
* momentum        :math:`b ← μb + g;\; θ ← θ - ηb` (heavy ball; ``b₁ = g₁``).
* Nesterov        :math:`b ← μb + g;\; θ ← θ - η(g + μb)` (look-ahead form used by torch).
* RMSprop         :math:`v ← ρv + (1-ρ)g^2;\; θ ← θ - η\, g/(\sqrt v + ε)`;
  with momentum μ: :math:`b ← μb + g/(\sqrt v + ε);\; θ ← θ - ηb`.
* Adagrad         :math:`s ← s + g^2;\; θ ← θ - η_t\, g/(\sqrt s + ε)`, :math:`η_t = η/(1 + (t-1)\,\mathrm{lr\_decay})`.
* Adam            :math:`m ← β_1m + (1-β_1)g;\; v ← β_2v + (1-β_2)g^2;`
  :math:`\hat m = m/(1-β_1^t);\; \hat v = v/(1-β_2^t);\; θ ← θ - η\,\hat m/(\sqrt{\hat v} + ε)`.
  Two common article errors: writing the step with a **plus** sign (:math:`θ + α\,m/\sqrt v` climbs the
  loss) and dropping the **bias correction**: :math:`m/\sqrt v` is then :math:`\frac{1-β_1^t}{\sqrt{1-β_2^t}}`
  times :math:`\hat m/\sqrt{\hat v}`, i.e. the early steps are ~3× (t=1) to ~6.5× (t≈10) too *large* with
  β = (0.9, 0.999), and still ~1.3× at t=1000 (see docs/formulas.md).
  With ``weight_decay`` Adam adds :math:`λθ` to :math:`g` (L2, scaled by the adaptive denominator).
* AdamW           Adam with *decoupled* decay: :math:`θ ← θ(1-ηλ)` before the Adam step (Loshchilov & Hutter).

``make_optimizer(name, model, lr, weight_decay=…)`` puts biases and normalization weights in a group with no
weight decay (common practice, as in nanoGPT and timm: they are few, and shrinking them toward 0 does not
regularize). ``scratch=True`` returns the twin, a real ``torch.optim.Optimizer`` that runs the equations above
in plain tensor math (tests check it against ``torch.optim`` to 1e-6).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import inspect
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .utils import check_keys, check_number, choose

__all__ = ["OPTIMIZERS", "OPTION_RANGES", "check_option", "OptimInfo", "make_optimizer", "split_decay_params",
           "ScratchSGD", "ScratchAdam", "ScratchRMSprop", "ScratchAdagrad"]

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def split_decay_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decay, no_decay): biases, 1-D tensors and every parameter of a normalization layer go to no_decay."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower() \
                    or name.endswith("bias") or p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    return decay, no_decay


# --------------------------------------------------------------------------- from-scratch twins
class ScratchSGD(torch.optim.Optimizer):
    """GD/SGD with optional (Nesterov) momentum and L2 weight decay, in plain tensor math."""

    def __init__(self, params, lr=1e-2, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _maybe_closure(closure)
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + wd * p if wd else p.grad
                if mu:
                    state = self.state[p]
                    if "b" not in state:
                        state["b"] = g.clone()                       # b₁ = g₁
                    else:
                        state["b"] = mu * state["b"] + (1 - group["dampening"]) * g
                    g = g + mu * state["b"] if group["nesterov"] else state["b"]
                p.sub_(lr * g)
        return loss


class ScratchAdam(torch.optim.Optimizer):
    """Adam (``decoupled=False``, L2 decay in the gradient) or AdamW (``decoupled=True``), bias-corrected."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _maybe_closure(closure)
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd and group["decoupled"]:
                    p.mul_(1 - lr * wd)                            # AdamW: shrink θ directly
                elif wd:
                    g = g + wd * p                                 # Adam: L2 term in the gradient
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                state["m"] = b1 * state["m"] + (1 - b1) * g
                state["v"] = b2 * state["v"] + (1 - b2) * g * g
                m_hat_scale = 1 / (1 - b1 ** t)                    # bias corrections
                v_hat_sqrt = state["v"].sqrt() / math.sqrt(1 - b2 ** t)
                p.sub_(lr * m_hat_scale * state["m"] / (v_hat_sqrt + eps))  # minus: descend
        return loss


class ScratchRMSprop(torch.optim.Optimizer):
    """RMSprop (optionally with momentum), in plain tensor math."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _maybe_closure(closure)
        for group in self.param_groups:
            lr, rho, eps, wd, mu = (group[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + wd * p if wd else p.grad
                state = self.state[p]
                if not state:
                    state.update(v=torch.zeros_like(p), b=torch.zeros_like(p))
                state["v"] = rho * state["v"] + (1 - rho) * g * g
                step = g / (state["v"].sqrt() + eps)
                if mu:
                    state["b"] = mu * state["b"] + step
                    step = state["b"]
                p.sub_(lr * step)
        return loss


class ScratchAdagrad(torch.optim.Optimizer):
    """Adagrad: per-coordinate steps shrink with the running sum of squared gradients."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, eps=1e-10, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _maybe_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p if group["weight_decay"] else p.grad
                state = self.state[p]
                if not state:
                    state.update(t=0, s=torch.zeros_like(p))
                state["t"] += 1
                state["s"] = state["s"] + g * g
                lr = group["lr"] / (1 + (state["t"] - 1) * group["lr_decay"])
                p.sub_(lr * g / (state["s"].sqrt() + group["eps"]))
        return loss


def _maybe_closure(closure):
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class OptimInfo:
    """What the registry knows about one optimizer name: its classes, defaults and which knobs it takes.

    ``family`` names the update rule (``sgd``, ``rmsprop``, ``adagrad``, ``adam``); the flags say which knobs the
    rule is built around (``takes_momentum``: heavy-ball/Nesterov μ; ``takes_betas``: Adam's β₁, β₂;
    ``takes_alpha``: RMSprop's ρ), so callers ask the registry instead of restating lists of names.
    """
    cls: type
    scratch: type
    defaults: dict = field(default_factory=dict)
    family: str = "sgd"
    takes_momentum: bool = False
    takes_betas: bool = False
    takes_alpha: bool = False
    decoupled_decay: bool = False


# name -> OptimInfo. Defaults are the twin's and torch's shared options.
OPTIMIZERS: dict[str, OptimInfo] = {
    "sgd": OptimInfo(torch.optim.SGD, ScratchSGD, {}),
    "gd": OptimInfo(torch.optim.SGD, ScratchSGD, {}),  # full-batch use of the same rule
    "momentum": OptimInfo(torch.optim.SGD, ScratchSGD, {"momentum": 0.9}, takes_momentum=True),
    "nesterov": OptimInfo(torch.optim.SGD, ScratchSGD, {"momentum": 0.9, "nesterov": True}, takes_momentum=True),
    "adam": OptimInfo(torch.optim.Adam, ScratchAdam, {}, "adam", takes_betas=True),
    "adamw": OptimInfo(torch.optim.AdamW, ScratchAdam, {"weight_decay": 0.01}, "adam", takes_betas=True,
                       decoupled_decay=True),
    "rmsprop": OptimInfo(torch.optim.RMSprop, ScratchRMSprop, {}, "rmsprop", takes_alpha=True),
    "adagrad": OptimInfo(torch.optim.Adagrad, ScratchAdagrad, {}, "adagrad"),
}


# option -> (low, high, low included, high included): what each update rule accepts (torch accepts more for a
# few, e.g. momentum 5, which only makes the loss explode)
OPTION_RANGES = {"lr": (0, math.inf, True, False), "weight_decay": (0, math.inf, True, False),
                 "momentum": (0, 1, True, False), "dampening": (0, 1, True, True), "eps": (0, math.inf, True, False),
                 "alpha": (0, 1, True, False), "lr_decay": (0, math.inf, True, False)}


def check_option(name: str, value):
    """One optimizer option checked against its range (``betas``: a pair in [0, 1); ``nesterov``: a bool);
    returns it (``betas`` as a tuple). Names without a known range pass through."""
    if name == "betas":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
            raise ValueError(f"betas must be a pair (β₁, β₂), e.g. betas=(0.9, 0.999), got {value!r}")
        for i, b in enumerate(value):
            if not 0 <= check_number(f"betas[{i}]", b) < 1:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}; e.g. betas=(0.9, 0.999)")
        return tuple(float(b) for b in value)
    if name == "nesterov":
        if not isinstance(value, bool):
            raise ValueError(f"nesterov must be True or False, got {value!r}")
        return value
    if name in OPTION_RANGES:
        lo, hi, lo_in, hi_in = OPTION_RANGES[name]
        x = check_number(name, value)
        if x < lo or (x == lo and not lo_in) or x > hi or (x == hi and not hi_in):
            span = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
            raise ValueError(f"{name} must be in {span}, got {value!r}")
        return x   # a Python float: a tensor lr would be changed in place by a scheduler (every record the same)
    return value


def _accepted(cls) -> set[str]:
    return {n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "params")}


def _param_groups(params: list, accepted: set[str], name: str) -> list[dict]:
    """Groups read once (an iterator of parameters is used up), each key known and each value in its range."""
    groups = []
    for i, g in enumerate(params):
        where = f"param group {i}"
        if not isinstance(g, dict):
            raise TypeError(f"{where} is a {type(g).__name__}: pass either parameters or param-group dicts "
                            "({'params': [...], 'lr': ...}), not a mix")
        if "params" not in g:
            raise ValueError(f"{where} has no 'params' entry (it has {', '.join(map(repr, g)) or 'nothing'}); "
                             "each group is {'params': model.part.parameters(), 'lr': ...}")
        check_keys([k for k in g if k not in ("params", "name")], accepted, where, f"optimizer {name!r}")
        opts = {k: check_option(k, v) for k, v in g.items() if k not in ("params", "name")}
        p = g["params"]
        groups.append({**g, **opts, "params": [p] if isinstance(p, torch.Tensor) else list(p)})
    return groups


def make_optimizer(name: str | type | torch.optim.Optimizer, params_or_model: nn.Module | Iterable[Any],
                   lr: float = 1e-3, *, scratch: bool = False, **options: Any) -> torch.optim.Optimizer:
    """``make_optimizer("adamw", model, lr=3e-4, weight_decay=0.01)``.

    ``params_or_model`` is a model (biases/norm weights then skip weight decay), an iterable of parameters
    or of param-group dicts (keys: ``params`` and this optimizer's options, plus an optional ``name``). An
    existing optimizer passes through unchanged. An unknown option or a value out of its range (momentum 5,
    a negative lr, ``betas=0.9``) fails naming it.
    """
    if isinstance(name, torch.optim.Optimizer):
        return name
    if not isinstance(name, str):
        raise TypeError(f"make_optimizer takes an optimizer name or a torch.optim.Optimizer, got {name!r}")
    info = choose("optimizer", name, OPTIMIZERS)
    lr = check_option("lr", lr)
    accepted = _accepted(info.scratch if scratch else info.cls) - {"decoupled"}
    check_keys(options, accepted, "make_optimizer", f"optimizer {name!r}")
    opts = {**info.defaults, **{k: check_option(k, v) for k, v in options.items()}}

    wd = opts.get("weight_decay", 0.0)
    if isinstance(params_or_model, torch.Tensor):
        raise TypeError(f"make_optimizer takes a model or an iterable of parameters, got one tensor; "
                        f"wrap it in a list: make_optimizer({name!r}, [p], ...)")
    if isinstance(params_or_model, nn.Module):
        decay, no_decay = split_decay_params(params_or_model)
        if wd:
            params = [g for g in ({"params": decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        else:
            params = decay + no_decay
    else:
        params = list(params_or_model)
        if any(isinstance(g, dict) for g in params):  # param groups: read each group's iterable once
            params = [g for g in _param_groups(params, accepted, name) if g["params"]]
    n = sum(len(g["params"]) if isinstance(g, dict) else 1 for g in params)
    if n == 0:
        raise ValueError(f"no parameters to optimize for {name!r}: the model or list has no parameters with "
                         "requires_grad=True (did you freeze everything, or pass model.parameters() twice?)")
    if scratch:
        if info.family == "adam":
            opts["decoupled"] = info.decoupled_decay
        return info.scratch(params, lr=lr, **opts)
    return info.cls(params, lr=lr, **opts)
