"""notebooks/04_bert_ner.ipynb under papermill: a tiny offline BERT on the shipped CoNLL-format sample."""
from pathlib import Path

import pytest

from ftkit.data import shipped
from ftkit.nlp.tiny import build_tiny_bert
from test_seed_errors import linked_ids

SAMPLE = shipped("conll2003_sample")

pytestmark = [pytest.mark.notebook, pytest.mark.multiprocess]   # its ddp section: 2 gloo processes


def test_bert_ner_notebook(run_notebook, tmp_path_factory, monkeypatch):
    tiny = build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", SAMPLE)
    m = run_notebook("04_bert_ner.ipynb", model_name_or_path=str(tiny), data_dir=str(SAMPLE),
                     epochs=3, batch_size=32, lr=5e-3, head_lr_mult=1.0, max_length=64, device="cpu",
                     ddp=True, ddp_device="cpu", ddp_max_steps=3)
    assert (m["n_train"], m["n_dev"], m["n_test"]) == (600, 150, 150)
    assert m["labels"] == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert m["epochs"] == 3 and m["device"] == "cpu" and m["amp"] is False
    assert m["recipe"]["grad_clip"] == 1.0 and m["recipe"]["batch_size"] == 32 and m["recipe"]["head_lr_mult"] == 1
    assert m["test"]["n_truncated"] == 0
    # learned: random tags score ~0 entity F1; the tiny model reaches ~0.8 on words it partly never saw
    assert m["dev"]["f1"] > 0.6 and m["test"]["f1"] > 0.6, (m["dev"]["f1"], m["test"]["f1"])
    assert m["val_f1_per_epoch"][-1] > m["val_f1_per_epoch"][0]
    for p, r, f1 in zip(m["val_precision_per_epoch"], m["val_recall_per_epoch"], m["val_f1_per_epoch"]):
        assert f1 == pytest.approx(2 * p * r / (p + r))  # the per-epoch dev table
    assert set(m["test"]["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    p, r = m["test"]["precision"], m["test"]["recall"]
    assert m["test"]["f1"] == pytest.approx(2 * p * r / (p + r))
    # every convention on the same test predictions: conlleval is the evaluate_ner number; O inflates tokens
    conv = {row["convention"]: row for row in m["conventions"]}
    assert conv["entity F1, conlleval (words)"]["f1"] == pytest.approx(m["test"]["f1"])
    # strict IOB2 finds a subset of conlleval's entities: its recall is never higher (its F1 can be: test_ner_scores)
    assert conv["entity F1, strict IOB2 (words)"]["recall"] <= conv["entity F1, conlleval (words)"]["recall"]
    assert conv["token weighted F1 with O (words)"]["f1"] > m["test"]["f1"]
    assert conv["entity F1, conlleval (all subwords, copy)"]["n"] > conv["entity F1, conlleval (words)"]["n"]
    assert conv["entity F1, conlleval (all subwords, inside)"]["f1"] == pytest.approx(m["test"]["f1"])
    assert m["reload_matches"] is True
    assert {e["type"] for e in m["predictions"][0]} <= {"PER", "LOC", "ORG", "MISC"}
    assert m["train_tokens_per_s"] > 0
    assert (m["ddp"]["processes"], m["ddp"]["steps"]) == (2, 3) and 0 <= m["ddp"]["val_f1"] <= 1   # 2 gloo processes

    art = m["article_errors"]      # "The articles' NER numbers, recomputed" (docs/seed_errors.md)
    s113 = {r["average"]: r for r in art["seed001_averages"]}                                    # S1-13
    assert s113["micro"]["implied"][0] == pytest.approx(0.9807, abs=1e-4) and s113["micro"]["max_gap"] > 0.007
    assert s113["weighted"]["max_gap"] > 0.008 and s113["macro"]["max_gap"] < 0.0005
    assert [r["f1_from_pr"] for r in art["seed003_f1"]] == pytest.approx([0.8539, 0.8674], abs=1e-4)  # S3-15
    assert art["own_report_gap"] < 1e-9 and art["own_f1_gap"] < 1e-9
    s116 = art["seed001_predicted_tokens"]                           # S1-16: Σ R·n/P must be N = 46,435
    assert round(s116["predicted"]) == 46359 and s116["high"] < s116["tokens"] == 46435
    assert set(art["shown"]) >= linked_ids("04_bert_ner.ipynb")
