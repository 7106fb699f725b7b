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

``race(surface, ["gd", "adam"], start, steps)`` runs *real* ``torch.optim`` optimizers built by
:func:`ftkit.optim.make_optimizer` (or their from-scratch twins with ``scratch=True``) from one start. All runs
share one ``(runs, 2)`` float64 tensor: each optimizer owns a row (a leaf view of it), one closed-form gradient
call per step fills every row's ``.grad`` at once, so the loop does nothing per step beyond the optimizer steps.

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

from .optim import OPTIMIZERS, make_optimizer
from .utils import check_int, check_number, choose

__all__ = ["Surface", "Trajectory", "SURFACES", "make_surface", "trajectory", "race", "convergence_rate",
           "gd_rate", "heavy_ball_rate", "predicted_rate", "rate_sweep", "quadratic_theory"]


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

    def __call__(self, x, y):
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
        lr=dict(gd=2e-3, momentum=2e-3, nesterov=2e-3, rmsprop=5e-2, adam=0.1, adamw=0.1)),
    "saddle": lambda: Surface(
        "saddle", r"x^2 - y^2", _saddle, ((-2.0, 2.0), (-2.0, 2.0)), (-1.8, 0.02), (), False,
        lr=dict(gd=0.05, momentum=0.02, nesterov=0.02, rmsprop=0.02, adam=0.05, adamw=0.05),
        constant_hessian=True),
    "quadratic": _quadratic_surface,
}


def make_surface(name, **options) -> Surface:
    """``make_surface("quadratic", kappa=100)``; a :class:`Surface` passes through unchanged."""
    if isinstance(name, Surface):
        if options:
            raise ValueError(f"options {sorted(options)} only apply when the surface is given by name")
        return name
    build = choose("function", name, SURFACES)
    try:
        return build(**options)
    except TypeError:
        raise ValueError(f"function {name!r} takes no options {sorted(options)}"
                         + ("; the quadratic takes kappa=" if name != "quadratic" else "")) from None


# --------------------------------------------------------------------------- optimizer paths
@dataclass
class Trajectory:
    """One optimizer's path: ``points (k+1, 2)`` and ``losses (k+1,)`` for steps 0…k.

    A run that leaves the bound box (or whose loss stops being finite) is cut before that step:
    ``diverged`` is set and ``note`` says where.
    """
    label: str
    optimizer: str
    lr: float
    options: dict
    points: np.ndarray
    losses: np.ndarray
    diverged: bool = False
    note: str = ""

    @property
    def steps(self) -> int:
        return len(self.points) - 1

    def steps_to(self, surface: Surface, tol: float | None = None) -> int | None:
        """First step whose point lies within ``tol`` of a minimum, or None."""
        near = np.flatnonzero(surface.distance(self.points) < (surface.tol if tol is None else tol))
        return int(near[0]) if near.size else None


def _check_start(surface: Surface, start) -> tuple[float, float]:
    if start is None:
        return surface.start
    try:
        x, y = (float(v) for v in start)
    except (TypeError, ValueError):
        raise ValueError(f"start must be a pair of numbers (x, y), got {start!r}") from None
    if not (math.isfinite(x) and math.isfinite(y) and surface.in_domain((x, y))):
        (x0, x1), (y0, y1) = surface.domain
        raise ValueError(f"start ({x:g}, {y:g}) is outside the plotted domain x∈[{x0:g}, {x1:g}], "
                         f"y∈[{y0:g}, {y1:g}] of {surface.name!r}; pick a start inside it")
    return x, y


def race(fn, runs, start=None, steps: int = 100, *, scratch: bool = False, bound: float = 10.0
         ) -> dict[str, Trajectory]:
    """Run several optimizers from the same ``start`` for ``steps`` steps on surface ``fn``.

    ``runs`` is a name, a list of names (each at the surface's suggested lr) or a dict
    ``label -> {"optimizer": name (default: label), "lr": float (default: suggested), **options}`` whose
    options go to :func:`ftkit.optim.make_optimizer`. A run is cut where it leaves the box ``bound`` times
    the domain's size around its centre (or its loss overflows).
    """
    surface = make_surface(fn)
    steps, (x0, y0) = check_int("steps", steps), _check_start(surface, start)
    bound = check_number("bound", bound, positive=True)
    if isinstance(runs, str):
        runs = [runs]
    if not isinstance(runs, dict):
        runs = {name: {} for name in runs}
    if not runs:
        raise ValueError("runs is empty; name at least one optimizer, e.g. ['gd', 'adam']")

    n = len(runs)
    P = torch.tensor([[x0, y0]] * n, dtype=torch.float64)   # row i: the parameter of run i
    G = torch.zeros_like(P)
    P_np, G_np = P.numpy(), G.numpy()                         # the same memory, for cheap NumPy math
    specs, optimizers = [], []
    for i, (label, spec) in enumerate(runs.items()):
        spec = dict(spec)
        name, lr = spec.pop("optimizer", label), spec.pop("lr", None)
        options = dict(spec)
        choose("optimizer", name, OPTIMIZERS)
        if lr is None:
            if name.lower() not in surface.lr:
                raise ValueError(f"no suggested lr for {name!r} on {surface.name!r}; pass one, e.g. "
                                 f"{{{label!r}: {{'lr': 0.01}}}}")
            lr = surface.lr[name.lower()]
        lr = check_number(f"lr of {label!r}", lr, positive=True)
        p = P[i].detach()                                     # a leaf that shares row i's storage
        p.grad = G[i]
        if not scratch and "fused" not in spec:
            spec.setdefault("foreach", False)  # a single 2-vector: skip torch's per-step foreach/fused probe
        optimizers.append(make_optimizer(name, [p], lr=lr, scratch=scratch, **spec))
        specs.append((label, name, lr, options))

    points, losses = np.empty((steps + 1, n, 2)), np.empty((steps + 1, n))
    x, y = P_np[:, 0], P_np[:, 1]                             # views: they follow the optimizer's updates
    with torch.no_grad(), np.errstate(all="ignore"):          # a diverging row may overflow; it is cut below
        for t in range(steps):
            points[t] = P_np
            losses[t], G_np[:, 0], G_np[:, 1] = surface.value_and_grad(x, y)
            for opt in optimizers:
                opt.step()
        points[steps] = P_np
        losses[steps] = surface(x, y)

    (dx0, dx1), (dy0, dy1) = surface.domain
    centre = np.array([(dx0 + dx1) / 2, (dy0 + dy1) / 2])
    half = bound * np.array([(dx1 - dx0) / 2, (dy1 - dy0) / 2])
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(losses) | (np.abs(points - centre) > half).any(-1) | ~np.isfinite(points).all(-1)
    out = {}
    for i, (label, name, lr, options) in enumerate(specs):
        k = int(np.argmax(bad[:, i])) if bad[:, i].any() else steps + 1   # first bad step (never 0)
        note = ""
        if k <= steps:
            note = (f"{label} diverged: left the box |x-{centre[0]:g}| ≤ {half[0]:g}, |y-{centre[1]:g}| ≤ "
                    f"{half[1]:g} at step {k} (lr={lr:g}); drawn up to step {k - 1}")
        out[label] = Trajectory(label, name.lower(), lr, options, points[:k, i].copy(), losses[:k, i].copy(),
                                k <= steps, note)
    return out


def trajectory(fn, optimizer_name: str, start=None, lr: float | None = None, steps: int = 100, *,
               scratch: bool = False, **options) -> Trajectory:
    """One optimizer's path: ``trajectory("booth", "momentum", (-8, -6), lr=0.02, steps=100, momentum=0.9)``."""
    return race(fn, {optimizer_name: {"lr": lr, **options}}, start, steps, scratch=scratch)[optimizer_name]


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


def rate_sweep(fn, optimizer: str, lrs, steps: int = 300, start=None, tail: float = 0.5,
               **options) -> dict[str, np.ndarray]:
    """Race ``optimizer`` at each lr; return ``lr``, ``predicted`` and ``measured`` rates (of the distance to
    the minimum, over the run's tail; a diverged run is measured up to its cut) and ``diverged`` flags."""
    surface = make_surface(fn)
    lrs = np.asarray(lrs, dtype=float)
    runs = race(surface, {str(i): {"optimizer": optimizer, "lr": float(lr), **options} for i, lr in enumerate(lrs)},
                start, steps)
    measured = []
    for traj in runs.values():
        try:
            measured.append(convergence_rate(surface.distance(traj.points), tail))
        except ValueError:                                    # cut after < 4 steps: too short to fit
            measured.append(np.nan)
    return {"lr": lrs, "predicted": np.array([predicted_rate(surface, optimizer, lr, **options) for lr in lrs]),
            "measured": np.array(measured), "diverged": np.array([t.diverged for t in runs.values()])}
