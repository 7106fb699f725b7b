"""notebooks/02_gradient_descent.ipynb under papermill with small parameters: its checked facts and numbers."""
import pytest

pytestmark = pytest.mark.notebook


def test_gradient_descent_notebook(run_notebook):
    m = run_notebook("02_gradient_descent.ipynb", steps=60, grid=30, theory_steps=200, settle_steps=200,
                     sweep_points=6, explorer_grid=20)
    assert m["parameters"]["theory_steps"] == 200

    # every optimizer reaches Booth's minimum within its documented budget at its documented lr
    assert set(m["booth"]) == {"gd", "momentum", "nesterov", "rmsprop", "adam", "adamw"}
    for name, fact in m["booth"].items():
        assert fact["steps_to_tol"] is not None and fact["steps_to_tol"] <= fact["budget"], (name, fact)
    assert m["booth"]["gd"]["final_distance"] < 1e-6                       # GD settles

    # optimal rates on the quadratic, measured vs predicted
    q = m["quadratic"]
    assert q["gd_best_rate"] == pytest.approx((10 - 1) / (10 + 1))
    assert q["hb_best_rate"] == pytest.approx((10 ** 0.5 - 1) / (10 ** 0.5 + 1))
    assert q["gd_best_rate_measured"] == pytest.approx(q["gd_best_rate"], rel=0.01)
    assert q["hb_best_rate_measured"] == pytest.approx(q["hb_best_rate"], rel=0.02)

    # the lr sweep: rates on the theory curve, divergence exactly past each edge
    sweep = m["sweep"]
    assert sweep["edges"] == {"gd": 2.0, "momentum": pytest.approx(3.8)}
    assert max(sweep["worst_relative_error"].values()) < 0.03
    assert sweep["diverged_past_edge"] == {"gd": 1, "momentum": 1}

    # AdamW's decoupled decay holds it off the minimum, more so for a larger λ
    d = m["adamw_final_distance"]
    assert d["adam"] < 1e-3 < d["adamw"] < d["adamw λ=0.1"]
