r"""How convex a 2-D loss landscape is, read from its grid (Li et al. 2018, §6 and Fig. 7, within the plane).

At every interior point of a grid :math:`f_{ji} = f(α_i, β_j)` with steps :math:`h, k`, central differences give the
plane's 2×2 Hessian,

.. math:: f_{αα} ≈ \frac{f_{j,i+1} - 2f_{ji} + f_{j,i-1}}{h^2},\quad
          f_{ββ} ≈ \frac{f_{j+1,i} - 2f_{ji} + f_{j-1,i}}{k^2},\quad
          f_{αβ} ≈ \frac{f_{j+1,i+1} - f_{j-1,i+1} - f_{j+1,i-1} + f_{j-1,i-1}}{4hk},

and its eigenvalues :math:`λ_{\min} ≤ λ_{\max}`. The surface is locally convex where :math:`λ_{\min} ≥ 0`. Li et al.
map :math:`|λ_{\min}/λ_{\max}|` of the *full* Hessian (all the weights) over the plane: near zero where the landscape
is convex, large where it bends down in some direction. Here the same ratio is taken of the curvature *within the
plane* — what the contour shows, at no extra cost (no loss evaluation beyond the grid), a lower bound on how
non-convex the full picture is (a plane can miss a downward direction, never invent one):

* ``ratio``          :math:`|\min(λ_{\min}, 0)| / |λ_{\max}|` per interior point (0 where locally convex);
* ``negative_share`` the share of interior points where :math:`λ_{\min} < 0` (not locally convex);
* ``mean_ratio``     the mean of ``ratio`` over the interior points.

``log=True`` reads the curvature of :math:`\log_{10} f` instead (what a log-scale contour shows). NaN losses (points
that overflowed) leave NaN in the map and are left out of both summaries.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .landscape import Landscape

__all__ = ["Convexity", "plane_convexity"]


@dataclass
class Convexity:
    """The plane's 2×2 Hessian at each interior grid point: ``ratio[j, i]`` at ``(x[i], y[j])``."""
    x: np.ndarray
    y: np.ndarray
    lambda_min: np.ndarray
    lambda_max: np.ndarray
    ratio: np.ndarray

    @property
    def negative_share(self) -> float:
        """Share of the (finite) interior points where the surface bends down in some direction (λ_min < 0)."""
        ok = np.isfinite(self.lambda_min)
        return float((self.lambda_min[ok] < 0).mean()) if ok.any() else float("nan")

    @property
    def mean_ratio(self) -> float:
        """Mean of |min(λ_min, 0)| / |λ_max| over the finite interior points."""
        ok = np.isfinite(self.ratio)
        return float(self.ratio[ok].mean()) if ok.any() else float("nan")


def plane_convexity(land: Landscape, *, log: bool = False) -> Convexity:
    """The curvature map of a 2-D :class:`~ftkit.optviz.landscape.Landscape` (at least 3 × 3 points, evenly spaced)."""
    if not isinstance(land, Landscape) or land.y is None:
        raise TypeError("plane_convexity needs a 2-D Landscape (from loss_surface or progressive_surface), "
                        f"got {type(land).__name__ if not isinstance(land, Landscape) else 'a 1-D one'}")
    f = np.asarray(land.losses, dtype=float)
    if min(f.shape) < 3:
        raise ValueError(f"a curvature needs at least 3 × 3 grid points (a centre and its neighbours), got "
                         f"{f.shape[1]} × {f.shape[0]}; compute the grid with resolution >= 3")
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(f > 0, np.log10(f), np.nan)
    h, k = float(land.x[1] - land.x[0]), float(land.y[1] - land.y[0])
    fxx = (f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]) / h ** 2
    fyy = (f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]) / k ** 2
    fxy = (f[2:, 2:] - f[:-2, 2:] - f[2:, :-2] + f[:-2, :-2]) / (4 * h * k)
    mid, half = (fxx + fyy) / 2, np.sqrt(((fxx - fyy) / 2) ** 2 + fxy ** 2)
    lmin, lmax = mid - half, mid + half
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(np.minimum(lmin, 0)) / np.maximum(np.abs(lmax), 1e-300)
    return Convexity(np.asarray(land.x)[1:-1], np.asarray(land.y)[1:-1], lmin, lmax, ratio)
