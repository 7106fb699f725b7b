r"""One scorer, every NER scoring convention, on the same predictions.

Published NER numbers mix conventions that give very different numbers for one model:

* **entity F1, conlleval mode** (``conlleval.pl``, seqeval's default): an entity is a maximal run of tags of one
  type; an ``I-X`` after ``O`` still opens an entity. Found only if type and both boundaries match. *What
  CoNLL-2003 papers report.*
* **entity F1, strict mode** (seqeval ``mode="strict"``): the tags must form the scheme's entities (in IOB2 every
  entity starts with ``B-``); an ``I-X`` without its ``B-X`` is no entity. Never above conlleval on well-formed
  gold tags.
* **token-level** precision/recall/F1 per tag, ``O`` included, with micro/macro/weighted averages: the table many
  articles print. ``O`` is ~83 % of CoNLL-2003's words and nearly always right, so micro (= accuracy) and
  weighted F1 sit in the high 90s while entities are found far less often.
* **all-subword labelling**: every subword carries its word's tag (``B-X`` copied onto continuation pieces, as
  Hugging Face's ``label_all_tokens`` did): a name in three pieces counts as three ``B-X`` entities and three
  tokens, so long (rare) words weigh more, and scores move away from the word-level ones.

Entities are scored with :math:`P = TP/(TP+FP)`, :math:`R = TP/(TP+FN)`, :math:`F_1 = 2PR/(P+R)` ("micro" pools
all types, "macro" averages per-type F1); tokens with the same formulas per tag.

    rows = score_conventions(y_true, y_pred, word_ids=encoded.word_ids)   # one row per convention
    entity_scores(y_true, y_pred, mode="strict")["f1"]
    token_report(y_true, y_pred)["weighted avg"]["f1"]
"""
from __future__ import annotations

import re
from collections import Counter

from ..utils import choose

__all__ = ["SCHEMES", "check_tags", "get_entities", "strict_entities", "entity_scores", "entity_report",
           "token_report", "to_subwords", "score_conventions", "alignment_rows"]

# scheme → the tag prefixes it uses (besides O) and its name in seqeval (whose rules strict mode follows)
SCHEMES = {"iob2": (("B", "I"), "IOB2"), "iob1": (("B", "I"), "IOB1"), "ioe1": (("I", "E"), "IOE1"),
           "ioe2": (("I", "E"), "IOE2"), "iobes": (("B", "I", "E", "S"), "IOBES"),
           "bilou": (("B", "I", "L", "U"), "BILOU")}
MODES = ("conlleval", "strict")
_TAG = re.compile(r"([A-Z])-(.+)")


def check_tags(y_true, y_pred, *, labels=None, scheme: str = "IOB2") -> tuple[str, ...]:
    """Raise one clear ``ValueError`` for different lengths, unknown tags or a scheme that does not fit; else
    return the scheme's prefixes. ``y_true``/``y_pred`` are lists of sentences, each a list of tags."""
    prefixes, _ = choose("scheme", scheme, SCHEMES)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true sentences but {len(y_pred)} predicted ones; score the same sentences")
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if isinstance(t, str) or isinstance(p, str):
            raise TypeError(f"sentence {i}: expected a list of tags, got a string; wrap one sentence as [tags]")
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted; score the same words "
                             "(ftkit.nlp.ner.words_from_tokens maps subword predictions back to words)")
    seen = {tag for seqs in (y_true, y_pred) for s in seqs for tag in s}
    if labels is not None:
        unknown = sorted(seen - set(labels))
        if unknown:
            raise ValueError(f"unknown tags {unknown}: not among the labels {list(labels)}")
    bad = sorted(t for t in seen if t != "O" and not _TAG.fullmatch(str(t)))
    if bad:
        raise ValueError(f"tags {bad[:5]} are not 'O' or PREFIX-TYPE (e.g. 'B-PER'); map label ids to names first")
    foreign = sorted(t for t in seen if t != "O" and t[0] not in prefixes)
    if foreign:
        fits = [name.upper() for name, (p, _) in SCHEMES.items() if {t[0] for t in foreign} <= set(p)]
        raise ValueError(f"tags {foreign[:5]} use prefixes that scheme {scheme!r} does not have (it uses "
                         f"{', '.join(p + '-' for p in prefixes)}); pass scheme= one of {fits or list(SCHEMES)}")
    return prefixes


def get_entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end_inclusive)`` of each entity in one sentence, conlleval's rules (seqeval's default
    ``get_entities``): an entity is a run of one type; ``I-X`` after ``O`` or after another type opens one."""
    out, prev_tag, prev_type, begin = [], "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = chunk[0], chunk[1:].split("-", maxsplit=1)[-1] or "_"
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            out.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return out


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO")
            or (prev_tag not in "O." and prev_type != type_))


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return tag in "BS" or (prev_tag in "ESO" and tag in "EI") or (tag not in "O." and prev_type != type_)


# strict mode: per scheme, (previous prefix, this prefix, type condition) patterns that start an entity, continue
# it, and end the previous one (seqeval.scheme's tables; "*" any prefix, "=" same type, "!" another, "" any type)
_STRICT = {
    "iob1": ({"OI", "BI", "II!", "IB=", "BB="}, {"BI=", "II="}, {"II!", "IO", "IB", "BO", "BI!", "BB="}),
    "ioe1": ({"OI", "II!", "EI", "EE="}, {"II=", "IE="}, {"II!", "IO", "IE!", "EI=", "EE="}),
    "iob2": ({"*B"}, {"BI=", "II="}, {"IO", "II!", "IB", "BO", "BI!", "BB"}),
    "ioe2": ({"OI", "OE", "EI", "EE", "II!", "IE!"}, {"IE=", "II="}, {"E*"}),
    "iobes": ({"*B", "*S"}, {"BI=", "BE=", "II=", "IE="}, {"S*", "E*"}),
    "bilou": ({"*B", "*U"}, {"BI=", "BL=", "II=", "IL="}, {"U*", "L*"}),
}


def _matches(patterns: set[str], prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    for p in patterns:
        cond = p[2:]
        if (p[0] in ("*", prev[0]) and p[1] in ("*", cur[0])
                and (not cond or (cond == "=") == (prev[1] == cur[1]))):
            return True
    return False


def strict_entities(tags: list[str], scheme: str = "IOB2") -> list[tuple[str, int, int]]:
    """``(type, start, end_inclusive)`` of each entity the scheme allows (seqeval ``mode="strict"``): an entity
    must start, continue and end as the scheme says (IOB2: ``B-X I-X*``), otherwise it is no entity at all."""
    start, inside, end = _STRICT[scheme.lower().replace("-", "_")]
    toks = [(t[0], t[1:].strip("-") or "_") for t in [*tags, "O"]]
    out, i, prev = [], 0, ("O", "_")
    while i < len(toks):
        tok = toks[i]
        if _matches(start, prev, tok):
            j, last = i + 1, tok
            while j < len(toks) and _matches(inside, last, toks[j]):
                last, j = toks[j], j + 1
            if _matches(end, toks[j - 1], toks[j]):
                out.append((tok[1], i, j - 1))
            i = j
        else:
            i += 1
        prev = toks[i - 1]
    return out


def _entity_sets(seqs, mode: str, scheme: str) -> list[set]:
    """Per sentence, the set of ``(type, start, end_inclusive)`` entities under ``mode``."""
    if mode == "conlleval":
        return [set(get_entities(list(s))) for s in seqs]
    return [set(strict_entities(list(s), scheme)) for s in seqs]


def _prf(tp: int, n_pred: int, n_true: int) -> dict:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": n_true}


def entity_scores(y_true, y_pred, *, mode: str = "conlleval", scheme: str = "IOB2", labels=None) -> dict:
    """Micro P/R/F1 over entities, ``macro_f1``, ``per_type`` rows and the counts ``tp``, ``n_pred``, ``n_true``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    check_tags(y_true, y_pred, labels=labels, scheme=scheme)
    tp, n_pred, n_true = Counter(), Counter(), Counter()
    for t_ents, p_ents in zip(_entity_sets(y_true, mode, scheme), _entity_sets(y_pred, mode, scheme)):
        n_true.update(e[0] for e in t_ents)
        n_pred.update(e[0] for e in p_ents)
        tp.update(e[0] for e in t_ents & p_ents)
    per_type = {k: _prf(tp[k], n_pred[k], n_true[k]) for k in sorted(n_true | n_pred)}
    micro = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_true.values()))
    macro = sum(r["f1"] for r in per_type.values()) / len(per_type) if per_type else 0.0
    return {**micro, "macro_f1": macro, "per_type": per_type, "tp": sum(tp.values()),
            "n_pred": sum(n_pred.values()), "n_true": sum(n_true.values()), "mode": mode, "scheme": scheme}


def entity_report(y_true, y_pred, *, digits: int = 4, mode: str = "conlleval", scheme: str = "IOB2") -> str:
    """The per-type table (precision, recall, F1, support) with micro, macro and weighted averages, laid out as
    seqeval's ``classification_report``."""
    s = entity_scores(y_true, y_pred, mode=mode, scheme=scheme)
    rows = dict(s["per_type"])
    n, per = s["n_true"], list(s["per_type"].values())
    rows["micro avg"] = s
    rows["macro avg"] = {k: sum(r[k] for r in per) / max(len(per), 1) for k in ("precision", "recall", "f1")}
    rows["weighted avg"] = {k: sum(r[k] * r["support"] for r in per) / max(n, 1) for k in ("precision", "recall", "f1")}
    width = max([len(name) for name in rows] + [digits])
    head = f"{'':>{width}}  {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}\n\n"
    lines = [f"{name:>{width}}  " + " ".join(f"{r[k]:>9.{digits}f}" for k in ("precision", "recall", "f1"))
             + f" {r.get('support', n):>9}" for name, r in rows.items()]
    types = len(s["per_type"])
    return head + "\n".join(lines[:types]) + "\n\n" + "\n".join(lines[types:]) + "\n"


def token_report(y_true, y_pred, *, labels=None, scheme: str = "IOB2") -> dict:
    """Token-level P/R/F1/support per tag (``O`` last) plus ``micro avg`` (= accuracy), ``macro avg`` and
    ``weighted avg`` (by support) over every tag, ``O`` included: the classic classification-report table."""
    check_tags(y_true, y_pred, labels=labels, scheme=scheme)
    pairs = [(t, p) for ts, ps in zip(y_true, y_pred) for t, p in zip(ts, ps)]
    tags = list(labels) if labels is not None else sorted({x for pair in pairs for x in pair})
    tags = sorted((t for t in tags if t != "O"), key=lambda t: (t[2:], t[0])) + (["O"] if "O" in tags else [])
    tp = Counter(t for t, p in pairs if t == p)
    n_true, n_pred = Counter(t for t, _ in pairs), Counter(p for _, p in pairs)
    rows = {tag: _prf(tp[tag], n_pred[tag], n_true[tag]) for tag in tags}
    total = len(pairs)
    rows["micro avg"] = _prf(sum(tp.values()), total, total)
    rows["macro avg"] = {k: sum(r[k] for r in list(rows.values())[:len(tags)]) / max(len(tags), 1)
                         for k in ("precision", "recall", "f1")} | {"support": total}
    rows["weighted avg"] = {k: sum(rows[t][k] * n_true[t] for t in tags) / max(total, 1)
                            for k in ("precision", "recall", "f1")} | {"support": total}
    return rows


def to_subwords(word_tags: list[str], word_ids: list[int | None], continuation: str = "copy") -> list[str]:
    """Word tags spread over subwords (special tokens dropped). ``copy``: every piece takes its word's tag, a
    ``B-`` too (HF ``label_all_tokens``); ``inside``: later pieces of a ``B-X`` word get ``I-X``."""
    if continuation not in ("copy", "inside"):
        raise ValueError(f"unknown continuation {continuation!r}; choose one of: copy, inside")
    out, prev = [], None
    for w in word_ids:
        if w is not None:
            tag = word_tags[w]
            if w == prev and continuation == "inside" and tag.startswith("B-"):
                tag = "I-" + tag[2:]
            out.append(tag)
        prev = w
    return out


def score_conventions(y_true, y_pred, *, word_ids=None, labels=None) -> list[dict]:
    """Every convention on the same word-level IOB2 predictions: one row each with ``convention``, ``unit``,
    ``n`` (units scored), ``precision``, ``recall``, ``f1`` and what it means. With ``word_ids`` (one list per
    sentence, as :class:`ftkit.nlp.ner.Encoded` keeps them) the all-subword rows are added."""
    check_tags(y_true, y_pred, labels=labels)

    def entity_row(name, t, p, mode, meaning):
        s = entity_scores(t, p, mode=mode)
        return {"convention": name, "unit": "entities", "n": s["n_true"], **{k: s[k] for k in ("precision",
                "recall", "f1")}, "meaning": meaning}

    def token_row(name, report, avg, meaning):
        r = report[avg]
        return {"convention": name, "unit": "tokens", "n": r["support"], **{k: r[k] for k in ("precision",
                "recall", "f1")}, "meaning": meaning}

    words = token_report(y_true, y_pred, labels=labels)
    no_o = [(t, p) for ts, ps in zip(y_true, y_pred) for t, p in zip(ts, ps) if t != "O" or p != "O"]
    tp = sum(t == p for t, p in no_o)
    ent_tokens = _prf(tp, sum(p != "O" for _, p in no_o), sum(t != "O" for t, _ in no_o))
    rows = [
        entity_row("entity F1, conlleval (words)", y_true, y_pred, "conlleval",
                   "type and both boundaries right; what CoNLL-2003 papers report (conlleval.pl, seqeval default)"),
        entity_row("entity F1, strict IOB2 (words)", y_true, y_pred, "strict",
                   "same, but an I- without its B- is no entity (seqeval mode='strict')"),
        {"convention": "token F1 without O (words)", "unit": "tokens", "n": ent_tokens["support"],
         **{k: ent_tokens[k] for k in ("precision", "recall", "f1")},
         "meaning": "each entity word scored alone: partial credit for half-found names"},
        token_row("token micro F1 with O (words)", words, "micro avg", "= accuracy; O (most words) inflates it"),
        token_row("token macro F1 with O (words)", words, "macro avg", "mean of the per-tag F1, O one tag of 9"),
        token_row("token weighted F1 with O (words)", words, "weighted avg",
                  "the articles' '97 %': weighted by support, so mostly O"),
    ]
    if word_ids is not None:
        if len(word_ids) != len(y_true):
            raise ValueError(f"word_ids has {len(word_ids)} sentences but y_true has {len(y_true)}")
        for cont, what in (("copy", "B- copied onto continuation pieces (HF label_all_tokens)"),
                           ("inside", "continuation pieces of a B- word get I-")):
            t_sub = [to_subwords(t, w, cont) for t, w in zip(y_true, word_ids)]
            p_sub = [to_subwords(p, w, cont) for p, w in zip(y_pred, word_ids)]
            rows.append(entity_row(f"entity F1, conlleval (all subwords, {cont})", t_sub, p_sub, "conlleval",
                                   f"{what}; a name in k pieces counts k times" if cont == "copy" else
                                   f"{what}; entities as on words, tokens reweighted"))
            if cont == "copy":
                rows.append(token_row("token weighted F1 with O (all subwords)", token_report(t_sub, p_sub),
                                      "weighted avg", "long words weigh more; O still dominates"))
    return rows


def alignment_rows(tokens: list[str], word_ids: list[int | None], word_tags: list[str],
                   continuation: str = "copy") -> list[dict]:
    """One row per subword: ``subword``, ``word``, ``label`` under all-subword labelling and ``flag``, which
    says ``B- on a continuation subword`` where a ``B-`` tag sits on a piece that continues its word (each such
    piece opens an extra entity)."""
    if len(tokens) != len(word_ids):
        raise ValueError(f"{len(tokens)} tokens but {len(word_ids)} word ids; pass one word id per token")
    rows, prev = [], None
    for tok, w in zip(tokens, word_ids):
        if w is None:
            rows.append({"subword": tok, "word": None, "label": "-", "flag": ""})
        else:
            tag = word_tags[w]
            if w == prev and continuation == "inside" and tag.startswith("B-"):
                tag = "I-" + tag[2:]
            flag = "B- on a continuation subword" if w == prev and tag.startswith("B-") else ""
            rows.append({"subword": tok, "word": w, "label": tag, "flag": flag})
        prev = w
    return rows
