"""The batched engine equals torch.optim; noise, schedules, your own function, basin maps and their errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ftkit.optviz.gd_engine import lr_factors
from ftkit.optviz.races import basins, race
from ftkit.optviz.surfaces import SURFACES, make_surface

# every rule and branch the engine implements, at each surface's suggested lr (adaptive variants at RMSprop's)
CONFIGS = {
    "gd": ("gd", {}), "momentum": ("momentum", {}), "nesterov": ("nesterov", {}), "rmsprop": ("rmsprop", {}),
    "adam": ("adam", {}), "adamw": ("adamw", {}),
    "sgd damp+L2": ("sgd", {"momentum": 0.5, "dampening": 0.1, "weight_decay": 0.01}),
    "rmsprop μ+centered": ("rmsprop", {"momentum": 0.5, "centered": True}),
    "adagrad": ("adagrad", {"lr_decay": 0.01}),
    "adam L2 β₁=0.3": ("adam", {"weight_decay": 0.05, "betas": (0.3, 0.99)}),
    "adamw amsgrad": ("adamw", {"amsgrad": True}),
}


def _runs(surface):
    lr = lambda name: surface.lr.get(name, surface.lr["rmsprop"])  # noqa: E731
    return {label: {"optimizer": name, "lr": lr(name), **opts} for label, (name, opts) in CONFIGS.items()}


def _starts(surface, k=2):
    (x0, x1), (y0, y1) = surface.domain
    rng = np.random.default_rng(len(surface.name))
    return [surface.start] + [(rng.uniform(x0, x1), rng.uniform(y0, y1)) for _ in range(k - 1)]


def _assert_same(a, b):
    for label in a:
        assert a[label].steps == b[label].steps, (label, a[label].note, b[label].note)   # cut at the same step
        assert a[label].diverged == b[label].diverged and a[label].note == b[label].note
        np.testing.assert_allclose(a[label].points, b[label].points, rtol=0, atol=1e-10, err_msg=label)


@pytest.mark.parametrize("name", list(SURFACES))
def test_batched_engine_equals_torch_optim_for_every_rule(name):
    s = make_surface(name)
    worst = 0.0
    for start in _starts(s):
        batched, reference = race(s, _runs(s), start, 300), race(s, _runs(s), start, 300, engine="torch")
        _assert_same(batched, reference)
        worst = max(worst, max(float(np.abs(batched[k].points - reference[k].points).max()) for k in batched))
    assert worst <= 1e-10
    if name == "saddle":                                   # most runs escape: their cut steps were compared above
        assert sum(p.diverged for p in batched.values()) >= 8


@pytest.mark.parametrize("schedule, options", [("cosine", None), ("step", {"step_size": 70, "gamma": 0.5})])
def test_schedules_and_noise_match_torch_schedulers(schedule, options):
    s = make_surface("himmelblau")
    kw = dict(noise=5.0, seed=3, schedule=schedule, schedule_options=options)
    _assert_same(race(s, _runs(s), (1, 1), 300, **kw), race(s, _runs(s), (1, 1), 300, engine="torch", **kw))


def test_schedule_factors():
    t = np.arange(10)
    np.testing.assert_allclose(lr_factors("cosine", 10), (1 + np.cos(np.pi * t / 10)) / 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lr_factors("step", 10, {"step_size": 4, "gamma": 0.5}), 0.5 ** (t // 4))
    np.testing.assert_array_equal(lr_factors("constant", 5), np.ones(5))
    # GD on the quadratic with a step schedule: each coordinate shrinks by (1 - η_t λ) per step
    q = make_surface("quadratic", kappa=4)
    p = race(q, {"gd": {"lr": 0.5}}, (2.0, 1.0), 6, schedule="step", schedule_options={"step_size": 3})["gd"]
    lrs = 0.5 * 0.1 ** (np.arange(6) // 3)
    np.testing.assert_allclose(p.points[-1], [2 * np.prod(1 - lrs / 4), np.prod(1 - lrs)], rtol=1e-12)


def test_noise_is_seeded_shared_and_changes_paths():
    s = make_surface("booth")
    clean = race(s, ["gd", "adam"], steps=200)
    noisy = race(s, ["gd", "adam"], steps=200, noise=20.0, seed=1)
    again = race(s, ["gd", "adam"], steps=200, noise=20.0, seed=1)
    np.testing.assert_array_equal(noisy["gd"].points, again["gd"].points)
    assert np.abs(noisy["gd"].points - clean["gd"].points).max() > 0.1
    np.testing.assert_array_equal(race(s, ["gd"], steps=200, noise=0.0, seed=5)["gd"].points, clean["gd"].points)
    # GD is linear in the gradient: the noise moves its first step by exactly -η·ξ₀, the same ξ₀ for every run
    xi = 20.0 * np.random.default_rng(1).standard_normal((200, 1, 2))[0, 0]
    np.testing.assert_allclose(noisy["gd"].points[1] - clean["gd"].points[1], -s.lr["gd"] * xi, rtol=1e-12)
    # noise keeps SGD off the minimum at a distance set by σ; full-batch GD converges
    assert s.distance(clean["gd"].points[-1]) < 1e-3 < s.distance(noisy["gd"].points[-1])


def _himmelblau(x, y):
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def test_your_own_function_gets_autograd_gradients():
    own = make_surface(_himmelblau, domain=((-5, 5), (-5, 5)), name="mine")
    ref = make_surface("himmelblau")
    xy = np.random.default_rng(0).uniform(-5, 5, (2, 50))
    for a, b in zip(own.value_and_grad(*xy), ref.value_and_grad(*xy)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    # a race on it equals the closed-form surface's race step for step
    mine, theirs = race(own, {"adam": {"lr": 0.1}}, (0, -4), 100), race(ref, ["adam"], (0, -4), 100)
    np.testing.assert_allclose(mine["adam"].points, theirs["adam"].points, atol=1e-10)
    assert own.lr["gd"] > 0 and own.minima == () and own.name == "mine"
    assert own.hessian_eigenvalues((3.0, 2.0)) == pytest.approx(ref.hessian_eigenvalues((3.0, 2.0)))
    # non-elementwise code is fine too: vmap maps the scalar function over the runs
    norm = make_surface(lambda x, y: torch.stack([x, y]).norm() ** 2, domain=((-1, 1), (-1, 1)))
    np.testing.assert_allclose(norm.value_and_grad(np.array([0.5, -1.0]), np.array([0.25, 0.0]))[1], [1.0, -2.0])


@pytest.mark.parametrize("call, message", [
    (lambda: make_surface(lambda x, y: torch.stack([x, y]), domain=((-1, 1), (-1, 1))),
     r"must return one number per \(x, y\) \(a scalar\), got shape \(2,\)"),
    (lambda: make_surface(lambda x, y: torch.log(x), domain=((-1, 1), (-1, 1))),
     r"your function is nan at the start \(-0.5, 0.5\); pick a start"),
    (lambda: make_surface(lambda x, y: x * y, domain=((1, -1), (-1, 1))),
     r"domain must be two increasing pairs \(\(x_min, x_max\), \(y_min, y_max\)\)"),
    (lambda: make_surface(lambda x, y: x * y, domain=(1, 2)), r"domain must be two increasing pairs"),
    (lambda: race("booth", ["gd"], noise=-1.0), r"noise σ must be >= 0, got -1.0"),
    (lambda: race("booth", ["gd"], schedule="cosin"), r"unknown schedule 'cosin'; choose one of: constant, cosine, step"),
    (lambda: race("booth", ["gd"], schedule="cosine", schedule_options={"gamma": 0.5}),
     r"schedule 'cosine' takes no options; got \['gamma'\]"),
    (lambda: race("booth", ["gd"], engine="jax"), r"unknown engine 'jax'; choose one of: batched, torch"),
    (lambda: race("booth", {"gd": {"maximize": True}}), r"the batched engine does not implement \['maximize'\]"),
    (lambda: race("booth", {"adam": {"betas": (0.9, 1.2)}}), r"betas\[1\] must be in \[0, 1\)"),
    (lambda: basins("booth", ["gd"], n=1), r"n must be a whole number >= 2, got 1"),
])
def test_bad_input_gets_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_nan_at_the_start_of_a_race():
    s = make_surface(lambda x, y: torch.sqrt(x) + y * y, domain=((-1, 1), (-1, 1)), start=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"f or its gradient is not finite at the start \(-0.5, 0\)"):
        race(s, ["adam"], (-0.5, 0.0))


def test_basin_map_on_himmelblau_finds_all_four_minima():
    s = make_surface("himmelblau")
    bm = basins(s, ["gd", "adam"], n=10, steps=300)
    assert bm.minimum.shape == (2, 10, 10) and len(bm.targets) == 4
    gd = bm.minimum[0]
    assert set(np.unique(gd)) == {0, 1, 2, 3}                 # every minimum has a basin for GD
    # the quadrant rule of thumb: starts near a minimum end in it
    for i, m in enumerate(s.minima):
        j, k = np.abs(bm.ys - m[1]).argmin(), np.abs(bm.xs - m[0]).argmin()
        assert gd[j, k] == i and bm.steps[0, j, k] < 100
    settled = gd >= 0
    assert np.isfinite(bm.steps[0][settled]).all() and np.isnan(bm.steps[0][~settled]).all()
    assert sum(bm.share("gd").values()) == pytest.approx(1.0)
    # the same map from one real torch.optim optimizer per start (a small grid: 18 optimizers)
    small, ref = basins(s, ["adam"], n=3, steps=100), basins(s, ["adam"], n=3, steps=100, engine="torch")
    np.testing.assert_array_equal(small.minimum, ref.minimum)
    np.testing.assert_array_equal(small.steps, ref.steps)


def test_basin_map_on_rastrigin_and_on_your_own_function():
    bm = basins("rastrigin", ["gd"], n=8, steps=300)
    assert len(np.unique(bm.minimum[0][bm.minimum[0] >= 0])) >= 16      # many local minima, one per cell
    # a function without listed minima: the settled end points are clustered into minima
    bowl2 = make_surface(lambda x, y: (x * x - 1) ** 2 + y * y, domain=((-2, 2), (-1, 1)))
    bm = basins(bowl2, {"gd": {"lr": 0.05}}, n=6, steps=300)
    np.testing.assert_allclose(np.sort(bm.targets[:, 0]), [-1, 1], atol=1e-3)
    left = bm.minimum[0][:, :3]
    assert (left == left[0, 0]).all() and (bm.minimum[0][:, 3:] != left[0, 0]).all()
    assert bm.targets[left[0, 0], 0] < 0 and math.isfinite(bm.steps[0].max())
