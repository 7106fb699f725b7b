"""ftkit.optviz.surfaces and ftkit.plots.descent: test functions, real-optimizer paths, quadratic theory, explorer."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ftkit.optim import make_optimizer
from ftkit.optviz import (SURFACES, TUNING_LRS, convergence_rate, gd_rate, heavy_ball_rate, heavy_ball_rate_map,
                          make_surface, predicted_rate, quadratic_theory, race, rate_sweep, optimizer_path, tuned_lrs)

SIX = ["gd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]


# --------------------------------------------------------------------------- the functions
@pytest.mark.parametrize("name", list(SURFACES))
def test_closed_form_gradient_matches_autograd(name):
    s = make_surface(name)
    (x0, x1), (y0, y1) = s.domain
    w = torch.stack([torch.empty(64, dtype=torch.float64).uniform_(x0, x1),
                     torch.empty(64, dtype=torch.float64).uniform_(y0, y1)]).requires_grad_()
    f, fx, fy = s.value_and_grad(w[0], w[1])
    (g,) = torch.autograd.grad(f.sum(), w)
    torch.testing.assert_close(torch.stack([fx, fy]), g, rtol=1e-10, atol=1e-9)
    # the same formulas on NumPy (what the race loop uses) give the same numbers
    np.testing.assert_allclose(s(*w.detach().numpy()), f.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", [n for n in SURFACES if n != "saddle"])
def test_minima_are_stationary_with_zero_value(name):
    s = make_surface(name)
    for m in s.minima:
        f, fx, fy = s.value_and_grad(*np.array(m, dtype=float))
        assert abs(f) < 1e-9 and math.hypot(fx, fy) < 1e-4, (m, f, fx, fy)


def test_hessian_eigenvalues_by_autograd():
    assert make_surface("booth").hessian_eigenvalues() == pytest.approx((2.0, 18.0))
    assert make_surface("quadratic", kappa=25).hessian_eigenvalues() == pytest.approx((0.04, 1.0))
    # Rosenbrock at (1, 1): H = [[802, -400], [-400, 200]]
    assert make_surface("rosenbrock").hessian_eigenvalues() == pytest.approx(np.linalg.eigvalsh([[802, -400],
                                                                                                  [-400, 200]]))


def test_surface_name_errors():
    with pytest.raises(ValueError, match=r"unknown function 'rosenbrok'; choose one of: beale, booth"):
        make_surface("rosenbrok")
    with pytest.raises(ValueError, match=r"kappa is a condition number .* must be >= 1, got 0.5"):
        make_surface("quadratic", kappa=0.5)
    with pytest.raises(ValueError, match=r"function 'booth' takes no options \['kappa'\]"):
        make_surface("booth", kappa=3)


# --------------------------------------------------------------------------- paths with the real optimizers
def _plain_loop(surface, name, start, lr, steps, **options):
    """Reference: own parameter, autograd backward, optimizer from the factory."""
    p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer(name, [p], lr=lr, **options)
    points = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        surface(p[0], p[1]).backward()
        opt.step()
        points.append(p.detach().clone())
    return torch.stack(points).numpy()


def test_race_equals_one_plain_loop_per_optimizer():
    s = make_surface("rosenbrock")
    paths = race(s, {**{n: {} for n in SIX}, "momentum μ=0.5": {"optimizer": "momentum", "lr": 2e-3, "momentum": 0.5}},
                 steps=60)
    for label, p in paths.items():
        ref = _plain_loop(s, p.optimizer, s.start, p.lr, 60, **p.options)
        np.testing.assert_allclose(p.points, ref, rtol=0, atol=1e-12, err_msg=label)
        np.testing.assert_allclose(p.losses, s(*ref.T), rtol=1e-12)
    assert paths["adam"].options == {} and paths["momentum μ=0.5"].options == {"momentum": 0.5}


def test_scratch_twins_trace_the_same_paths():
    s = make_surface("beale")
    real, twin = race(s, SIX, steps=50), race(s, SIX, steps=50, scratch=True)
    for name in SIX:
        np.testing.assert_allclose(twin[name].points, real[name].points, atol=1e-9, err_msg=name)


def test_booth_budgets_hold():
    s = make_surface("booth")
    paths = race(s, list(s.budget), steps=max(s.budget.values()))
    for name, budget in s.budget.items():
        reached = paths[name].steps_to(s)
        assert reached is not None and reached <= budget, (name, reached, budget)
        assert s.distance(paths[name].points[reached]) < s.tol
    # reaching is not settling: AdamW's decoupled decay keeps it off the minimum, GD converges
    long = race(s, ["gd", "adamw"], steps=1000)
    assert s.distance(long["gd"].points[-1]) < 1e-12
    assert 1e-3 < s.distance(long["adamw"].points[-1]) < s.tol


def test_bad_input_gets_one_clear_error():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'; choose one of: adagrad, adam, adamw"):
        optimizer_path("booth", "adamm", lr=0.1)
    with pytest.raises(ValueError, match=r"lr of 'gd' must be > 0, got 0"):
        optimizer_path("booth", "gd", lr=0)
    with pytest.raises(ValueError, match=r"lr of 'gd' must be > 0, got -0.1"):
        optimizer_path("booth", "gd", lr=-0.1)
    for steps in (0, -5, 2.5):
        with pytest.raises(ValueError, match=rf"steps must be a whole number >= 1, got {steps}"):
            optimizer_path("booth", "gd", lr=0.1, steps=steps)
    with pytest.raises(ValueError, match=r"start \(12, 0\) is outside the plotted domain x∈\[-10, 10\], "
                                         r"y∈\[-10, 10\] of 'booth'; pick a start inside it"):
        optimizer_path("booth", "gd", start=(12, 0), lr=0.1)
    with pytest.raises(ValueError, match=r"start must be a pair of numbers \(x, y\), got 'a'"):
        optimizer_path("booth", "gd", start="a", lr=0.1)
    with pytest.raises(ValueError, match=r"no suggested lr for 'adagrad' on 'booth'; pass one"):
        race("booth", ["adagrad"])
    with pytest.raises(ValueError, match=r"runs is empty"):
        race("booth", [])


def test_diverging_run_is_cut_at_the_bound_with_a_note():
    p = optimizer_path("booth", "gd", lr=0.2, steps=300)            # 2/λ₁ = 0.111: |1 - 0.2·18| = 2.6 per step
    assert p.diverged and 1 <= p.steps < 300
    assert np.isfinite(p.points).all() and np.isfinite(p.losses).all()
    assert np.abs(p.points - 0).max() <= 100                        # the box is 10× the domain around (0, 0)
    assert f"left the box |x-0| ≤ 100, |y-0| ≤ 100 at step {p.steps + 1}" in p.note
    assert "drawn up to step" in p.note
    # the saddle has no minimum: every path escapes along y and is cut, never NaN
    for q in race("saddle", {n: {"lr": 0.1} for n in SIX}, steps=400).values():
        assert q.diverged and abs(q.points[-1, 1]) > 10 and np.isfinite(q.losses).all()


# --------------------------------------------------------------------------- quadratic theory
def test_convergence_rate_recovers_a_geometric_sequence():
    assert convergence_rate(3.0 * 0.7 ** np.arange(100)) == pytest.approx(0.7, rel=1e-12)
    assert convergence_rate(2.0 * 1.1 ** np.arange(30)) == pytest.approx(1.1, rel=1e-12)
    with pytest.raises(ValueError, match="need at least 4 positive finite values"):
        convergence_rate([1.0, 0.5, np.nan])


def test_theory_formulas():
    th = quadratic_theory(100.0)
    assert th["gd_best_rate"] == pytest.approx(99 / 101)
    assert th["hb_best_rate"] == pytest.approx(9 / 11)
    assert th["hb_best_momentum"] == pytest.approx((9 / 11) ** 2)
    assert th["hb_best_lr"] == pytest.approx((2 / 1.1) ** 2)
    eigs = (0.01, 1.0)
    assert gd_rate(th["gd_best_lr"], eigs) == pytest.approx(th["gd_best_rate"])
    assert heavy_ball_rate(th["hb_best_lr"], th["hb_best_momentum"], eigs) == pytest.approx(th["hb_best_rate"],
                                                                                            rel=1e-6)
    # the optimum is the minimum of the rate over lr (and over μ for heavy ball)
    lrs = np.linspace(0.1, 2.5, 500)
    assert min(gd_rate(lr, eigs) for lr in lrs) >= th["gd_best_rate"] - 1e-12
    assert min(heavy_ball_rate(lr, mu, eigs) for lr in np.linspace(0.5, 5, 60) for mu in np.linspace(0.3, 0.95, 30)) \
        >= th["hb_best_rate"] - 1e-9


@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_measured_optimal_rates_match_theory(kappa):
    q, th = make_surface("quadratic", kappa=kappa), quadratic_theory(kappa)
    paths = race(q, {"gd": {"lr": th["gd_best_lr"]},
                     "hb": {"optimizer": "momentum", "lr": th["hb_best_lr"], "momentum": th["hb_best_momentum"]}},
                 steps=300)
    # per-step contraction of ‖w‖ (and of √loss) on the tail
    assert convergence_rate(q.distance(paths["gd"].points)) == pytest.approx(th["gd_best_rate"], rel=0.01)
    assert convergence_rate(np.sqrt(paths["gd"].losses)) == pytest.approx(th["gd_best_rate"], rel=0.01)
    # heavy ball's double root at the optimum makes ‖w_t‖ ~ t·ρ^t: a little slower than ρ on a finite tail
    assert convergence_rate(q.distance(paths["hb"].points)) == pytest.approx(th["hb_best_rate"], rel=0.02)


@pytest.mark.parametrize("optimizer, mu", [("gd", 0.0), ("momentum", 0.9), ("momentum", 0.5)])
def test_stability_edge(optimizer, mu):
    q = make_surface("quadratic", kappa=10)
    edge = quadratic_theory(10, momentum=mu)["gd_edge_lr" if optimizer == "gd" else "momentum_edge_lr"]
    opts = {"momentum": mu} if optimizer == "momentum" else {}
    sweep = rate_sweep(q, optimizer, [0.3 * edge, 0.98 * edge, 1.02 * edge, 1.2 * edge], 300, **opts)
    assert sweep["diverged"].tolist() == [False, False, True, True]
    np.testing.assert_allclose(sweep["measured"][:2], sweep["predicted"][:2], rtol=0.03)
    assert sweep["predicted"][1] < 1 < sweep["predicted"][2] and sweep["measured"][2] > 1


def test_predicted_rate_needs_a_quadratic_and_a_known_rule():
    assert predicted_rate("booth", "gd", 0.05) == pytest.approx(0.9)   # max(|1-0.1|, |1-0.9|)
    with pytest.raises(ValueError, match="'rosenbrock' is not a quadratic"):
        predicted_rate("rosenbrock", "gd", 1e-3)
    with pytest.raises(ValueError, match="no rate theory here for 'adam'"):
        predicted_rate("quadratic", "adam", 0.1)


# --------------------------------------------------------------------------- figures and the explorer
def test_surface_figure_draws_paths_notes_and_theory():
    from ftkit.plots.descent import surface_figure, update_surface_figure
    s = make_surface("booth")
    paths = race(s, {"gd": {}, "big": {"optimizer": "gd", "lr": 0.2}}, steps=100)
    fig = surface_figure(s, paths, grid=20, predicted={"gd": 0.9})
    by = {t.meta: t for t in fig.data}
    xs, ys, Z = s.grid(20)
    np.testing.assert_allclose(by["contour"].z, np.log10(Z + 0.01))           # log colours for Booth
    np.testing.assert_allclose(by["path:gd"].x, paths["gd"].points[:, 0])
    assert by["end:big"].visible and not by["end:gd"].visible                   # × only where it diverged
    np.testing.assert_allclose(by["rate:gd"].y, paths["gd"].losses[0] * 0.81 ** np.arange(101))
    assert paths["big"].note in fig.layout.annotations[-1].text
    assert fig.layout.yaxis2.type == "log"
    # in place: same trace objects, new data; a missing label hides its slot
    traces = list(fig.data)
    update_surface_figure(fig, s, {"gd": race(s, {"gd": {"lr": 0.01}}, steps=10)["gd"]}, with_surface=False)
    assert list(fig.data) == traces and len(fig.data[traces.index(by["path:gd"])].x) == 11
    assert by["path:big"].visible is False and fig.layout.annotations[-1].text == ""


@pytest.fixture(scope="module")
def explorer():
    from ftkit.ui.gd_explorer import GDExplorer
    return GDExplorer("quadratic", optimizers=("gd", "momentum"), steps=200, grid=20)


def test_explorer_redraws_the_same_figure(explorer):
    fig, path = explorer.figure, {t.meta: t for t in explorer.figure.data}["path:gd"]
    explorer.lr.value = 1.0
    assert explorer.figure is fig
    np.testing.assert_allclose(path.x, explorer.trajectories["gd"].points[:, 0])
    assert explorer.trajectories["gd"].lr == 1.0
    assert "rate predicted 0.9000, measured 0.9000" in explorer.status.value       # max|1 - λ| = 1 - 1/10
    explorer.lr.value = 2.5                                                          # past GD's edge 2/λ₁ = 2
    assert explorer.lr.style.handle_color == "#e53935" and explorer.trajectories["gd"].diverged
    assert "gd diverged" in explorer.status.value
    assert "GD for lr &lt; 2/λ₁ = 2" in explorer.lr_edge.value


def test_explorer_function_switch_and_bad_start(explorer):
    explorer.function.value = "booth"
    assert (explorer.start_x.value, explorer.start_y.value) == make_surface("booth").start
    # every lr reset to its best on the log grid for Booth from its start in 200 steps (GD: 0.1, 0.9 of the edge)
    assert explorer.lr.value == tuned_lrs("booth", ["gd"], steps=200)["gd"] == 0.1
    assert explorer.trajectories["gd"].steps == 200
    before = explorer.trajectories
    explorer.start_x.value = 50.0
    assert "start (50, 8) is outside the plotted domain" in explorer.status.value
    assert explorer.trajectories is before                              # the figure keeps the last good view
    bundle = explorer._repr_mimebundle_()
    assert {"application/vnd.jupyter.widget-view+json", "application/vnd.plotly.v1+json"} <= set(bundle)


def test_heavy_ball_rate_map_is_the_largest_root_modulus():
    eigs, lrs, mus = (0.1, 1.0), np.linspace(0.05, 3.9, 23), np.linspace(0, 0.99, 17)
    grid = heavy_ball_rate_map(lrs, mus, eigs)
    assert grid.shape == (17, 23)
    np.testing.assert_allclose(grid, [[heavy_ball_rate(e, m, eigs) for e in lrs] for m in mus], rtol=1e-9)
    np.testing.assert_allclose(grid[0], [gd_rate(e, eigs) for e in lrs])               # μ = 0: GD, max|1 − ηλ|
    # where both eigen-directions oscillate (complex roots) the rate is √μ whatever η
    assert heavy_ball_rate_map([1.0], [0.81], eigs)[0, 0] == pytest.approx(0.9)
    # Polyak's optimum (η*, μ*) gives (√κ − 1)/(√κ + 1); past the edge η = (2 + 2μ)/λ₁ the rate exceeds 1
    t = quadratic_theory(10)
    assert heavy_ball_rate_map([t["hb_best_lr"]], [t["hb_best_momentum"]], eigs)[0, 0] == pytest.approx(t["hb_best_rate"])
    assert heavy_ball_rate_map([1.01 * 3.8], [0.9], eigs)[0, 0] > 1 > heavy_ball_rate_map([0.99 * 3.8], [0.9], eigs)[0, 0]


def test_tuned_lrs_pick_each_optimizers_best_on_the_grid():
    # GD on the quadratic: the grid point nearest theory's best step 2/(λ₁ + λₙ) = 1.818 (1.78 on the grid)
    assert tuned_lrs("quadratic", ["gd"], steps=300)["gd"] == 1.78
    # on Rosenbrock, every optimizer at its own best lr: Adam ends far below GD (one lr for all had it the other
    # way round: 6.5 vs 5.4), and no chosen run diverges
    best = tuned_lrs("rosenbrock", SIX, steps=300)
    assert set(best) == set(SIX) and all(v in TUNING_LRS for v in best.values())
    paths = race("rosenbrock", {k: {"lr": v} for k, v in best.items()}, steps=300)
    assert not any(p.diverged for p in paths.values())
    assert paths["adam"].losses[-1] < 0.1 * paths["gd"].losses[-1]
    # the choice is the grid lr whose run ends lowest: none of the others ends lower
    sweep = race("rosenbrock", {f"{lr}": {"optimizer": "gd", "lr": lr} for lr in TUNING_LRS}, steps=300)
    ends = {float(k): p.losses[-1] for k, p in sweep.items() if not p.diverged}
    assert min(ends, key=ends.get) == best["gd"]
    with pytest.raises(ValueError, match=r"gd diverged at every lr from 5 to 10 on 'booth'"):
        tuned_lrs("booth", ["gd"], steps=50, lrs=(5, 10))


def test_explorer_lr_per_optimizer_and_the_momentum_map():
    from ftkit.ui.gd_explorer import GDExplorer
    ex = GDExplorer("quadratic", optimizers=("gd", "momentum", "adam"), steps=200, grid=20)
    assert {k: ex.lrs[k].value for k in ("gd", "momentum", "adam")} == tuned_lrs(
        "quadratic", {"gd": {}, "momentum": {"momentum": 0.9}, "adam": {"betas": (0.9, 0.999)}}, steps=200)
    assert ex.lrs["nesterov"].layout.display == "none" and ex.lrs["adam"].layout.display == ""
    ex.lrs["adam"].value = 0.01                                   # one optimizer's lr moves one path
    gd_before = ex.trajectories["gd"]
    ex.lrs["momentum"].value, ex.momentum.value = 0.5, 0.3
    assert ex.trajectories["adam"].lr == 0.01 and ex.trajectories["gd"] is gd_before
    # the map's chosen point: heavy ball's rate there, by the formula and as measured on the path
    assert ex.momentum_rate == pytest.approx(heavy_ball_rate(0.5, 0.3, [0.1, 1.0]))
    assert f"rate predicted {ex.momentum_rate:.4f}, measured {ex.momentum_rate:.4f}" in ex.status.value
    by = {t.meta: t for t in ex.momentum_figure.data}
    assert (list(by["chosen"].x), list(by["chosen"].y)) == ([0.5], [0.3])
    z = np.array(by["rate"].z, dtype=float)
    assert np.nanmax(z) < 1 and np.isnan(z).any()                 # past the edge: blank (diverges)
    assert by["edge"].x[-1] == pytest.approx(2 + 2 * 0.99)
    ex.retune()
    assert ex.lrs["adam"].value != 0.01
    ex.function.value = "saddle"                                  # no minimum: no map
    assert ex.momentum_box.layout.display == "none"
    with pytest.raises(ValueError, match=r"no optimizer 'adamm' here"):
        GDExplorer("quadratic", optimizers=("gd",), steps=20, grid=10, lr={"adamm": 0.1})


def test_basin_figure_colours_each_minimum_and_hides_missing_labels():
    from ftkit.plots.descent import basin_figure
    from ftkit.optviz.races import basins
    bm = basins("himmelblau", ["gd"], n=6, steps=200)
    fig = basin_figure(bm, labels=["gd", "adam"])
    by = {t.meta: t for t in fig.data}
    z = np.asarray(by["basin:gd"].z)
    np.testing.assert_array_equal(z, np.where(bm.minimum[0] >= 0, bm.minimum[0] + 2, bm.minimum[0] + 2))
    np.testing.assert_array_equal(np.asarray(by["settle:gd"].z, dtype=float), bm.steps[0])
    assert by["basin:adam"].visible is False and by["minima:gd"].visible
    assert "after" in by["basin:gd"].text[0][0] and fig.layout.annotations[0].text.startswith("gd<br>")


def test_explorer_noise_schedule_basins_and_your_function():
    from ftkit.ui.gd_explorer import GDExplorer
    with pytest.raises(ValueError, match=r"your own function needs domain="):
        make_surface(lambda x, y: x * y)
    own = make_surface(lambda x, y: (x * x - 1) ** 2 + y * y, domain=((-2, 2), (-1, 1)))
    ex = GDExplorer(own, optimizers=("gd", "adam"), steps=100, grid=20)
    assert ex.function.value == "custom" and "custom" in ex.function.options and ex.trajectories["gd"].steps == 100
    clean = ex.trajectories["gd"].points.copy()
    ex.noise.value = 0.5
    noisy = ex.trajectories["gd"].points       # (at the clean run's best lr the noise may push it out of the box)
    k = min(len(noisy), len(clean))
    assert np.abs(noisy[:k] - clean[:k]).max() > 1e-3
    ex.schedule.value = "cosine"
    assert ex.trajectories["adam"].steps == 100
    ex.basin_grid.value = 4
    assert ex.basins.minimum.shape == (2, 4, 4) and ex.basin_box.layout.display == ""
    assert "basins:" in ex.status.value and "of 16 starts settle" in ex.status.value
    ex.basin_grid.value = 0
    assert ex.basins is None and ex.basin_box.layout.display == "none"
