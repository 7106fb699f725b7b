"""notebooks/02_gradient_descent.ipynb under papermill with small parameters: its checked facts and numbers."""
import math

import pytest

from test_seed_errors import linked_ids

# one xdist group with the tests that read the same execution (the site export, the JupyterLab test): the worker that
# runs them runs 02 once, and the other worker never waits on it
pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("02_gradient_descent")]


def test_gradient_descent_notebook(executed_notebook):
    _, m = executed_notebook("02_gradient_descent.ipynb")     # notebook_runs.TEST_PARAMETERS: small settings
    assert m["parameters"]["theory_steps"] == 200 and m["parameters"]["basin_grid"] == 6

    # every optimizer reaches Booth's minimum within its documented budget at its documented lr
    assert set(m["booth"]) == {"gd", "momentum", "nesterov", "rmsprop", "adam", "adamw"}
    for name, fact in m["booth"].items():
        assert fact["steps_to_tol"] is not None and fact["steps_to_tol"] <= fact["budget"], (name, fact)
    assert m["booth"]["gd"]["final_distance"] < 1e-6                       # GD settles

    # the batched engine drew the same paths as torch.optim
    assert m["engine"]["max_abs_diff"] <= 1e-10

    # basin maps: GD has a basin for each of Himmelblau's four minima; Rastrigin's GD ends in many local minima
    assert {"0", "1", "2", "3"} <= set(m["basins_himmelblau"]["gd"])
    assert sum(m["basins_himmelblau"]["gd"].values()) == pytest.approx(1.0)
    assert m["basins_rastrigin"]["distinct_minima"]["gd"] >= 9

    # noisy GD on the quadratic: the stationary spread follows ησ²/(λ(2-ηλ)) (y: nearly independent samples)
    nq = m["noise_quadratic"]
    assert nq["measured_var"][1] == pytest.approx(nq["predicted_var"][1], rel=0.25)
    assert nq["measured_var"][0] == pytest.approx(nq["predicted_var"][0], rel=0.6)
    assert all(v["noisy"] > v["clean"] for v in m["noise_final_distance"].values())
    assert m["schedule_final_distance"]["cosine"] < m["schedule_final_distance"]["constant"]

    # your own function: the basin map finds the camel's minima without being told; the best path reaches f ≈ -1.03
    assert m["own_function"]["minima_found"] == 6
    assert m["own_function"]["minima_f"][:2] == pytest.approx([-1.0316, -1.0316], abs=1e-4)
    assert m["own_function"]["best_f"] == pytest.approx(-1.0316, abs=2e-3)

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

    art = m["article_errors"]      # "What the articles get wrong about Adam" (docs/seed_errors.md)
    v = art["adam_variants"]       # Booth from (-8, 8) at lr 0.5, 60 steps
    assert v["no bias correction"]["first_step"] == pytest.approx(v["adam"]["first_step"] * 10 ** 0.5, rel=1e-6)  # S4-05
    assert v["plus sign"]["final_loss"] > 100 * art["start_loss"] > v["adam"]["final_loss"]                       # S4-04
    assert v["as written (004:56)"]["diverged"] and not v["adam"]["diverged"]
    assert art["near_start_highest_loss"]["no bias correction"] > 2 * art["near_start_highest_loss"]["adam"]
    assert art["bias_factor_1_10_1000"] == pytest.approx([3.1623, 6.5279, 1.2576], abs=1e-4)
    assert art["zero_gradient_step"]["eps=1e-8"] == 0.0 and math.isnan(art["zero_gradient_step"]["eps=0 (004:56)"])  # S4-06
    assert set(art["shown"]) == linked_ids("02_gradient_descent.ipynb") == {"S4-04", "S4-05", "S4-06"}
