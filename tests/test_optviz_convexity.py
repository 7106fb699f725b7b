"""ftkit.optviz.convexity: the plane's 2×2 Hessian from a grid, against functions whose Hessian is known."""
import numpy as np
import pytest

from ftkit.optviz.convexity import plane_convexity
from ftkit.optviz.landscape import Landscape


def grid(f, n=7, span=1.0, ny=None):
    x, y = np.linspace(-span, span, n), np.linspace(-span, span, ny or n)
    X, Y = np.meshgrid(x, y)
    return Landscape(x, y, f(X, Y), "loop", 1.0)


def test_a_quadratic_has_its_exact_hessian_eigenvalues_at_every_point():
    # f = a x² + b y² + c xy: Hessian [[2a, c], [c, 2b]], central differences exact for quadratics
    a, b, c = 1.5, -0.5, 1.0
    conv = plane_convexity(grid(lambda X, Y: a * X ** 2 + b * Y ** 2 + c * X * Y, n=9, ny=7))
    lo, hi = np.linalg.eigvalsh(np.array([[2 * a, c], [c, 2 * b]]))
    assert conv.lambda_min.shape == (5, 7) and conv.x.shape == (7,) and conv.y.shape == (5,)
    np.testing.assert_allclose(conv.lambda_min, lo, atol=1e-9)
    np.testing.assert_allclose(conv.lambda_max, hi, atol=1e-9)
    assert conv.negative_share == 1.0 and conv.mean_ratio == pytest.approx(abs(lo) / hi)


def test_a_bowl_is_convex_everywhere_and_a_ripple_is_not():
    bowl = plane_convexity(grid(lambda X, Y: X ** 2 + 3 * Y ** 2))
    assert bowl.negative_share == 0.0 and bowl.mean_ratio == 0.0
    # cos ripples on a bowl: f_xx = 2 - 25 cos(5x) < 0 where cos(5x) > 0.08
    ripple = plane_convexity(grid(lambda X, Y: X ** 2 + Y ** 2 + np.cos(5 * X), n=41))
    x = ripple.x
    expect = np.mean(2 - 25 * np.cos(5 * x) * np.sinc(5 * (x[1] - x[0]) / 2 / np.pi) ** 2 < 0)  # the grid's own fxx
    assert ripple.negative_share == pytest.approx(expect, abs=0.03) and 0.2 < ripple.negative_share < 0.5


def test_log_reads_log10_and_nan_points_are_left_out():
    land = grid(lambda X, Y: 10 ** (X ** 2 + Y ** 2))
    np.testing.assert_allclose(plane_convexity(land, log=True).lambda_min, 2.0, atol=1e-9)
    land.losses[3, 3] = np.nan                      # one overflowed point: its 3×3 neighbours lose their value
    conv = plane_convexity(land)
    assert np.isnan(conv.ratio).sum() == 9 and np.isfinite(conv.negative_share)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="at least 3 × 3 grid points.*resolution >= 3"):
        plane_convexity(grid(lambda X, Y: X + Y, n=2))
    with pytest.raises(TypeError, match="needs a 2-D Landscape.*a 1-D one"):
        plane_convexity(Landscape(np.arange(3.0), None, np.arange(3.0), "loop", 1.0))
    with pytest.raises(TypeError, match="got dict"):
        plane_convexity({})
