"""ftkit.nlp.ner_scores: every convention against its reference (seqeval, sklearn) and by hand, and bad input."""
from __future__ import annotations

import random

import pytest

from ftkit.nlp.ner_scores import (SCHEMES, alignment_rows, check_tags, entity_report, entity_scores, get_entities,
                                  score_conventions, strict_entities, to_subwords, token_report)

LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
# "Angela Merkel visited Paris ." | "Siemens AG" (predicted: the second sentence starts an entity with I-)
TRUE = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG"]]
PRED = [["B-PER", "I-PER", "O", "O", "O"], ["I-ORG", "I-ORG"]]


def random_tags(n_sentences=200, seed=0):
    rng = random.Random(seed)
    y_true = [[rng.choice(LABELS) for _ in range(rng.randint(0, 12))] for _ in range(n_sentences)]
    # predictions: mostly the truth, some tags swapped (so I- without B- occurs in both)
    y_pred = [[t if rng.random() < 0.7 else rng.choice(LABELS) for t in s] for s in y_true]
    return y_true, y_pred


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
def test_entity_scores_match_seqeval(mode):
    pytest.importorskip("seqeval")
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2
    y_true, y_pred = random_tags()
    options = dict(mode="strict", scheme=IOB2) if mode == "strict" else {}
    s = entity_scores(y_true, y_pred, mode=mode)
    assert s["precision"] == pytest.approx(precision_score(y_true, y_pred, **options))
    assert s["recall"] == pytest.approx(recall_score(y_true, y_pred, **options))
    assert s["f1"] == pytest.approx(f1_score(y_true, y_pred, **options))
    assert s["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", **options))


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_entity_decoding_equals_seqeval_on_many_random_sequences(scheme):
    """ftkit's own decoder (seqeval is only a test dependency): the same entities as seqeval's get_entities
    (conlleval) and seqeval.scheme's strict decoder, on 3,000 random sentences per scheme, ill-formed ones too."""
    pytest.importorskip("seqeval")
    import warnings

    import seqeval.scheme
    from seqeval.metrics.sequence_labeling import get_entities as seqeval_entities
    prefixes, name = SCHEMES[scheme]
    rng = random.Random(scheme)
    tags = [["O" if rng.random() < 0.35 else f"{rng.choice(prefixes)}-{rng.choice(['PER', 'LOC', 'MISC'])}"
             for _ in range(rng.randint(0, 12))] for _ in range(3000)]
    strict = seqeval.scheme.Entities(tags, getattr(seqeval.scheme, name)).entities
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # seqeval warns on U-/L- tags, which conlleval does not know
        conll = [seqeval_entities(t) for t in tags]
    n_entities = 0
    for t, c, s in zip(tags, conll, strict):
        assert get_entities(t) == c, t
        assert set(strict_entities(t, scheme)) == {(e.tag, e.start, e.end - 1) for e in s}, t
        n_entities += len(c)
    assert n_entities > 3000        # the sequences hold entities, not only O


def test_entity_report_is_seqeval_classification_report():
    pytest.importorskip("seqeval")
    from seqeval.metrics import classification_report
    y_true, y_pred = random_tags(seed=3)
    assert entity_report(y_true, y_pred, digits=4) == classification_report(y_true, y_pred, digits=4,
                                                                             zero_division=0)


def test_strict_mode_drops_an_entity_without_its_b_tag():
    conll, strict = entity_scores(TRUE, PRED), entity_scores(TRUE, PRED, mode="strict")
    # conlleval: PER and ORG found (I-ORG I-ORG is an ORG entity), LOC missed: P = 2/2, R = 2/3
    assert (conll["tp"], conll["n_pred"], conll["n_true"]) == (2, 2, 3)
    assert conll["f1"] == pytest.approx(0.8)
    # strict IOB2: "I-ORG I-ORG" is no entity, so only PER: P = 1/1, R = 1/3, F1 = 0.5
    assert (strict["tp"], strict["n_pred"], strict["n_true"]) == (1, 1, 3)
    assert strict["f1"] == pytest.approx(0.5)


def test_strict_mode_can_score_higher_than_conlleval_on_well_formed_gold():
    """A stray I- in the prediction is a false positive for conlleval (an I-X after O opens an entity) and nothing
    for strict IOB2, so strict can be the HIGHER score even when the gold tags are well formed."""
    gold, pred = [["B-LOC", "O", "O"]], [["B-LOC", "O", "I-PER"]]
    conll, strict = entity_scores(gold, pred), entity_scores(gold, pred, mode="strict")
    assert (conll["tp"], conll["n_pred"], conll["n_true"]) == (1, 2, 1)      # P = 1/2, R = 1
    assert conll["f1"] == pytest.approx(2 / 3)                               # 0.667
    assert (strict["tp"], strict["n_pred"], strict["n_true"]) == (1, 1, 1)
    assert strict["f1"] == pytest.approx(1.0)

def test_token_report_matches_sklearn_with_o_inflating():
    from sklearn.metrics import classification_report
    y_true, y_pred = random_tags(seed=1)
    flat_t, flat_p = sum(y_true, []), sum(y_pred, [])
    ref = classification_report(flat_t, flat_p, labels=LABELS, output_dict=True, zero_division=0)
    rows = token_report(y_true, y_pred, labels=LABELS)
    assert list(rows)[:9] == ["B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER", "O"]
    for tag in LABELS:
        assert rows[tag]["f1"] == pytest.approx(ref[tag]["f1-score"]) and rows[tag]["support"] == ref[tag]["support"]
    assert rows["micro avg"]["f1"] == pytest.approx(ref["accuracy"])  # every token has a tag: micro = accuracy
    for avg in ("macro avg", "weighted avg"):
        assert rows[avg]["f1"] == pytest.approx(ref[avg]["f1-score"])
        assert rows[avg]["precision"] == pytest.approx(ref[avg]["precision"])
    # the hand case: 5 of 7 tokens right (accuracy 5/7) while entity F1 is 0.8 conlleval, 0.5 strict
    assert token_report(TRUE, PRED)["micro avg"]["f1"] == pytest.approx(5 / 7)


def test_all_subword_copy_counts_a_split_name_once_per_piece():
    # "Merkelstein" in 3 pieces, "Paris" in 1; the prediction misses Paris
    word_ids = [None, 0, 0, 0, 1, None]
    t, p = ["B-PER", "B-LOC"], ["B-PER", "O"]
    assert to_subwords(t, word_ids) == ["B-PER", "B-PER", "B-PER", "B-LOC"]
    assert to_subwords(t, word_ids, "inside") == ["B-PER", "I-PER", "I-PER", "B-LOC"]
    rows = {r["convention"]: r for r in score_conventions([t], [p], word_ids=[word_ids])}
    words = rows["entity F1, conlleval (words)"]
    copy = rows["entity F1, conlleval (all subwords, copy)"]
    inside = rows["entity F1, conlleval (all subwords, inside)"]
    assert (words["n"], words["recall"], words["f1"]) == (2, 0.5, pytest.approx(2 / 3))
    assert (copy["n"], copy["recall"], copy["f1"]) == (4, 0.75, pytest.approx(6 / 7))  # inflated: 3 PER "entities"
    assert (inside["n"], inside["f1"]) == (2, words["f1"])  # B→I on continuations: the word-level entities


def test_score_conventions_rows_on_the_same_predictions():
    rows = {r["convention"]: r for r in score_conventions(TRUE, PRED)}
    assert rows["entity F1, conlleval (words)"]["f1"] == pytest.approx(0.8)
    assert rows["entity F1, strict IOB2 (words)"]["f1"] == pytest.approx(0.5)
    assert rows["token micro F1 with O (words)"]["f1"] == pytest.approx(5 / 7)
    # without O: 5 entity-tag tokens true, 4 predicted, 3 equal (B-PER, I-PER, I-ORG): P 3/4, R 3/5
    assert rows["token F1 without O (words)"]["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert all(r["meaning"] for r in rows.values()) and len(rows) == 6


def test_alignment_rows_flag_b_on_continuation():
    tokens = ["[CLS]", "merkel", "##stein", "paris", "[SEP]"]
    rows = alignment_rows(tokens, [None, 0, 0, 1, None], ["B-PER", "B-LOC"])
    assert [r["label"] for r in rows] == ["-", "B-PER", "B-PER", "B-LOC", "-"]
    assert [r["flag"] for r in rows] == ["", "", "B- on a continuation subword", "", ""]
    inside = alignment_rows(tokens, [None, 0, 0, 1, None], ["B-PER", "B-LOC"], continuation="inside")
    assert [r["label"] for r in inside][2] == "I-PER" and not any(r["flag"] for r in inside)


def test_bad_input_one_clear_error_each():
    with pytest.raises(ValueError, match=r"2 true sentences but 1 predicted ones"):
        entity_scores(TRUE, PRED[:1])
    with pytest.raises(ValueError, match=r"sentence 1: 2 true tags but 1 predicted; score the same words"):
        token_report(TRUE, [PRED[0], ["O"]])
    with pytest.raises(ValueError, match=r"unknown tags \['B-FOO'\]: not among the labels"):
        entity_scores(TRUE, [PRED[0], ["B-FOO", "O"]], labels=LABELS)
    with pytest.raises(ValueError, match=r"tags \['PER'\] are not 'O' or PREFIX-TYPE"):
        score_conventions(TRUE, [PRED[0], ["PER", "O"]])
    with pytest.raises(ValueError, match=r"tags \['E-ORG', 'S-LOC'\] use prefixes that scheme 'IOB2' does not "
                                         r"have \(it uses B-, I-\); pass scheme= one of \['IOBES'\]"):
        entity_scores([["S-LOC", "O"]], [["B-ORG", "E-ORG"]], mode="strict")
    assert check_tags([["S-LOC", "O"]], [["B-ORG", "E-ORG"]], scheme="IOBES") == ("B", "I", "E", "S")
    with pytest.raises(ValueError, match=r"unknown scheme 'IOB3'; choose one of: bilou, iob1, iob2"):
        entity_scores(TRUE, PRED, scheme="IOB3")
    with pytest.raises(ValueError, match=r"unknown mode 'default'; choose one of: conlleval, strict"):
        entity_scores(TRUE, PRED, mode="default")
    with pytest.raises(TypeError, match=r"sentence 0: expected a list of tags, got a string"):
        entity_scores(["B-PER"], ["B-PER"])
    with pytest.raises(ValueError, match=r"word_ids has 1 sentences but y_true has 2"):
        score_conventions(TRUE, PRED, word_ids=[[None, 0]])
