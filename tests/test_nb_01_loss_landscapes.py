"""notebooks/01_loss_landscapes.ipynb under papermill with small parameters, on a fake CIFAR-10 folder."""
import base64
import json

import numpy as np
import pytest

from ftkit.data.fake import write_fake_cifar10

pytestmark = pytest.mark.notebook


def array(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly's typed form {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict):
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape)
    return np.array(value, dtype=float)


@pytest.mark.timeout(900)   # ≈ 5 min on a loaded 2-core machine; the limit only guards a hang
def test_loss_landscapes_notebook(run_notebook, tmp_path):
    write_fake_cifar10(tmp_path / "cifar", n_train=400, n_test=10, noise=2.5)
    m = run_notebook("01_loss_landscapes.ipynb", data_dir=str(tmp_path / "cifar"), train_images=384,
                     eval_images=64, epochs=2, batch_size=32, lr=3e-3, record_every=4, resolution=5,
                     coarsest=3, line_points=5, direction_seeds=2, eos_images=300, eos_width=64, eos_steps=120,
                     sharpness_every=5, skip_width=8, skip_images=512, skip_epochs=2, skip_resolution=9,
                     skip_eval_images=32, skip_seeds=1)
    assert m["data"] == "CIFAR-10" and m["parameters"]["train_images"] == 384

    # a learnable task: both losses train the CNN well above chance (10 %)
    assert m["accuracy"]["cross_entropy"] > 0.5 and m["accuracy"]["mse"] > 0.3

    # interpolation: α = 0 is the initial loss (about ln 10 for 10 balanced classes), α = 1 the trained one
    alpha, loss = m["interpolation"]["alpha"], m["interpolation"]["loss"]
    at = dict(zip(alpha, loss))
    assert at[0.0] == pytest.approx(2.30, abs=0.1) and at[1.0] < 0.8 * at[0.0]

    # the 2-D plane (computed coarse to fine): vmap by default, centre = the trained loss, higher away from θ*
    p = m["plane"]
    assert p["method"] == "vmap" and p["nan_points"] == 0
    assert p["center"] == pytest.approx(at[1.0], abs=1e-4)
    assert p["max"] > p["center"]
    assert abs(m["direction_cosine"]) < 1e-6

    # seed spread reported for both losses; the slices rise away from the minimum
    for label in ("cross-entropy", "MSE"):
        s = m["seed_spread"][label]
        assert s["ends_mean"] > s["center"] and 0 < s["spread_percent"] < 50

    # trajectory: 2 epochs × 12 steps, a snapshot every 4 → 7; ends at the origin, in a plane below the start
    t = m["trajectory"]
    assert t["snapshots"] == 7 and t["end"] == pytest.approx([0, 0], abs=1e-6)
    assert 0 < t["explained_variance"][1] <= t["explained_variance"][0] < 1
    assert t["pca_min"] < at[0.0]

    # the check of the PCA picture: true loss at the start = the initial loss; θ* itself lies in the plane
    c = m["trajectory_check"]
    assert c["loss"][0] == pytest.approx(at[0.0], abs=1e-4) and c["loss"][-1] == pytest.approx(at[1.0], abs=1e-4)
    assert c["relative_distance"][-1] == 0 and 0 < max(c["relative_distance"]) < 1
    assert c["projected_loss"][-1] == pytest.approx(at[1.0], abs=1e-4)

    # edge of stability (the notebook asserts the science itself; here: it ran both rates and logged them)
    eos = m["edge_of_stability"]
    assert sorted(e["lr"] for e in eos.values()) == [0.6, 0.8]
    assert all(e["estimates"] == 25 and e["peak"] >= 1 for e in eos.values())
    assert m["full_setting_grid_seconds"] > m["section_seconds"]["plane"]

    # skip connections: the same 20-layer net with and without them, trained alike; the plain plane is the less
    # convex one (the notebook asserts the gap; here the numbers behind it and the figure)
    skip = m["skip_connections"]
    plain, residual = skip["plain"], skip["residual"]
    assert plain["depth"] == residual["depth"] == 20 and plain["seeds"] == residual["seeds"] == [0]
    assert residual["accuracy"][0] > plain["accuracy"][0] + 0.15 and plain["accuracy"][0] > 0.3   # 0.78 and 0.46
    assert plain["negative_share"][0] >= residual["negative_share"][0] + 0.05
    assert plain["mean_ratio"][0] > residual["mean_ratio"][0]
    for run in (plain, residual):     # θ* in the middle of its 9 × 9 grid, BatchNorm recalibrated: the trained loss
        z = np.array(run["first_losses"])
        assert z.shape == (9, 9) and z[4, 4] == pytest.approx(run["center"][0]) and run["center"][0] < 1.6

    # the figure: two contours of log10 loss on one colour scale (the range of both grids), one colour bar
    nb = json.loads((tmp_path / "01_loss_landscapes.ipynb").read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "skip_run(" in "".join(c["source"]))
    fig = next(o["data"]["application/vnd.plotly.v1+json"] for o in cell["outputs"]
               if "application/vnd.plotly.v1+json" in o.get("data", {}))
    traces = [t for t in fig["data"] if t["type"] == "contour"]
    zs = [np.log10(np.array(run["first_losses"])) for run in (plain, residual)]
    assert len(traces) == 2 and all(np.allclose(array(t["z"]), z) for t, z in zip(traces, zs))
    lo, hi = min(z.min() for z in zs), max(z.max() for z in zs)
    assert all(t["zmin"] == pytest.approx(lo) and t["zmax"] == pytest.approx(hi) for t in traces)
    assert [t.get("showscale", True) for t in traces] == [False, True]
    assert "plain-20" in fig["layout"]["annotations"][0]["text"] and "residual-20" in fig["layout"]["annotations"][1]["text"]
