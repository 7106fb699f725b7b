r"""Count-based baselines a trained model must beat: unigram / bigram language models and a word-lookup tagger.

A **unigram** model predicts every token with its training frequency, whatever came before; a **bigram** model with
the frequency of the token after the previous one. Both are add-:math:`\alpha` smoothed counts of the training split
scored on the validation split in nats per token:

.. math:: \mathrm{CE}_1 = -\frac1N\sum_t \log\frac{c(x_t)+\alpha}{N_{\text{train}}+\alpha V},\qquad
          \mathrm{CE}_2 = -\frac1{N-1}\sum_{t\ge1} \log\frac{c(x_{t-1}x_t)+\alpha}{c(x_{t-1})+\alpha V}.

A neural language model that scores no better than the unigram has learned letter frequencies only; below the bigram
it uses more than the previous token.

The **lookup tagger** gives each word the tag it had most often in training (``O`` for a word never seen): it finds
the names it has seen, exactly where they were written the same way, and none it has not. A fine-tuned tagger
that does not beat it has learned a dictionary, not context. :func:`unseen_entity_recall` scores exactly what the
lookup cannot do: the share of gold entities none of whose words occur in training that a tagger finds.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import torch

from ..utils import check_int, check_number

__all__ = ["ngram_cross_entropy", "lookup_tagger", "unseen_entity_recall"]


def ngram_cross_entropy(train_ids, val_ids, vocab_size: int, order: int = 1, alpha: float = 1.0) -> float:
    """Validation cross-entropy (nats per token) of an add-``alpha`` smoothed ``order``-gram model (1 or 2) counted
    on ``train_ids``; ids are integers in ``[0, vocab_size)`` (a 1-D tensor or list)."""
    check_int("vocab_size", vocab_size)
    check_number("alpha", alpha, positive=True)
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order!r}")
    train, val = (torch.as_tensor(x, dtype=torch.long).flatten() for x in (train_ids, val_ids))
    for name, ids in (("train_ids", train), ("val_ids", val)):
        if len(ids) < order:
            raise ValueError(f"{name} has {len(ids)} tokens; an order-{order} model needs at least {order}")
        if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
            raise ValueError(f"{name} holds ids outside [0, {vocab_size}): min {int(ids.min())}, max {int(ids.max())}; "
                             "pass the tokenizer's vocab_size")
    if order == 1:
        counts = torch.bincount(train, minlength=vocab_size).double() + alpha
        return float(-(counts / counts.sum()).log()[val].mean())
    pairs = torch.bincount(train[:-1] * vocab_size + train[1:], minlength=vocab_size ** 2).double()
    table = pairs.view(vocab_size, vocab_size) + alpha
    logp = (table / table.sum(1, keepdim=True)).log()
    return float(-logp[val[:-1], val[1:]].mean())


def lookup_tagger(train_words, train_tags):
    """A function ``tag(words) -> tags`` giving each word its most frequent training tag (ties: the first seen;
    unseen words: ``"O"``). ``train_words`` / ``train_tags``: lists of sentences (lists of str) of equal lengths."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for i, (words, tags) in enumerate(zip(train_words, train_tags)):
        if len(words) != len(tags):
            raise ValueError(f"training sentence {i} has {len(words)} words but {len(tags)} tags")
        for w, t in zip(words, tags):
            counts[w][t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    return lambda words: [best.get(w, "O") for w in words]


def _spans(tags):
    """(type, start, end) of each entity of well-formed IOB2 tags (end exclusive)."""
    out, start = [], None
    for i, t in enumerate(list(tags) + ["O"]):
        if start is not None and not (t.startswith("I-") and t[2:] == tags[start][2:]):
            out.append((tags[start][2:], start, i))
            start = None
        if t.startswith("B-") or (t.startswith("I-") and start is None):
            start = i
    return out


def unseen_entity_recall(train_words, words, gold_tags, pred_tags) -> dict:
    """Of the gold entities whose words never occur in ``train_words`` (lists of sentences), the share the
    predictions find with the right type and both boundaries (``n_unseen``, ``found``, ``recall``; recall is NaN
    when there is none). A lookup tagger scores 0 here by construction."""
    seen = {w for sentence in train_words for w in sentence}
    n = found = 0
    for i, (ws, gold, pred) in enumerate(zip(words, gold_tags, pred_tags)):
        if not len(ws) == len(gold) == len(pred):
            raise ValueError(f"sentence {i}: {len(ws)} words, {len(gold)} gold tags, {len(pred)} predicted tags")
        predicted = set(_spans(pred))
        for span in _spans(gold):
            if all(w not in seen for w in ws[span[1]:span[2]]):
                n += 1
                found += span in predicted
    return {"n_unseen": n, "found": found, "recall": found / n if n else float("nan")}
