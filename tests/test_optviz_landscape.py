"""ftkit.optviz.landscape and .trajectory: directions, grids (vmap == loop), interpolation, NaN gaps, trajectories,
bad input."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import ftkit
from ftkit.data import synthetic
from ftkit.optviz.directions import orthogonalize, random_direction, random_directions
from ftkit.optviz.landscape import (grid_levels, interpolate, loss_slice, loss_surface, progressive_surface,
                                    recalibrate_batchnorm, slices_over_seeds)
from ftkit.optviz.trajectory import pca_trajectory, trajectory_check, WeightRecorder
from ftkit.plots.landscape import (compare_figure, contour_figure, curve_figure, landscape_z, progressive_contour,
                                   seed_spread_figure, sharpness_figure, trajectory_check_figure)


def small_cnn(bn: bool = True) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), *([nn.BatchNorm2d(4)] if bn else []), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 3))


@pytest.fixture
def cnn_data():
    model = small_cnn()
    with torch.no_grad():  # non-trivial running statistics, so eval-mode BatchNorm matters
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    x, y = synthetic.image_classification(24, num_classes=3, size=8)
    return model, (x, y)


def test_filter_normalization_and_bias_policy():
    model = small_cnn()
    d = random_direction(model, seed=3)
    for name, w in model.named_parameters():
        if w.dim() > 1:  # each output filter/neuron i: ‖d_i‖ = ‖θ_i‖
            dims = tuple(range(1, w.dim()))
            torch.testing.assert_close(torch.linalg.vector_norm(d[name], dim=dims),
                                       torch.linalg.vector_norm(w.detach(), dim=dims))
        else:  # biases and BatchNorm scale/shift stay put by default
            assert not d[name].any(), name
    torch.testing.assert_close(random_direction(model, seed=3)["0.weight"], d["0.weight"])
    assert not torch.equal(random_direction(model, seed=4)["0.weight"], d["0.weight"])
    db = random_direction(model, seed=3, perturb_bias_bn=True)
    for name in ("0.bias", "1.weight", "1.bias", "5.bias"):
        assert db[name].norm().item() == pytest.approx(dict(model.named_parameters())[name].norm().item(), rel=1e-5)


def test_second_direction_is_orthogonal():
    model = small_cnn()
    d1, d2 = random_directions(model, seed=0)
    dot = sum((d1[n] * d2[n]).sum() for n in d1)
    n1 = math.sqrt(sum((d1[n] ** 2).sum() for n in d1))
    n2 = math.sqrt(sum((d2[n] ** 2).sum() for n in d1))
    assert abs(float(dot)) / (n1 * n2) < 1e-6
    torch.testing.assert_close(d1["0.weight"], random_direction(model, 0)["0.weight"])
    # the projection removes exactly the δ-component: η' = η − (η·δ/δ·δ) δ
    raw = random_direction(model, 1)
    c = sum((raw[n] * d1[n]).sum() for n in d1) / n1 ** 2
    torch.testing.assert_close(orthogonalize(raw, d1)["5.weight"], raw["5.weight"] - c * d1["5.weight"])


def test_vmap_grid_equals_loop_and_center_is_the_model_loss(cnn_data, capsys):
    model, data = cnn_data
    model.train()  # the grid switches to eval mode and back
    dirs = random_directions(model, seed=1, perturb_bias_bn=True)
    grids = {m: loss_surface(model, "cross_entropy", data, dirs, span=(-1, 1), resolution=(5, 3), method=m,
                             batch_size=10, chunk_size=4) for m in ("vmap", "loop")}
    assert grids["vmap"].losses.shape == (3, 5) and grids["vmap"].method == "vmap"
    np.testing.assert_allclose(grids["vmap"].losses, grids["loop"].losses, atol=1e-5, rtol=0)
    assert model.training
    assert "15 points ×" in capsys.readouterr().out  # the estimate: points × measured time per point
    expected = ftkit.evaluate(model, [data], "cross_entropy", device="cpu")["loss"]
    assert grids["vmap"].center == pytest.approx(expected, abs=1e-5)
    assert np.ptp(grids["vmap"].losses) > 0.01  # the directions do move the loss


def test_slice_of_a_linear_model_matches_its_quadratic():
    """f(x) = Wx with MSE: L(W + αD) = mean((Wx − y + αDx)²), a parabola in α."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2, bias=False)
    x, y = torch.randn(30, 4), torch.randn(30, 2)
    d = random_direction(model, seed=0)
    land = loss_slice(model, "mse", (x, y), d, span=(-2, 2), resolution=9, batch_size=7, verbose=False)
    with torch.no_grad():
        r, s = model(x) - y, x @ d["weight"].T
        expected = [float(((r + a * s) ** 2).mean()) for a in land.x]
    np.testing.assert_allclose(land.losses, expected, rtol=1e-5)


def test_interpolation_ends_at_both_weight_sets(cnn_data):
    model, data = cnn_data
    model.eval()
    other = small_cnn()
    other.load_state_dict({**model.state_dict(), **{n: p + 0.3 * torch.randn_like(p)
                                                    for n, p in model.named_parameters()}})
    curve = interpolate(model, model, other, "cross_entropy", data, span=(0, 1), resolution=3, verbose=False)
    loss0 = ftkit.evaluate(model, [data], "cross_entropy", device="cpu")["loss"]
    loss1 = ftkit.evaluate(other, [data], "cross_entropy", device="cpu")["loss"]
    np.testing.assert_allclose(curve.losses[[0, 2]], [loss0, loss1], atol=1e-5)
    assert torch.equal(next(model.parameters()), next(iter(dict(model.named_parameters()).values())))


class Log(nn.Module):
    """loss = log(w·x) with x = 1: finite for w > 0, NaN for w < 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[0.5]]))

    def forward(self, x):
        return x @ self.w.T


def log_loss(out, y):
    return torch.log(out).mean()


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_non_finite_losses_are_kept_as_nan(method):
    model = Log()
    d = {"w": torch.tensor([[1.0]])}
    with pytest.warns(RuntimeWarning, match="2 of 5 grid points gave a non-finite loss and are NaN"):
        land = loss_slice(model, log_loss, (torch.ones(4, 1), torch.zeros(4)), d, span=(-1, 1), resolution=5,
                          method=method, verbose=False)
    w = 0.5 + land.x
    expected = np.where(w > 0, np.log(np.where(w > 0, w, 1)), np.nan)
    expected[w == 0] = np.nan  # log 0 = −inf: non-finite, also a gap
    np.testing.assert_allclose(land.losses, expected, rtol=1e-6)
    assert np.isnan(landscape_z(land.losses, log=True)[:2]).all()
    fig = curve_figure({"log": land})
    assert np.isnan(np.asarray(fig.data[0].y, dtype=float)[:2]).all()


class ItemNet(nn.Module):
    """``.item()`` in forward: vmap cannot batch it, the plain loop can."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x) * (1.0 + 0.0 * self.lin.weight.sum().item())


def test_auto_falls_back_to_the_loop_where_vmap_cannot_run():
    model = ItemNet()
    data = (torch.randn(8, 3), torch.randint(2, (8,)))
    d = random_direction(model, seed=0)
    with pytest.warns(RuntimeWarning, match="plain loop"):
        land = loss_slice(model, "cross_entropy", data, d, resolution=3, verbose=False)
    assert land.method == "loop"
    with pytest.raises(RuntimeError, match="vmap could not run this model.*method='loop'"):
        loss_slice(model, "cross_entropy", data, d, resolution=3, method="vmap", verbose=False)


def test_train_mode_batchnorm(cnn_data):
    model, data = cnn_data
    model.train()
    d = random_directions(model, 0)
    running = model[1].running_mean.clone()
    with pytest.raises(ValueError, match="BatchNorm layers in training mode.*eval_mode=True.*method='loop'"):
        loss_surface(model, "cross_entropy", data, d, resolution=2, eval_mode=False, method="vmap")
    land = loss_surface(model, "cross_entropy", data, d, resolution=2, eval_mode=False, verbose=False)
    assert land.method == "loop"
    torch.testing.assert_close(model[1].running_mean, running)  # batch statistics used, running ones restored


def test_bad_input_messages(cnn_data):
    model, data = cnn_data
    d = random_directions(model, 0)
    with pytest.raises(ValueError, match="resolution must be a whole number >= 2"):
        loss_surface(model, "cross_entropy", data, d, resolution=1)
    with pytest.raises(ValueError, match=r"min < max.*\(1, 1\)"):
        loss_slice(model, "cross_entropy", data, d[0], span=(1, 1))
    with pytest.raises(ValueError, match=r"min < max"):
        loss_surface(model, "cross_entropy", data, d, yspan=(2, -2))
    bad = {**d[0], "0.weight": torch.zeros(4, 3, 2, 2)}
    with pytest.raises(ValueError, match=r"direction 0\['0.weight'\] has shape \(4, 3, 2, 2\) but the model's "
                                         r"parameter has shape \(4, 3, 3, 3\)"):
        loss_slice(model, "cross_entropy", data, bad)
    with pytest.raises(ValueError, match="missing"):
        loss_slice(model, "cross_entropy", data, {"0.weight": d[0]["0.weight"]})
    with pytest.raises(ValueError, match="ReLU has no parameters"):
        random_direction(nn.ReLU())
    with pytest.raises(ValueError, match="at least 3 weight snapshots"):
        pca_trajectory([dict(model.named_parameters())] * 2)
    with pytest.raises(ValueError, match="unknown method 'fast'"):
        loss_slice(model, "cross_entropy", data, d[0], method="fast")


def test_recorder_and_pca_trajectory():
    ftkit.seed_everything(0)
    x, y = synthetic.blobs(96, num_classes=2, dim=2)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    per_epoch, every2 = WeightRecorder(), WeightRecorder(every=2)
    ftkit.fit(model, loader, "cross_entropy", "sgd", 3, callbacks=[per_epoch, every2], device="cpu",
              progress=False)
    assert per_epoch.steps == [0, 6, 12, 18] and every2.steps == list(range(0, 19, 2))
    torch.testing.assert_close(per_epoch.weights[0]["0.weight"], init["0.weight"])
    torch.testing.assert_close(per_epoch.weights[-1]["2.bias"], model[2].bias.detach())

    traj = pca_trajectory(every2.weights, every2.steps)
    assert traj.coords.shape == (10, 2) and np.allclose(traj.coords[-1], 0)
    assert 0 < traj.explained[1] <= traj.explained[0] and traj.explained.sum() <= 1 + 1e-9
    u1, u2 = traj.directions
    assert float(sum((u1[n] * u1[n]).sum() for n in u1)) == pytest.approx(1, abs=1e-5)
    assert abs(float(sum((u1[n] * u2[n]).sum() for n in u1))) < 1e-5
    (x0, x1), (y0, y1) = traj.span()
    assert x0 < traj.coords[:, 0].min() and traj.coords[:, 1].max() < y1
    land = loss_surface(model, "cross_entropy", (x, y), traj.directions, span=(x0, x1), yspan=(y0, y1),
                        resolution=3, verbose=False)
    fig = contour_figure(land, trajectory=traj, log=True)
    assert fig.layout.xaxis.title.text.startswith(f"PC1 ({100 * traj.explained[0]:.1f} %")


def test_pca_of_a_planar_path_keeps_distances():
    """Snapshots θ_f + a_i u + b_i v in a plane: two components explain everything, projections keep lengths."""
    g = torch.Generator().manual_seed(0)
    final = {"a": torch.randn(5, 4, generator=g), "b": torch.randn(7, generator=g)}
    u, v = torch.linalg.qr(torch.randn(27, 2, generator=g, dtype=torch.float64))[0].T
    ab = torch.randn(6, 2, generator=g, dtype=torch.float64)
    snaps = []
    for a, b in [*ab, (0.0, 0.0)]:
        flat = a * u + b * v
        snaps.append({"a": final["a"] + flat[:20].view(5, 4).float(), "b": final["b"] + flat[20:].float()})
    traj = pca_trajectory(snaps)
    assert traj.explained.sum() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(np.linalg.norm(traj.coords, axis=1),
                               np.linalg.norm(np.vstack([ab.numpy(), [0, 0]]), axis=1), atol=1e-5)


def test_seed_spread_and_comparison_figures(cnn_data):
    model, data = cnn_data
    slices = slices_over_seeds(model, "cross_entropy", data, seeds=(0, 1, 2), resolution=5, verbose=False)
    assert list(slices) == [0, 1, 2]
    z = np.stack([s.losses for s in slices.values()])
    assert np.allclose(z[:, 2], z[0, 2])  # α = 0 is the same point for every seed
    fig = seed_spread_figure({"ce": slices})
    np.testing.assert_allclose(np.asarray(fig.data[-1].y, dtype=float), z.mean(0))
    d = random_directions(model, 0)
    lands = {k: loss_surface(model, k, data, d, resolution=3, verbose=False) for k in ("cross_entropy", "combined")}
    fig = compare_figure(lands, log=True)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), np.log10(lands["cross_entropy"].losses))
    one = compare_figure(lands, log=True, same_scale=True)   # one colour scale: the range of both, one colour bar
    z = np.log10(np.concatenate([land.losses.ravel() for land in lands.values()]))
    assert [(t.zmin, t.zmax) for t in one.data] == [(pytest.approx(z.min()), pytest.approx(z.max()))] * 2
    assert [t.showscale for t in one.data] == [False, True] and one.data[0].contours.start == one.data[1].contours.start


# --------------------------------------------------------------------------- progressive grids, trajectory check
def test_grid_levels_are_nested_subsets_of_the_final_axis():
    levels = grid_levels(31, coarsest=5)
    assert [len(lv) for lv in levels][0] == 5 and levels[-1].tolist() == list(range(31))
    assert all(set(a) <= set(b) for a, b in zip(levels, levels[1:]))
    assert levels[0].tolist() == [0, 8, 15, 22, 30]  # ends and centre included: the coarse grid spans the plane
    assert [lv.tolist() for lv in grid_levels(4)] == [[0, 1, 2, 3]]


def test_progressive_surface_equals_the_plain_grid_and_reports_each_level(cnn_data, capsys):
    model, data = cnn_data
    d = random_directions(model, 2)
    seen = []
    land = progressive_surface(model, "cross_entropy", data, d, span=(-1, 1), resolution=(9, 7), coarsest=3,
                               on_level=lambda lv: seen.append((lv.losses.shape, lv.x.tolist())))
    plain = loss_surface(model, "cross_entropy", data, d, span=(-1, 1), resolution=(9, 7), verbose=False)
    np.testing.assert_allclose(land.losses, plain.losses, atol=1e-6, rtol=0)
    assert [s for s, _ in seen] == [(3, 3), (5, 5), (7, 9)] and seen[0][1] == [-1.0, 0.0, 1.0]
    out = capsys.readouterr().out  # the estimate comes after the coarse grid, before the rest
    assert "coarse 3×3 grid" in out and "9×7: 54 more points ×" in out


def test_trajectory_check_distance_and_true_loss():
    """Snapshots θ* + a·u + b·v + c·w with w ⟂ the PCA plane of the others: distance |c|, true loss = evaluate."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    data = (torch.randn(20, 4), torch.randint(3, (20,)))
    final = {n: p.detach().clone() for n, p in model.named_parameters()}
    basis = torch.linalg.qr(torch.randn(15, 3, dtype=torch.float64))[0].T.float()   # u, v, w orthonormal
    abc = [(1.0, 0.5, 0.0), (0.5, -0.8, 0.0), (-0.3, 0.2, 0.0), (0.2, 0.1, 0.05), (0.0, 0.0, 0.0)]
    snaps = []
    for a, b, c in abc:
        flat = a * basis[0] + b * basis[1] + c * basis[2]
        snaps.append({"weight": final["weight"] + flat[:12].view(3, 4), "bias": final["bias"] + flat[12:]})
    traj = pca_trajectory(snaps)
    check = trajectory_check(model, "cross_entropy", data, snaps, traj)
    flat = [torch.cat([(s[n] - final[n]).reshape(-1) for n in final]).double() for s in snaps]
    u = torch.stack([torch.cat([traj.directions[k][n].reshape(-1) for n in final]).double() for k in (0, 1)])
    expected = [float((f - u.T @ (u @ f)).norm()) for f in flat]
    np.testing.assert_allclose(check.distance, expected, atol=1e-5)
    assert check.distance[3] > 0.01 and check.relative[-1] == 0
    for s, true in zip(snaps, check.loss):
        other = nn.Linear(4, 3)
        other.load_state_dict(s)
        assert true == pytest.approx(ftkit.evaluate(other, [data], "cross_entropy", device="cpu")["loss"], abs=1e-5)
    planar = [i for i in range(5) if check.distance[i] < 1e-6]
    np.testing.assert_allclose(check.loss[planar], check.projected_loss[planar], atol=1e-5)
    fig = trajectory_check_figure(check)
    np.testing.assert_allclose(np.asarray(fig.data[2].y, dtype=float), 100 * check.relative)
    with pytest.raises(ValueError, match="4 weight snapshots but the trajectory has 5 points"):
        trajectory_check(model, "cross_entropy", data, snaps[:4], traj)


def test_live_contour_without_a_kernel_and_the_sharpness_figure(cnn_data):
    model, data = cnn_data
    land, fig = progressive_contour(model, "cross_entropy", data, random_directions(model, 0), resolution=5,
                                    coarsest=3, title="t", verbose=False)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), land.losses)
    assert fig.layout.title.text == "t (5×5 points)"

    class Monitor:
        rows = [{"step": 0, "sharpness": 1.0, "stability_edge": 4.0, "lr": 0.5},
                {"step": 10, "sharpness": 4.4, "stability_edge": 4.0, "lr": 0.5}]
    history = ftkit.train.History([{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
    fig = sharpness_figure({"η = 0.5": (history, Monitor())})
    assert list(fig.data[1].y) == [4.0, 4.0]                           # the edge 2/η
    np.testing.assert_allclose(list(fig.data[2].y), [0.5, 1.2])       # |1 − ηλ|: 1.2 > 1, the quadratic diverges


def test_live_contour_ends_with_a_fresh_output_not_one_more_update(monkeypatch):
    """The coarse levels update one display in place; the final figure is a new output and the live one is emptied
    (an in-place update racing the previous level's drawing could leave the coarse grid on screen)."""
    from ftkit.optviz.landscape import Landscape
    from ftkit.plots import landscape as plots_landscape
    shown = []

    class Handle:
        def __init__(self, n):
            self.n = n

        def update(self, bundle, raw=False):
            shown.append(("update", self.n, sorted(bundle)))

    def display(bundle, raw=False, display_id=False):
        shown.append(("display", len(shown), sorted(bundle)))
        return Handle(len(shown) - 1)

    monkeypatch.setattr(plots_landscape.LiveContour, "_display", staticmethod(lambda: display))
    live = plots_landscape.LiveContour(title="loss")
    grid = lambda n: Landscape(np.linspace(-1, 1, n), np.linspace(-1, 1, n), np.ones((n, n)), "vmap", 0.1)  # noqa: E731
    live(grid(3))
    live(grid(5))
    final = live.close(grid(9))
    assert [s[0] for s in shown] == ["display", "update", "update", "display"]
    assert shown[2][2] == ["text/plain"]                     # the live output emptied, the 9×9 figure shown anew
    assert final.layout.title.text == "loss (9×9 points)"


# --------------------------------------------------------------------------- landscape
def test_landscape_span_and_chunk_size():
    from ftkit.optviz.directions import random_directions
    from ftkit.optviz.landscape import loss_slice
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    data = (torch.randn(16, 3), torch.randint(2, (16,)))
    d = random_directions(model, seed=0)[0]
    with pytest.raises(ValueError, match=r"slice range \(-1e\+30, 1e\+30\) reaches beyond ±10000.*use e.g. \(-1, 1\)"):
        loss_slice(model, "cross_entropy", data, d, span=(-1e30, 1e30), verbose=False)
    with pytest.raises(ValueError, match="chunk_size must be a whole number >= 1.*got 0"):
        loss_slice(model, "cross_entropy", data, d, chunk_size=0, verbose=False)
    with pytest.raises(ValueError, match="chunk_size must be a whole number >= 1.*got -1"):
        loss_slice(model, "cross_entropy", data, d, chunk_size=-1, verbose=False)
    assert np.isfinite(loss_slice(model, "cross_entropy", data, d, chunk_size=3, verbose=False,
                                  resolution=5).losses).all()


def test_landscape_non_finite_points_are_said():
    from ftkit.optviz.directions import random_directions
    from ftkit.optviz.landscape import loss_slice
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    data = (torch.randn(16, 3), torch.randint(2, (16,)))
    d = random_directions(model, seed=0)[0]

    def loss(out, y):  # finite only near the trained weights
        value = nn.functional.cross_entropy(out, y)
        return torch.where(out.abs().max() > 50, torch.full_like(value, float("inf")), value)

    with pytest.warns(RuntimeWarning, match=r"\d+ of 21 grid points gave a non-finite loss and are NaN"):
        result = loss_slice(model, loss, data, d, span=(-9000, 9000), resolution=21, verbose=False)
    assert np.isnan(result.losses).any() and np.isfinite(result.losses[10])


def test_recalibrate_batchnorm_sets_the_plain_average_at_the_current_weights(cnn_data):
    model, (x, _) = cnn_data                        # running statistics set at random by the fixture
    bn = model[1]
    model.eval()
    assert recalibrate_batchnorm(model, x, batch_size=12) == 1   # two batches of 12
    h = model[0](x)                                 # what BatchNorm sees
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)), rtol=0, atol=1e-5)
    batch_vars = [b.var((0, 2, 3), unbiased=True) for b in h.split(12)]
    torch.testing.assert_close(bn.running_var, sum(batch_vars) / 2, rtol=0, atol=1e-5)
    assert not model.training and bn.momentum == 0.1    # mode and momentum as they were
    assert recalibrate_batchnorm(nn.Linear(3, 2), x) == 0       # nothing to do
