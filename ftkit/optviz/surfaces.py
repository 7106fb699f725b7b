r"""2-D test functions with known minima, and the paths real optimizers take on them.

Every surface is a function :math:`f(x, y)` written with plain arithmetic, so it runs on torch tensors (and on
NumPy arrays) of any shape, together with its gradient in closed form (tests check it against autograd):

* Rosenbrock  :math:`(1-x)^2 + 100(y-x^2)^2`, minimum (1, 1) at the end of a long curved valley.
* Beale       :math:`(1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2`, minimum (3, 0.5).
* Booth       :math:`(x+2y-7)^2 + (2x+y-5)^2`, minimum (1, 3); a quadratic with Hessian eigenvalues 2 and 18.
* Himmelblau  :math:`(x^2+y-11)^2 + (x+y^2-7)^2`, four minima with :math:`f=0`.
* Rastrigin   :math:`20 + \sum_i x_i^2 - 10\cos 2\pi x_i`, minimum (0, 0) among a grid of local minima.
* saddle      :math:`x^2 - y^2`, a saddle at (0, 0) and no minimum.
* quadratic   :math:`\tfrac12 w^\top A w` with :math:`A=\mathrm{diag}(1/κ, 1)`: eigenvalues
  :math:`λ_n=1/κ \le λ_1=1`, condition number κ, minimum (0, 0).

Your own function: ``make_surface(lambda x, y: x**2 + 3*torch.sin(y), domain=((-3, 3), (-3, 3)))`` takes any
scalar torch expression; its gradient comes from autograd, batched over all runs with ``torch.func.vmap``.

The paths live in :mod:`ftkit.optviz.races` (``race``, ``trajectory``, ``basins``, ``rate_sweep``, re-exported here),
advanced by the batched engine of :mod:`ftkit.optviz.gd_engine`.

Quadratic theory (step :math:`η`, eigenvalues :math:`λ_n \le λ \le λ_1`, :math:`κ=λ_1/λ_n`):

* GD :math:`w ← w - ηAw` contracts each eigen-direction by :math:`|1-ηλ|`: stable iff :math:`ηλ_1 < 2`;
  the best :math:`η=2/(λ_1+λ_n)` gives rate :math:`(κ-1)/(κ+1)`.
* Heavy ball (torch SGD momentum, :math:`b ← μb+g,\ w ← w-ηb`, i.e.
  :math:`w_{t+1}=w_t-ηg_t+μ(w_t-w_{t-1})`): per direction the rate is the largest root of
  :math:`z^2-(1+μ-ηλ)z+μ`; stable iff :math:`ηλ_1 < 2+2μ`; the best :math:`η=(2/(\sqrt{λ_1}+\sqrt{λ_n}))^2`,
  :math:`μ=((\sqrt κ-1)/(\sqrt κ+1))^2` give rate :math:`(\sqrt κ-1)/(\sqrt κ+1)`.

Rates are per-step contractions of :math:`\|w-w^*\|`; :func:`convergence_rate` measures them on a run's tail.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..optim import OPTIMIZERS
from ..utils import check_number, choose

__all__ = ["Surface", "SURFACES", "make_surface", "function_surface",
           "convergence_rate", "gd_rate", "heavy_ball_rate", "heavy_ball_rate_map", "predicted_rate", "quadratic_theory"]


def _cos(x):
    return torch.cos(x) if isinstance(x, torch.Tensor) else np.cos(x)


def _sin(x):
    return torch.sin(x) if isinstance(x, torch.Tensor) else np.sin(x)


@dataclass(frozen=True)
class Surface:
    """A 2-D test function: ``surface(x, y)`` is f, ``surface.value_and_grad(x, y)`` gives (f, ∂f/∂x, ∂f/∂y).

    ``lr`` holds a learning rate per optimizer that works on this surface; where ``budget`` names an optimizer,
    that optimizer at that lr lands within ``tol`` of a minimum from ``start`` in at most that many steps
    (tests and the notebook check every such claim).
    """
    name: str
    formula: str                                   # LaTeX
    value_and_grad: Callable                       # (x, y) -> (f, fx, fy), torch or NumPy
    domain: tuple[tuple[float, float], tuple[float, float]]
    start: tuple[float, float]
    minima: tuple[tuple[float, float], ...] = ()
    log_color: bool = False                        # colour contours by log10(f + 0.01): f spans decades
    lr: dict[str, float] = field(default_factory=dict)
    budget: dict[str, int] = field(default_factory=dict)
    tol: float = 1e-3
    constant_hessian: bool = False                 # a quadratic: the rate theory holds everywhere, not just near w*
    local_minima: tuple[tuple[float, float], ...] = ()   # other stationary points a path may settle in
    function: Callable | None = None               # a user's torch function f(x, y) (see function_surface)

    def __call__(self, x, y):
        if self.function is not None and isinstance(x, torch.Tensor):
            return _batched(self.function, x, y)   # differentiable (hessian_eigenvalues needs that)
        return self.value_and_grad(x, y)[0]

    def grid(self, n: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``xs (n,), ys (n,), Z (n, n)`` with ``Z[i, j] = f(xs[j], ys[i])``, the layout plotly's contour wants."""
        (x0, x1), (y0, y1) = self.domain
        xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
        return xs, ys, self(*np.meshgrid(xs, ys))

    def distance(self, points) -> np.ndarray:
        """Distance of each point ``(..., 2)`` to the nearest minimum (``inf`` for a surface without one)."""
        points = np.asarray(points, dtype=float)
        if not self.minima:
            return np.full(points.shape[:-1], np.inf)
        return np.min([np.hypot(*(points - m).T) for m in self.minima], axis=0)

    def hessian_eigenvalues(self, point=None) -> tuple[float, ...]:
        """Eigenvalues of the Hessian (autograd on a float64 2-vector) at ``point``, by default the first minimum
        (the domain's centre for a surface without one: the saddle point); they set GD's local stability edge."""
        if point is None:
            point = self.minima[0] if self.minima else np.mean(self.domain, axis=1)
        w = torch.tensor(point, dtype=torch.float64)
        hessian = torch.autograd.functional.hessian(lambda v: self(v[0], v[1]), w)
        return tuple(float(v) for v in torch.linalg.eigvalsh(hessian))

    def in_domain(self, point) -> bool:
        (x0, x1), (y0, y1) = self.domain
        return x0 <= point[0] <= x1 and y0 <= point[1] <= y1


# --------------------------------------------------------------------------- the functions
def _rosenbrock(x, y):
    r = y - x * x
    return (1 - x) ** 2 + 100 * r * r, -2 * (1 - x) - 400 * x * r, 200 * r


def _beale(x, y):
    a, b, c = 1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y ** 3
    fx = 2 * a * (y - 1) + 2 * b * (y * y - 1) + 2 * c * (y ** 3 - 1)
    fy = 2 * a * x + 4 * b * x * y + 6 * c * x * y * y
    return a * a + b * b + c * c, fx, fy


def _booth(x, y):
    a, b = x + 2 * y - 7, 2 * x + y - 5
    return a * a + b * b, 2 * a + 4 * b, 4 * a + 2 * b


def _himmelblau(x, y):
    a, b = x * x + y - 11, x + y * y - 7
    return a * a + b * b, 4 * x * a + 2 * b, 2 * a + 4 * y * b


def _rastrigin(x, y):
    tau = 2 * math.pi
    f = 20 + x * x - 10 * _cos(tau * x) + y * y - 10 * _cos(tau * y)
    return f, 2 * x + 10 * tau * _sin(tau * x), 2 * y + 10 * tau * _sin(tau * y)


def _rastrigin_minima(lo: float = -5.12, hi: float = 5.12) -> tuple[tuple[float, float], ...]:
    r"""Rastrigin's local minima: per axis the roots of :math:`2x + 20π\sin 2πx` near each integer (Newton)."""
    roots = []
    for k in range(math.ceil(lo), math.floor(hi) + 1):
        x = float(k)
        for _ in range(20):
            x -= (2 * x + 20 * math.pi * math.sin(2 * math.pi * x)) / (2 + 40 * math.pi ** 2 * math.cos(2 * math.pi * x))
        roots.append(round(x, 12))
    return tuple((x, y) for x in roots for y in roots if (x, y) != (0.0, 0.0))


def _saddle(x, y):
    return x * x - y * y, 2 * x, -2 * y


def _quadratic(kappa: float):
    def value_and_grad(x, y):
        return 0.5 * (x * x / kappa + y * y), x / kappa, y
    return value_and_grad


_ALL = ("gd", "momentum", "nesterov", "rmsprop", "adam", "adamw")


def _quadratic_surface(kappa: float = 10.0) -> Surface:
    kappa = check_number("kappa", kappa, positive=True)
    if kappa < 1:
        raise ValueError(f"kappa is a condition number λ₁/λₙ and must be >= 1, got {kappa}")
    return Surface(
        "quadratic", r"\tfrac12\left(x^2/\kappa + y^2\right),\ \kappa=%g" % kappa, _quadratic(kappa),
        ((-3.0, 3.0), (-2.0, 2.0)), (-2.5, 1.5), ((0.0, 0.0),), True,
        lr=dict(gd=2 / (1 + 1 / kappa), momentum=0.5, nesterov=0.5, rmsprop=0.02, adam=0.05, adamw=0.05),
        constant_hessian=True)


_HIMMELBLAU_MINIMA = ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126))

# name -> builder(**options) -> Surface. Budgets were measured once and are re-checked by tests/the notebook.
SURFACES: dict[str, Callable[..., Surface]] = {
    "rosenbrock": lambda: Surface(
        "rosenbrock", r"(1-x)^2 + 100\,(y-x^2)^2", _rosenbrock, ((-2.0, 2.0), (-1.0, 3.0)), (-1.5, 2.5),
        ((1.0, 1.0),), True,
        lr=dict(gd=1e-3, momentum=1e-3, nesterov=1e-3, rmsprop=1e-2, adam=5e-2, adamw=5e-2)),
    "beale": lambda: Surface(
        "beale", r"(1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2", _beale, ((-4.5, 4.5), (-4.5, 4.5)),
        (1.0, 1.5), ((3.0, 0.5),), True,
        lr=dict(gd=1e-2, momentum=1e-3, nesterov=1e-3, rmsprop=5e-2, adam=5e-2, adamw=5e-2)),
    "booth": lambda: Surface(
        "booth", r"(x+2y-7)^2 + (2x+y-5)^2", _booth, ((-10.0, 10.0), (-10.0, 10.0)), (-8.0, 8.0),
        ((1.0, 3.0),), True,
        lr=dict(gd=0.05, momentum=0.01, nesterov=0.02, rmsprop=0.1, adam=0.5, adamw=0.5),
        budget=dict(gd=80, momentum=100, nesterov=70, rmsprop=200, adam=120, adamw=120), tol=1e-2,
        constant_hessian=True),
    "himmelblau": lambda: Surface(
        "himmelblau", r"(x^2+y-11)^2 + (x+y^2-7)^2", _himmelblau, ((-5.0, 5.0), (-5.0, 5.0)), (0.0, -4.0),
        _HIMMELBLAU_MINIMA, True,
        lr=dict(gd=1e-2, momentum=2e-3, nesterov=2e-3, rmsprop=2e-2, adam=0.1, adamw=0.1)),
    "rastrigin": lambda: Surface(
        "rastrigin", r"20 + \textstyle\sum_i x_i^2 - 10\cos 2\pi x_i", _rastrigin,
        ((-5.12, 5.12), (-5.12, 5.12)), (3.2, -2.7), ((0.0, 0.0),), False,
        lr=dict(gd=2e-3, momentum=2e-3, nesterov=2e-3, rmsprop=5e-2, adam=0.1, adamw=0.1),
        local_minima=_rastrigin_minima()),
    "saddle": lambda: Surface(
        "saddle", r"x^2 - y^2", _saddle, ((-2.0, 2.0), (-2.0, 2.0)), (-1.8, 0.02), (), False,
        lr=dict(gd=0.05, momentum=0.02, nesterov=0.02, rmsprop=0.02, adam=0.05, adamw=0.05),
        constant_hessian=True),
    "quadratic": _quadratic_surface,
}


def make_surface(function, **options) -> Surface:
    """``make_surface("quadratic", kappa=100)``; ``make_surface(lambda x, y: ..., domain=...)`` (see
    :func:`function_surface`); a :class:`Surface` passes through unchanged."""
    if isinstance(function, Surface):
        if options:
            raise ValueError(f"options {sorted(options)} only apply when the surface is given by name")
        return function
    if callable(function):
        if "domain" not in options:
            raise ValueError("your own function needs domain=((x_min, x_max), (y_min, y_max)): the box to draw "
                             "and to start from")
        return function_surface(function, **options)
    name = function
    build = choose("function", name, SURFACES)
    try:
        return build(**options)
    except TypeError:
        raise ValueError(f"function {name!r} takes no options {sorted(options)}"
                         + ("; the quadratic takes kappa=" if name != "quadratic" else "")) from None


# --------------------------------------------------------------------------- your own function
def _batched(fn, x, y):
    """``fn`` on 0-d tensors, mapped over any shape of x, y with ``torch.func.vmap``."""
    flat = torch.func.vmap(fn)(x.reshape(-1), y.reshape(-1))
    return flat.reshape(x.shape)


def _autograd_value_and_grad(fn):
    grad_and_value = torch.func.vmap(torch.func.grad_and_value(fn, argnums=(0, 1)))

    def value_and_grad(x, y):
        as_numpy = not isinstance(x, torch.Tensor)
        tx, ty = (torch.as_tensor(np.asarray(v, dtype=float) if as_numpy else v, dtype=torch.float64)
                  for v in (x, y))
        tx, ty = torch.broadcast_tensors(tx, ty)
        with torch.enable_grad():
            (gx, gy), f = grad_and_value(tx.reshape(-1), ty.reshape(-1))
        out = [v.detach().reshape(tx.shape) for v in (f, gx, gy)]
        return tuple(v.numpy() for v in out) if as_numpy else tuple(out)
    return value_and_grad


def _check_domain(domain) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        (x0, x1), (y0, y1) = ((float(a), float(b)) for a, b in domain)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be two increasing pairs ((x_min, x_max), (y_min, y_max)), "
                         f"got {domain!r}") from None
    if not all(map(math.isfinite, (x0, x1, y0, y1))) or not (x0 < x1 and y0 < y1):
        raise ValueError(f"domain must be two increasing pairs ((x_min, x_max), (y_min, y_max)) of finite "
                         f"numbers, got {domain!r}")
    return (x0, x1), (y0, y1)


def function_surface(fn: Callable, domain, *, name: str = "custom", minima=(), start=None, lr=None,
                     log_color: bool = False, formula: str = "") -> Surface:
    """A :class:`Surface` from your torch function ``fn(x, y) -> scalar`` (0-d tensors in, one number out).

    Gradients come from autograd, batched over every run with ``torch.func.vmap(grad_and_value(fn))``.
    ``minima`` is optional (basin maps then find where paths settle); ``start`` defaults to a point a quarter
    in from the top-left corner; ``lr`` defaults to 0.01·width for the adaptive optimizers and 0.2/L for the
    GD family, with L the largest Hessian eigenvalue over a 5×5 grid of the domain.
    """
    if not callable(fn):
        raise ValueError(f"function must be a callable f(x, y) or a name, got {fn!r}")
    (x0, x1), (y0, y1) = _check_domain(domain)
    start = (x0 + 0.25 * (x1 - x0), y0 + 0.75 * (y1 - y0)) if start is None else tuple(map(float, start))
    try:
        value = fn(torch.tensor(start[0], dtype=torch.float64), torch.tensor(start[1], dtype=torch.float64))
    except Exception as e:          # noqa: BLE001  (any failure of user code: say where it happened)
        raise ValueError(f"your function failed on 0-d float64 tensors at {start}: {type(e).__name__}: {e}; "
                         "write it with torch operations on x and y") from None
    value = torch.as_tensor(value)
    if value.ndim != 0:
        raise ValueError(f"your function must return one number per (x, y) (a scalar), got shape "
                         f"{tuple(value.shape)}; reduce it, e.g. with .sum()")
    if not torch.isfinite(value):
        raise ValueError(f"your function is {float(value)} at the start {start}; pick a start (or domain) "
                         "where it is finite")
    value_and_grad = _autograd_value_and_grad(fn)
    if lr is None:
        gx, gy = np.meshgrid(np.linspace(x0, x1, 5), np.linspace(y0, y1, 5))
        # reverse-over-reverse: torch.func.hessian (forward-over-reverse) loads torch's jvp decompositions, which call
        # the deprecated torch.jit.script and print a FutureWarning in the notebook; for 2 inputs this is as cheap
        hessian = torch.func.vmap(torch.func.jacrev(torch.func.jacrev(lambda w: fn(w[0], w[1]))))(
            torch.tensor(np.c_[gx.ravel(), gy.ravel()]))
        curvature = float(np.nanmax(np.abs(torch.linalg.eigvalsh(hessian).numpy()), initial=1e-12))
        width = 0.5 * ((x1 - x0) + (y1 - y0))
        lr = {**dict.fromkeys(("gd", "sgd", "momentum", "nesterov"), 0.2 / max(curvature, 1e-12)),
              **dict.fromkeys(("rmsprop", "adam", "adamw", "adagrad"), 0.01 * width)}
    elif not isinstance(lr, dict):
        lr = dict.fromkeys(("gd", "sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "adagrad"),
                           check_number("lr", lr, positive=True))
    return Surface(name, formula or name, value_and_grad, ((x0, x1), (y0, y1)), start,
                   tuple(tuple(map(float, m)) for m in minima), log_color, dict(lr), function=fn)


# --------------------------------------------------------------------------- rates: predicted and measured
def convergence_rate(values, tail: float = 0.5, floor: float = 1e-250) -> float:
    r"""Per-step factor :math:`ρ` in :math:`v_t ≈ C ρ^t`, fitted by least squares to :math:`\log v_t` on the
    last ``tail`` share of the positive values above ``floor`` (e.g. :math:`\|w_t-w^*\|` or :math:`\sqrt{f}`)."""
    v = np.asarray(values, dtype=float)
    t = np.flatnonzero(np.isfinite(v) & (v > floor))
    if len(t) < 4:
        raise ValueError(f"need at least 4 positive finite values to fit a rate, got {len(t)}")
    t = t[int(len(t) * (1 - tail)):]
    if len(t) < 3:
        raise ValueError(f"tail={tail} leaves fewer than 3 values; use a longer run or a larger tail")
    return float(np.exp(np.polyfit(t, np.log(v[t]), 1)[0]))


def gd_rate(lr: float, eigenvalues) -> float:
    """GD on a quadratic: :math:`\\max_λ |1-ηλ|` (> 1 diverges)."""
    return float(max(abs(1 - lr * lam) for lam in eigenvalues))


def heavy_ball_rate(lr: float, momentum: float, eigenvalues) -> float:
    """Heavy ball on a quadratic: the largest root modulus of :math:`z^2-(1+μ-ηλ)z+μ` over the eigenvalues."""
    return float(max(np.abs(np.roots([1.0, -(1 + momentum - lr * lam), momentum])).max() for lam in eigenvalues))


def heavy_ball_rate_map(lrs, momenta, eigenvalues) -> np.ndarray:
    """:func:`heavy_ball_rate` on a grid: ``rates[i, j]`` at ``momenta[i]``, ``lrs[j]`` (vectorized roots of
    :math:`z^2-(1+μ-ηλ)z+μ`: complex pairs have modulus :math:`\\sqrt μ`, real ones :math:`|b ± \\sqrt{b^2-4μ}|/2`)."""
    eta, mu = np.meshgrid(np.asarray(lrs, dtype=float), np.asarray(momenta, dtype=float))
    rate = np.zeros_like(eta)
    for lam in eigenvalues:
        b = 1 + mu - eta * lam
        disc = b * b - 4 * mu
        root = np.sqrt(np.abs(disc))
        rate = np.maximum(rate, np.where(disc >= 0, np.maximum(np.abs(b + root), np.abs(b - root)) / 2, np.sqrt(mu)))
    return rate


def quadratic_theory(kappa: float, lam_max: float = 1.0, momentum: float = 0.9) -> dict[str, float]:
    """Stability edges and optimal settings/rates for GD and heavy ball on eigenvalues ``[lam_max/κ, lam_max]``."""
    l1, ln = lam_max, lam_max / kappa
    sk = math.sqrt(kappa)
    return {
        "gd_edge_lr": 2 / l1,
        "momentum_edge_lr": (2 + 2 * momentum) / l1,
        "gd_best_lr": 2 / (l1 + ln),
        "gd_best_rate": (kappa - 1) / (kappa + 1),
        "hb_best_lr": (2 / (math.sqrt(l1) + math.sqrt(ln))) ** 2,
        "hb_best_momentum": ((sk - 1) / (sk + 1)) ** 2,
        "hb_best_rate": (sk - 1) / (sk + 1),
    }


def predicted_rate(fn, optimizer: str, lr: float, **options) -> float:
    """Theory's per-step rate for ``gd``/``sgd`` (:func:`gd_rate`) or ``momentum`` (:func:`heavy_ball_rate`,
    ``momentum=`` as in the factory, default 0.9) on a surface with a constant Hessian (a quadratic)."""
    surface = make_surface(fn)
    if not surface.constant_hessian:
        raise ValueError(f"{surface.name!r} is not a quadratic; the rate theory needs a constant Hessian "
                         "(use 'quadratic' or 'booth')")
    eigs = surface.hessian_eigenvalues()
    name = optimizer.lower()
    if name in ("gd", "sgd") and not options.get("momentum"):
        return gd_rate(lr, eigs)
    if name == "momentum" or (name in ("gd", "sgd") and options.get("momentum")):
        return heavy_ball_rate(lr, options.get("momentum", OPTIMIZERS["momentum"].defaults["momentum"]), eigs)
    raise ValueError(f"no rate theory here for {optimizer!r}; it covers gd/sgd and momentum (heavy ball)")
