"""ftkit.articles: the articles' formulas and loops as code, checked against the correct ones and torch."""
import json
import math

import numpy as np
import pytest
import torch

from ftkit.articles import record
from ftkit.articles.adam import ArticleAdam, VARIANTS, adam_variants, bias_factor, zero_gradient_step
from ftkit.articles.bert_loop import (SEED001_CODE, SEED001_FIXES, apply_fixes, parse_prints, run_as_published,
                                      run_seed000_loop, syntax_error, tiny_classifier)
from ftkit.articles.cifar import loss_prints, selection_bias
from ftkit.articles.losses import (article_bce, article_bce_gradient, bce_on_labels_vs_ce, double_softmax_ce,
                                   index_ce, literal_ll, per_layer_loss, swapped_ce)
from ftkit.articles.numbers import f1_from_pr, predicted_tokens, report_averages, seed001_check, seed003_check
from ftkit.core import History


def test_article_adam_set_right_is_torch_adam_and_each_switch_changes_the_step():
    torch.manual_seed(0)
    a = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    ours, ref = ArticleAdam([a], lr=0.05), torch.optim.Adam([b], lr=0.05)
    for _ in range(30):
        for w, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            ((w - 1.0) ** 2 * torch.arange(1, 6)).sum().backward()
            opt.step()
    assert torch.allclose(a, b, atol=1e-12, rtol=0)

    def first_step(**switches):
        w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        w.grad = torch.tensor([0.3], dtype=torch.float64)
        ArticleAdam([w], lr=0.1, **switches).step()
        return float(w.detach())
    assert first_step() == pytest.approx(-0.1)                                   # sign(g)·lr at t = 1
    assert first_step(sign=1) == pytest.approx(0.1)                              # S4-04: ascent
    assert first_step(bias_correction=False) == pytest.approx(-0.1 * 10 ** 0.5, rel=1e-5)  # S4-05: √10 = 3.16× too long
    with pytest.raises(ValueError, match="sign must be -1"):
        ArticleAdam([torch.zeros(1, requires_grad=True)], sign=0)


def test_bias_factor_and_missing_eps():
    assert bias_factor([1, 10, 1000]) == pytest.approx([10 ** -0.5 * 10, 6.5279, 1.2576], abs=1e-4)
    assert np.argmax(bias_factor(np.arange(1, 200))) + 1 in range(8, 13)       # the peak is near t = 10
    assert zero_gradient_step(1e-8) == 0.0 and math.isnan(zero_gradient_step(0.0))   # S4-06


def test_adam_variants_on_booth():
    paths = adam_variants("booth", steps=60)
    assert set(paths) == set(VARIANTS)
    assert paths["adam"].losses[-1] < 1 < 1000 < paths["plus sign"].losses[-1]
    assert paths["as written (004:56)"].diverged and "left the box" in paths["as written (004:56)"].note


def test_the_articles_numbers_recomputed():
    rows = {r["average"]: r for r in seed001_check()}                            # S1-13
    assert rows["micro"]["implied"] == pytest.approx((0.9807,) * 3, abs=1e-4)
    assert rows["weighted"]["implied"] == pytest.approx((0.9820, 0.9807, 0.9813), abs=1e-4)
    assert rows["macro"]["max_gap"] <= 0.0005 < 0.007 < rows["micro"]["max_gap"]
    assert [r["f1_from_pr"] for r in seed003_check()] == pytest.approx([0.8539, 0.8674], abs=1e-4)   # S3-15
    assert f1_from_pr(0, 0) == 0.0
    # a report made from counts satisfies both identities exactly
    avg = report_averages({"a": (0.5, 1.0, f1_from_pr(0.5, 1.0), 2), "b": (1.0, 0.5, f1_from_pr(1.0, 0.5), 2)})
    assert avg["micro"] == pytest.approx((0.75,) * 3) and avg["macro"][2] == pytest.approx(2 / 3)


def test_selection_on_the_test_set_is_optimistic_and_on_val_is_not():
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(20, 400, generator=g) * 2                 # 20 candidates, all with the same true loss 1.0
    bias = selection_bias(noise, val_losses=torch.ones(20), splits=300)
    assert bias["candidates"] == 20 and bias["optimism"] < -0.03 and bias["share_of_splits_optimistic"] > 0.75
    assert abs(bias["fresh_loss_choosing_on_val"] - 1.0) < 0.05
    one = selection_bias(noise[:1], splits=300)                  # nothing to choose: no optimism beyond noise
    assert abs(one["optimism"]) < 3 * one["optimism_std"] / 300 ** 0.5


def test_loss_prints_of_seed001_and_seed004():
    h = History(steps=[{"epoch": e, "step": i, "loss": l} for i, (e, l) in
                       enumerate([(1, 2.0), (1, 1.0), (2, 0.8), (2, 0.4)])])
    p = loss_prints(h, n_batches=2)
    assert p["epoch_mean"] == pytest.approx([1.5, 0.6])
    assert p["seed001_print"] == pytest.approx([0.75, 1.05])     # (1.5)/2, (1.5 + 0.6)/2: grows while loss falls
    assert p["seed004_print"] == pytest.approx([1.0, 0.4])


def test_loss_formulas_as_printed():
    torch.manual_seed(0)
    z = torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 4])
    p = z.softmax(1)
    assert swapped_ce(p, y) == math.inf                                               # S1-04
    ce = torch.nn.functional.cross_entropy(z, y)
    assert index_ce(p, y) == pytest.approx(float(-(y[:, None] * p.log()).sum(1).mean()))   # S3-01
    assert float(index_ce(p, y)) > 2 * float(ce)
    logp = torch.log_softmax(torch.randn(3, 7, 5), -1)[..., 0]
    assert literal_ll(logp) == pytest.approx(49 * float(-logp.mean()), rel=1e-5)        # S3-05: T²
    assert abs(float(double_softmax_ce(z, y)) - math.log(5)) < 1                           # S3-08: near ln V
    zg = z.clone().requires_grad_(True)
    g_double = torch.autograd.grad(double_softmax_ce(zg, y), zg)[0].norm()
    g_ce = torch.autograd.grad(torch.nn.functional.cross_entropy(zg, y), zg)[0].norm()
    assert g_double < g_ce / 2
    m = torch.tensor([0.2, 0.9], dtype=torch.float64)
    assert article_bce(torch.logit(m), torch.tensor([3.0, 3.0])) < article_bce(torch.logit(m * 0.5), torch.tensor([3.0, 3.0]))
    x1, y1, w = torch.tensor([[2.0, -1.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), torch.tensor([-1.0, 0.5], dtype=torch.float64)
    auto, article = article_bce_gradient(x1, y1, w)                                      # S2-03
    mm = torch.sigmoid(x1 @ w)
    assert torch.allclose(article, auto * mm * (1 - mm)) and torch.allclose(auto, (mm - y1) * x1[0])


def test_bce_on_labels_1_to_4_has_no_minimum():
    r = bce_on_labels_vs_ce(n=200, steps=60, lr=0.1)
    bce = r["curves"]["bce_1to4"]
    assert bce[-1] < bce[len(bce) // 2] < 0 < r["ce_final_loss"] and r["ce_accuracy"] > r["bce_accuracy"]


def test_article_bert_code_fixes_apply_in_order_and_compile():
    code = SEED001_CODE
    for k in range(len(SEED001_FIXES) + 1):
        compile(apply_fixes(code, SEED001_FIXES[:k]), "x", "exec")
    with pytest.raises(ValueError, match="S1-06"):
        apply_fixes("print(1)", SEED001_FIXES[:1])
    assert parse_prints(["Epoch 1, train loss: 0.5, test loss: 0.7, train acc: 0.0000, test acc: 0.5"]) == {
        "train loss": [0.5], "test loss": [0.7], "train acc": [0.0], "test acc": [0.5]}
    assert syntax_error() == "SyntaxError: unexpected character after line continuation character"   # S4-09
    assert syntax_error('print(f"ok")') == ""


def test_record_merges_into_metrics_json(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
    record(tmp_path, {"a": 1})
    record(tmp_path, {"b": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"accuracy": 0.5, "article_errors": {"a": 1, "b": 2}}


def test_record_keeps_the_ids_a_cell_ran_and_refuses_other_names(tmp_path):
    record(tmp_path, {"a": 1}, shown=["S1-06"])
    assert record(tmp_path, {"b": 2}, shown=["S0-06", "S1-06"])["shown"] == ["S0-06", "S1-06"]
    with pytest.raises(ValueError, match=r"shown=\['S1-6'\]: audit ids look like 'S1-06'"):
        record(tmp_path, {}, shown=["S1-6"])


def test_seed001_rows_predict_fewer_tokens_than_they_score():
    """S1-16: Σ_c R_c·n_c / P_c is the number of predicted tags, which must be N; the article's rows fall short even
    with every rounding in their favour, while rows made from real counts hit N exactly."""
    s = predicted_tokens()
    assert s["tokens"] == 46435 and round(s["predicted"]) == 46359 and round(s["high"]) == 46407 < s["tokens"]
    # 3 tokens of class a (2 right), 1 of b (right); predicted: a twice (both right), b twice (1 right)
    rows = {"a": (1.0, 2 / 3, 0.8, 3), "b": (0.5, 1.0, 2 / 3, 1)}
    assert predicted_tokens(rows, rounding=0)["predicted"] == pytest.approx(4) == predicted_tokens(rows)["tokens"]


def test_per_layer_losses_of_002_are_one_loss():
    torch.manual_seed(0)
    r = per_layer_loss(torch.randn(6, 10), torch.randint(0, 10, (6,)), n_layers=32)
    assert r["value_gap"] < 1e-6 and r["gradient_gap"] < 1e-7 and r["n_layers"] == 32
    with pytest.raises(ValueError, match="n_layers must be a whole number >= 1"):
        per_layer_loss(torch.randn(2, 3), torch.tensor([0, 1]), n_layers=0)


def test_the_listings_as_published_stop_with_name_errors(tmp_path):
    r = run_as_published(lambda: tiny_classifier(tmp_path / "bert")[0])                # S1-15
    assert r["fixed"] == [f[0] for f in SEED001_FIXES]
    assert r["error"] == "NameError: name 'train_data_loader' is not defined"
    assert run_seed000_loop() == ["NameError: name 'epochs' is not defined",                  # S0-06
                                  "NameError: name 'train_dataset' is not defined"]
