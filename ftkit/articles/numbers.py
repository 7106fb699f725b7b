"""The articles' printed numbers, and what they imply when recomputed from the articles' own tables.

* S0-08: seed 000 prints ``Epoch 10, Loss: 0.5900`` then ``Test Loss: 0.5372`` — the same ``evaluate_step`` on the
  same test set with the same weights (``training=False`` is deterministic): the two must be equal.
* S1-13: seed 001's CoNLL report. Its per-class rows fix micro accuracy (Σ R_c·n_c / N) and the weighted
  averages; the printed micro and weighted rows (0.973) do not follow from them.
* S1-16: the same rows contradict each other: each token gets exactly one predicted tag, so the tags predicted per
  class, TP_c / P_c = R_c·n_c / P_c, must add up to the N = 46,435 tokens; the rows give 46,359 (46,312–46,407 with
  their rounding).
* S3-15: seed 003's dev P / R / F1: F1 = 2PR/(P+R) gives 0.854 and 0.867, not the printed 0.846 and 0.862.
"""
from __future__ import annotations

__all__ = ["SEED000_TEST_LOSS", "SEED000_FINAL_TEST_LOSS", "SEED001_REPORT", "SEED001_AVERAGES", "SEED003_DEV",
           "f1_from_pr", "report_averages", "predicted_tokens", "seed000_check", "seed001_check", "seed003_check"]

# 000:274–284, "Epoch k, Loss: …" (evaluate_step(x_test, y_test) after each epoch), then the final test loss
SEED000_TEST_LOSS = [1.6839, 1.0893, 0.8276, 0.7020, 0.6345, 0.6182, 0.6022, 0.5946, 0.5910, 0.5900]
SEED000_FINAL_TEST_LOSS = 0.5372

# 001:282–290: label -> (precision, recall, f1, support)
SEED001_REPORT = {
    "B-LOC": (0.926, 0.906, 0.916, 1668), "I-LOC": (0.900, 0.805, 0.850, 257),
    "B-MISC": (0.875, 0.856, 0.865, 702), "I-MISC": (0.838, 0.782, 0.809, 216),
    "B-ORG": (0.914, 0.898, 0.906, 1661), "I-ORG": (0.911, 0.894, 0.902, 835),
    "B-PER": (0.964, 0.957, 0.960, 1617), "I-PER": (0.983, 0.980, 0.982, 1156),
    "O": (0.993, 0.995, 0.994, 38323),
}
# 001:292–294, the printed average rows: (precision, recall, f1)
SEED001_AVERAGES = {"micro": (0.973, 0.973, 0.973), "macro": (0.923, 0.897, 0.909), "weighted": (0.973, 0.973, 0.973)}

# 003:237–247: epoch -> (train loss, precision, recall, f1)
SEED003_DEV = {1: (0.301, 0.863, 0.845, 0.846), 2: (0.234, 0.876, 0.859, 0.862)}


def f1_from_pr(precision: float, recall: float) -> float:
    """The harmonic mean 2PR/(P+R), which every F1 computed from the same counts satisfies (0 when P+R = 0)."""
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def report_averages(rows: dict) -> dict[str, tuple[float, float, float]]:
    """Macro, weighted and micro averages implied by a classification report's per-class rows.

    Micro recall over every class (``O`` included) is the accuracy Σ R_c·n_c / N; each token has exactly one
    true and one predicted label, so micro precision = micro recall = micro F1 = accuracy.
    """
    n = sum(r[3] for r in rows.values())
    macro = tuple(sum(r[i] for r in rows.values()) / len(rows) for i in range(3))
    weighted = tuple(sum(r[i] * r[3] for r in rows.values()) / n for i in range(3))
    accuracy = weighted[1]
    return {"micro": (accuracy, accuracy, accuracy), "macro": macro, "weighted": weighted}


def predicted_tokens(rows: dict = SEED001_REPORT, rounding: float = 0.0005) -> dict:
    """S1-16: the tokens a report's rows say were predicted, Σ_c R_c·n_c / P_c (TP_c = R_c·n_c true positives of
    class c, of which P_c is the share among the tokens predicted as c), beside the N = Σ_c n_c tokens it scores.
    Each token gets exactly one predicted tag, so the two must be equal; ``low``/``high`` bound the sum over every
    P, R within ``rounding`` of the printed ones."""
    n = sum(r[3] for r in rows.values())
    return {"predicted": sum(r * m / p for p, r, _, m in rows.values()),
            "low": sum((r - rounding) * m / (p + rounding) for p, r, _, m in rows.values()),
            "high": sum((r + rounding) * m / (p - rounding) for p, r, _, m in rows.values()), "tokens": n}


def seed000_check(measured_last_epoch: float, measured_final: float) -> dict:
    """Seed 000's last two lines against the same two evaluations of a trained model."""
    return {"article_epoch10_test_loss": SEED000_TEST_LOSS[-1], "article_final_test_loss": SEED000_FINAL_TEST_LOSS,
            "article_difference": round(SEED000_TEST_LOSS[-1] - SEED000_FINAL_TEST_LOSS, 4),
            "measured_epoch_last_test_loss": measured_last_epoch, "measured_final_test_loss": measured_final,
            "measured_difference": measured_last_epoch - measured_final}


def seed001_check(rows: dict = SEED001_REPORT, printed: dict = SEED001_AVERAGES) -> list[dict]:
    """One row per average: printed P/R/F1 next to the values the per-class rows imply (rounding: ±0.0005)."""
    implied = report_averages(rows)
    return [{"average": k, "printed": printed[k], "implied": tuple(round(v, 4) for v in implied[k]),
             "max_gap": round(max(abs(a - b) for a, b in zip(printed[k], implied[k])), 4)} for k in printed]


def seed003_check(table: dict = SEED003_DEV) -> list[dict]:
    """Each epoch's printed F1 next to 2PR/(P+R) of its own printed P and R."""
    return [{"epoch": e, "precision": p, "recall": r, "printed_f1": f, "f1_from_pr": round(f1_from_pr(p, r), 4),
             "gap": round(f1_from_pr(p, r) - f, 4)} for e, (_, p, r, f) in table.items()]
