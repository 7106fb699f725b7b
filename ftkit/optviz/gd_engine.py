r"""A batched update-rule engine: every run of a race (optimizers × starts) advanced at once, equal to ``torch.optim``.

A race on a 2-D surface is many tiny problems: K optimizers from S starts, each a 2-vector. Stepping one
``torch.optim`` optimizer per run costs ≈ 85 µs of Python wrapper per ``step()`` (1,800 of them for 6 × 300),
whatever the arithmetic. Here all ``R = K·S`` parameters live in one float64 array, stored as ``(2, R)`` so that
x, y and every per-run coefficient are contiguous (broadcasting a ``(R, 1)`` column costs 5× more); runs that
share an update rule are neighbouring columns, and each rule advances them with a handful of vectorized operations
per step, its per-run hyper-parameters (η, μ, β₁, …) as ``(1, n)`` rows. One closed-form (or ``torch.func``)
gradient call per step feeds every run.

Each rule repeats ``torch.optim``'s single-tensor code operation by operation and in the same order (SGD
``buf·μ + (1-d)·g``, RMSprop's and Adam's ``addcmul``/``addcdiv``/``lerp``, bias corrections with Python's ``**``,
the schedulers' recursive lr), with torch's own fused kernels where torch fuses, so the two paths agree to
rounding: ``tests/test_optviz_gd_engine.py`` runs every rule on every surface from several starts for 300 steps against
:func:`run_torch` and asserts ≤ 1e-10 (float64) and the same cut step.
:func:`run_torch` is that reference (``race(..., engine="torch")``): one real optimizer per run.

Gradient noise (``noise``, the same draw for every optimizer from one start) is added to the gradient each
optimizer sees; the learning-rate schedule (:func:`lr_table`) multiplies each run's lr step by step exactly as
the torch path's :func:`ftkit.schedules.make_scheduler` (StepLR, CosineAnnealingLR) does.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import numpy as np
import torch

from ..optim import OPTIMIZERS, make_optimizer
from ..schedules import make_scheduler
from ..utils import check_int, check_number, choose, normalize_name

__all__ = ["RunSpec", "GD_SCHEDULES", "lr_factors", "lr_table", "resolve_schedule", "resolve_spec", "run_batched", "run_torch"]

# options each rule family understands (torch's names); anything else is refused before any work
_OPTIONS = {
    "sgd": {"momentum", "dampening", "nesterov", "weight_decay"},
    "rmsprop": {"alpha", "eps", "weight_decay", "momentum", "centered"},
    "adagrad": {"lr_decay", "eps", "weight_decay", "initial_accumulator_value"},
    "adam": {"betas", "eps", "weight_decay", "amsgrad"},
}
_TORCH_DEFAULTS = {     # torch.optim's own defaults, filled in so every row has every coefficient
    "sgd": dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    "rmsprop": dict(alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
    "adagrad": dict(lr_decay=0.0, eps=1e-10, weight_decay=0.0, initial_accumulator_value=0.0),
    "adam": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False),
}

# --------------------------------------------------------------------------- learning-rate schedules
GD_SCHEDULES = {
    "constant": {},
    "step": {"step_size": None, "gamma": 0.1},     # step_size None: a third of the steps
    "cosine": {},
}


def _schedule(name, steps: int, options: dict | None) -> tuple[str, dict]:
    defaults = choose("schedule", name, GD_SCHEDULES)
    options = dict(options or {})
    unknown = set(options) - set(defaults)
    if unknown:
        takes = ", ".join(sorted(defaults)) or "no options"
        raise ValueError(f"schedule {name!r} takes {takes}; got {sorted(unknown)}")
    opts = {**defaults, **options}
    if "step_size" in opts:
        opts["step_size"] = check_int("step_size", opts["step_size"] or max(steps // 3, 1))
        opts["gamma"] = check_number("gamma", opts["gamma"])
    return normalize_name(name), opts


def resolve_schedule(schedule="constant", steps: int = 100, options: dict | None = None) -> tuple[str, dict]:
    """``(name, options)`` with defaults filled in; an unknown name or option fails listing the choices."""
    return _schedule(schedule, steps, options)


def _multipliers(schedule: tuple[str, dict], steps: int) -> list[float]:
    """lr_t / lr_{t-1} for t = 1…steps-1, in Python floats exactly as torch's StepLR and CosineAnnealingLR
    (eta_min 0) compute them: both update ``group["lr"]`` recursively, so the engine multiplies the same way."""
    name, opts = schedule
    if name == "step":
        return [opts["gamma"] if t % opts["step_size"] == 0 else 1.0 for t in range(1, steps)]
    if name == "cosine":
        return [(1 + math.cos(math.pi * t / steps)) / (1 + math.cos(math.pi * (t - 1) / steps))
                for t in range(1, steps)]
    return [1.0] * (steps - 1)


def lr_table(schedule: tuple[str, dict], lrs, steps: int) -> np.ndarray:
    """Each run's lr at steps 0…steps-1, ``(steps, 1, runs)``: ``lr_t = m_t · lr_{t-1}`` as torch's schedulers
    (computed once per distinct lr: the starts of one optimizer share it)."""
    values, inverse = np.unique(np.asarray(lrs, dtype=float), return_inverse=True)
    if schedule[0] == "constant":
        return np.broadcast_to(np.asarray(lrs, dtype=float)[None, None, :], (steps, 1, len(inverse)))
    table = np.empty((steps, len(values)))
    table[0] = values
    table[1:] = np.asarray(_multipliers(schedule, steps))[:, None]
    return np.multiply.accumulate(table, axis=0)[:, None, inverse.ravel()]


def lr_factors(schedule="constant", steps: int = 100, options: dict | None = None) -> np.ndarray:
    r"""The factor on every run's lr at steps 0…steps-1: 1 (constant), :math:`γ^{\lfloor t/s\rfloor}` (step),
    :math:`(1+\cos(πt/T))/2` with T = ``steps`` (cosine, to 0)."""
    return lr_table(resolve_schedule(schedule, steps, options), [1.0], steps)[:, 0, 0]


def _power_table(col: np.ndarray, steps: int, kind: str) -> np.ndarray:
    """Adam's bias corrections per row for k = 1…steps: ``1 - b**k`` (kind "bc") or ``(1 - b**k)**0.5`` ("bc_sqrt")
    in Python floats, as torch computes them (NumPy's SIMD pow may differ from C pow in the last bit)."""
    values, inverse = np.unique(col, return_inverse=True)
    table = np.stack([_bias_corrections(float(b), steps, kind) for b in values], axis=1)
    return table[:, None, inverse.ravel()]


@functools.lru_cache(maxsize=64)
def _bias_corrections(b: float, steps: int, kind: str) -> np.ndarray:
    if kind == "bc":
        return np.array([1 - b ** k for k in range(1, steps + 1)])
    return np.array([(1 - b ** k) ** 0.5 for k in range(1, steps + 1)])


# --------------------------------------------------------------------------- run specs
class RunSpec(NamedTuple):
    name: str          # the registry name, normalised
    family: str        # the update rule: sgd, rmsprop, adagrad, adam
    lr: float
    options: dict      # every coefficient the rule reads (registry and torch defaults filled in)
    given: dict        # what the caller passed (the torch path hands these to make_optimizer)


def resolve_spec(name: str, lr: float, options: dict) -> RunSpec:
    """(name, family, lr, options with the registry's and torch's defaults): checked once by the real factory
    (a throw-away optimizer on a 2-vector), so a bad option fails here with the factory's or torch's message."""
    info = choose("optimizer", name, OPTIMIZERS)
    try:
        make_optimizer(name, [torch.zeros(2, dtype=torch.float64, requires_grad=True)], lr=lr, **options)
    except TypeError as e:
        raise ValueError(f"optimizer {name!r}: {e}; it takes {', '.join(sorted(_OPTIONS[info.family]))}") from None
    opts = {**_TORCH_DEFAULTS[info.family], **info.defaults, **options}
    extra = set(opts) - _OPTIONS[info.family]
    if extra:
        raise ValueError(f"the batched engine does not implement {sorted(extra)} for {name!r}; "
                         f"use engine='torch' (it takes {', '.join(sorted(_OPTIONS[info.family]))})")
    return RunSpec(normalize_name(name), info.family, float(lr), opts, dict(options))


def _column(specs, key, index=None) -> np.ndarray:
    """A per-run hyper-parameter as a (1, runs) float row."""
    return np.array([[float(s.options[key] if index is None else s.options[key][index]) for s in specs]])


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)                          # shares memory: NumPy and torch see the same numbers


class _Rule:
    """The runs of one update rule: a slice of columns of the (2, R) parameter array and the state the rule keeps.

    torch's CPU kernels fuse ``add(…, alpha=a)``, ``addcmul`` and ``lerp`` into one rounding (FMA), so those
    run as torch ops with a per-run coefficient row (``addcmul(x, y, c)`` rounds as ``x.add(y, alpha=a)`` does);
    everything torch rounds op by op (mul, div, sqrt, ``addcdiv``) runs in NumPy on the same memory.
    """

    def __init__(self, family: str, specs: list, lrs: np.ndarray, steps: int, repeat: int):
        n = len(specs) * repeat
        col = lambda key, index=None: np.repeat(_column(specs, key, index), repeat, axis=1)  # noqa: E731
        first = specs[0].options                         # flags every member shares (see _rule_key)
        self.family, self.steps = family, steps
        self.centered, self.amsgrad = bool(first.get("centered")), bool(first.get("amsgrad"))
        self.has_mom = first.get("momentum", 0) > 0
        self.neg_lr = -lrs                               # (steps, 1, n): minus each run's lr at each step
        self.wd = _t(col("weight_decay"))
        self.decay = bool(self.wd.any())
        t = np.arange(1, steps + 1, dtype=float)[:, None, None]
        if family == "sgd":
            mu, nest = col("momentum"), col("nesterov") != 0
            self.has_buf, self.any_nest = bool(mu.any()), bool(nest.any())
            self.mu, self.mu_np, self.nest = _t(mu), mu, torch.from_numpy(np.repeat(nest, 2, axis=0))
            self.damp = _t(np.where(mu != 0, 1 - col("dampening"), 1.0))  # torch ignores dampening without momentum
        elif family == "rmsprop":
            self.alpha, self.one_minus_alpha, self.eps = col("alpha"), _t(1 - col("alpha")), col("eps")
            self.one_minus_alpha_np = self.one_minus_alpha.numpy()
            self.mu = col("momentum")
            self.v, self.ga, self.buf = np.zeros((2, n)), np.zeros((2, n)), np.zeros((2, n))
        elif family == "adagrad":
            self.eps = col("eps")
            self.neg_clr = -(lrs / (1 + (t - 1) * col("lr_decay")))
            self.s = np.repeat(col("initial_accumulator_value"), 2, axis=0)
        else:                                            # adam / adamw (decoupled decay), optionally amsgrad
            b1, b2 = col("betas", 0), col("betas", 1)
            self.w1, self.b2, self.one_minus_b2_np, self.eps = _t(1 - b1), b2, 1 - b2, col("eps")
            dec = np.repeat([[float(OPTIMIZERS[s.name].decoupled_decay) for s in specs]], repeat, axis=1)
            self.wd_l2, self.wd_dec = self.wd * _t(1 - dec), self.wd.numpy() * dec
            self.any_l2 = bool(self.wd_l2.any())
            bc1 = _power_table(b1, steps, "bc")
            self.bc2_sqrt = _power_table(b2, steps, "bc_sqrt")
            self.decay_factor = 1 - lrs * self.wd_dec                    # param.mul_(1 - lr·wd), per step
            self.neg_step_size = -(lrs / bc1)
            self.m, self.v, self.vmax = np.zeros((2, n)), np.zeros((2, n)), np.zeros((2, n))

    def bind(self, p: np.ndarray, g: np.ndarray) -> "_Rule":
        """Fix this rule's rows of the parameter and gradient arrays, and make the torch views once."""
        self.p, self.g, self.pt, self.gt = p, g, _t(p), _t(g)
        self.tmp = np.empty_like(p)
        self.tmp_t = _t(self.tmp)
        self.neg_lr_t = _per_step(self.neg_lr)
        for name in ("v", "ga", "buf", "s", "m"):
            if isinstance(getattr(self, name, None), np.ndarray):
                setattr(self, name + "_t", _t(getattr(self, name)))
        return self

    def _scaled(self, col: np.ndarray, g: np.ndarray) -> torch.Tensor:
        """``col·g`` in a reused buffer, as a torch view (NumPy's multiply rounds exactly as torch's)."""
        np.multiply(col, g, out=self.tmp)
        return self.tmp_t

    def step(self, t: int) -> None:
        """One torch.optim step of every row, in torch's operation order (the rows of ``p`` change in place)."""
        p, g, pt, gt = self.p, self.g, self.pt, self.gt
        if self.decay:
            if self.family == "adam":
                p *= self.decay_factor[t]                              # AdamW: param.mul_(1 - lr·wd)
                if self.any_l2:
                    gt = torch.addcmul(gt, pt, self.wd_l2)             # Adam: grad.add(param, alpha=wd)
            else:
                gt = torch.addcmul(gt, pt, self.wd)
            g = gt.numpy()
        if self.family == "sgd":
            if self.has_buf:
                if t == 0:
                    self.buf_t = gt.clone()                            # buf = clone(grad)
                    self.buf = self.buf_t.numpy()
                else:
                    self.buf *= self.mu_np
                    self.buf_t.addcmul_(gt, self.damp)                 # mul_(μ).add_(grad, alpha=1-dampening)
                gt = torch.where(self.nest, torch.addcmul(gt, self.buf_t, self.mu), self.buf_t) if self.any_nest \
                    else self.buf_t                                    # nesterov: grad.add(buf, alpha=μ)
            pt.addcmul_(gt, self.neg_lr_t[t])                          # param.add_(grad, alpha=-lr)
        elif self.family == "rmsprop":
            self.v *= self.alpha
            self.v_t.addcmul_(self._scaled(self.one_minus_alpha_np, g), gt)   # addcmul_(g, g, value=1-α)
            if self.centered:
                self.ga_t.lerp_(gt, self.one_minus_alpha)              # grad_avg.lerp_(grad, 1-α)
                avg = np.sqrt(torch.addcmul(self.v_t, -self.ga_t, self.ga_t).numpy()) + self.eps
            else:
                avg = np.sqrt(self.v) + self.eps
            if self.has_mom:
                self.buf *= self.mu
                self.buf += g / avg                                    # addcdiv_(grad, avg)
                pt.addcmul_(self.buf_t, self.neg_lr_t[t])              # add_(buf, alpha=-lr)
            else:
                p += (self.neg_lr[t] * g) / avg                        # addcdiv_(grad, avg, value=-lr)
        elif self.family == "adagrad":
            self.s_t.addcmul_(gt, gt)                                  # addcmul_(g, g, value=1)
            p += (self.neg_clr[t] * g) / (np.sqrt(self.s) + self.eps)  # addcdiv_(g, std, value=-clr)
        else:
            self.m_t.lerp_(gt, self.w1)                                # exp_avg.lerp_(grad, 1-β₁)
            self.v *= self.b2
            self.v_t.addcmul_(self._scaled(self.one_minus_b2_np, g), gt)      # addcmul_(g, g, value=1-β₂)
            v = np.maximum(self.vmax, self.v, out=self.vmax) if self.amsgrad else self.v
            denom = np.sqrt(v) / self.bc2_sqrt[t] + self.eps
            p += (self.neg_step_size[t] * self.m) / denom             # addcdiv_(m, denom, value=-step_size)


def _per_step(table: np.ndarray) -> list[torch.Tensor]:
    """Torch views of a (steps, 1, rows) table, one per step (one shared view when every step is the same)."""
    if (table == table[0]).all():
        return [_t(table[0])] * len(table)
    return [_t(row) for row in table]


def _rule_key(family: str, opts: dict) -> tuple:
    """Runs that can share one vectorized rule: branches torch takes per optimizer become separate groups."""
    if family == "rmsprop":
        return family, bool(opts["centered"]), opts["momentum"] > 0
    if family == "adam":
        return family, bool(opts["amsgrad"])
    return (family,)


def run_batched(value_and_grad: Callable, starts, specs, steps: int, *, schedule=("constant", {}), noise=None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Advance ``len(specs)`` optimizers × ``len(starts)`` starts for ``steps`` steps, all at once.

    ``specs``: :class:`RunSpec` from :func:`resolve_spec`; ``schedule``: from
    :func:`resolve_schedule`;
    ``noise``: ``(steps, S, 2)`` added to each start's gradient (all optimizers see the same draw).
    Returns ``points (steps+1, K, S, 2)`` and ``losses (steps+1, K, S)``; diverging rows simply run on
    (their overflow is silenced: the caller cuts them).
    """
    starts = np.asarray(starts, dtype=float).reshape(-1, 2)
    K, S = len(specs), len(starts)
    keys = [_rule_key(s.family, s.options) for s in specs]
    order = sorted(range(K), key=keys.__getitem__)            # stable: each rule's runs become neighbours
    rules, begin = [], 0
    for key in dict.fromkeys(keys[k] for k in order):
        members = [specs[k] for k in order if keys[k] == key]
        lrs = lr_table(schedule, np.repeat([m.lr for m in members], S), steps)
        rule = _Rule(key[0], members, lrs, steps, S)
        rules.append((slice(begin, begin + len(members) * S), rule))
        begin += len(members) * S

    P = np.ascontiguousarray(np.tile(starts, (K, 1)).T)      # column k·S + s (in `order`): optimizer order[k], start s
    G = np.empty_like(P)
    rules = [rule.bind(P[:, rows], G[:, rows]) for rows, rule in rules]
    x, y = P[0], P[1]
    points, losses = np.empty((steps + 1, 2, K * S)), np.empty((steps + 1, K * S))
    if noise is not None:
        noise_t = np.asarray(noise).transpose(0, 2, 1)[:, :, None, :]   # (steps, 2, 1, S): the same for each optimizer
    with np.errstate(all="ignore"):
        for t in range(steps):
            points[t] = P
            losses[t], G[0], G[1] = value_and_grad(x, y)
            if noise is not None:
                G.reshape(2, K, S)[:] += noise_t[t]
            for rule in rules:
                rule.step(t)
        points[steps] = P
        losses[steps] = value_and_grad(x, y)[0]
    back = np.argsort(order)                                  # rows back to the caller's optimizer order
    points, losses = points.reshape(steps + 1, 2, K, S), losses.reshape(steps + 1, K, S)
    if order != sorted(order):
        points, losses = points[:, :, back], losses[:, back]
    return points.transpose(0, 2, 3, 1), losses               # a view: (steps+1, K, S, 2)


def run_torch(value_and_grad: Callable, starts, specs, steps: int, *, schedule=("constant", {}), noise=None,
              scratch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The reference: one real ``torch.optim`` optimizer (``make_optimizer``; the from-scratch twin with
    ``scratch=True``) and scheduler (``make_scheduler``) per run, each owning a leaf view of one row of a shared
    (R, 2) tensor whose ``.grad`` one gradient call fills. Same inputs and outputs as :func:`run_batched`."""
    starts = np.asarray(starts, dtype=float).reshape(-1, 2)
    K, S = len(specs), len(starts)
    P = torch.tensor(np.tile(starts, (K, 1)), dtype=torch.float64)
    G = torch.zeros_like(P)
    P_np, G_np = P.numpy(), G.numpy()                         # the same memory, for cheap NumPy math
    name, sched_opts = schedule
    optimizers, schedulers = [], []
    for i in range(K * S):
        spec = specs[i // S]
        p = P[i].detach()                                     # a leaf that shares row i's storage
        p.grad = G[i]
        extra = {} if scratch else {"foreach": False}         # a 2-vector: skip torch's foreach/fused probe
        opt = make_optimizer(spec.name, [p], lr=spec.lr, scratch=scratch, **{**extra, **spec.given})
        optimizers.append(opt)
        if name == "step":
            schedulers.append(make_scheduler("step", opt, **sched_opts))
        elif name == "cosine":
            schedulers.append(make_scheduler("cosine", opt, total_steps=steps))
    points, losses = np.empty((steps + 1, K * S, 2)), np.empty((steps + 1, K * S))
    x, y = P_np[:, 0], P_np[:, 1]
    with torch.no_grad(), np.errstate(all="ignore"):
        for t in range(steps):
            points[t] = P_np
            losses[t], G_np[:, 0], G_np[:, 1] = value_and_grad(x, y)
            if noise is not None:
                G_np.reshape(K, S, 2)[:] += noise[t]
            for opt in optimizers:
                opt.step()
            for sched in schedulers:
                sched.step()
        points[steps] = P_np
        losses[steps] = value_and_grad(x, y)[0]
    return points.reshape(steps + 1, K, S, 2), losses.reshape(steps + 1, K, S)
