"""ftkit.nlp.baselines: the count-based floors against hand-computed values, and bad input."""
import math

import pytest

from ftkit.nlp.baselines import lookup_tagger, ngram_cross_entropy, unseen_entity_recall


def test_unigram_and_bigram_against_hand_counts():
    train, val = [0, 1, 0, 1, 0, 2], [0, 1]
    # unigram, alpha 1: counts 3+1, 2+1, 1+1 of 6+3 → -(log 4/9 + log 3/9)/2
    assert ngram_cross_entropy(train, val, 3) == pytest.approx(-(math.log(4 / 9) + math.log(3 / 9)) / 2)
    # bigram: after 0 come 1, 1, 2 → p(1|0) = (2+1)/(3+3)
    assert ngram_cross_entropy(train, val, 3, order=2) == pytest.approx(-math.log(3 / 6))
    # a text where the previous token decides the next: the bigram is far below the unigram
    alt = [0, 1] * 50
    assert ngram_cross_entropy(alt, alt, 2, order=2, alpha=0.01) < 0.01 < math.log(2) - 0.01 < ngram_cross_entropy(alt, alt, 2)


def test_bad_input_says_what_to_pass():
    with pytest.raises(ValueError, match=r"ids outside \[0, 2\).*vocab_size"):
        ngram_cross_entropy([0, 1, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="order must be 1"):
        ngram_cross_entropy([0, 1], [0, 1], 2, order=3)
    with pytest.raises(ValueError, match="needs at least 2"):
        ngram_cross_entropy([0, 1], [1], 2, order=2)


def test_lookup_tagger_takes_the_most_frequent_tag_and_o_for_unseen_words():
    tag = lookup_tagger([["Paris", "is", "big"], ["Paris", "Hilton"], ["Paris", "."]],
                        [["B-LOC", "O", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"]])
    assert tag(["Paris", "Hilton", "sings"]) == ["B-LOC", "I-PER", "O"]
    with pytest.raises(ValueError, match="sentence 0 has 2 words but 1 tags"):
        lookup_tagger([["a", "b"]], [["O"]])


def test_unseen_entity_recall_counts_only_entities_of_unseen_words():
    train = [["Paris", "is", "big"]]
    words = [["Paris", "met", "Zorg", "Blix", "."], ["Quux", "rose"]]
    gold = [["B-LOC", "O", "B-PER", "I-PER", "O"], ["B-ORG", "O"]]
    pred = [["O", "O", "B-PER", "I-PER", "O"], ["B-PER", "O"]]        # Zorg Blix found; Quux with the wrong type
    assert unseen_entity_recall(train, words, gold, pred) == {"n_unseen": 2, "found": 1, "recall": 0.5}
    lookup = lookup_tagger(train, [["B-LOC", "O", "O"]])
    assert unseen_entity_recall(train, words, gold, [lookup(w) for w in words])["recall"] == 0
    with pytest.raises(ValueError, match="sentence 0: 1 words, 1 gold tags, 2 predicted tags"):
        unseen_entity_recall(train, [["a"]], [["O"]], [["O", "O"]])
