r"""Named-entity recognition with a BERT-style encoder: tokenize and align labels, batch, score words, predict.

Words are split into subwords; the first subword of each word carries the word's label and the others get
:math:`-100`, which the cross-entropy skips:

.. math:: L = -\frac{1}{|K|}\sum_{t\in K}\log p_\theta(y_{w(t)} \mid x)

with :math:`K` the first-subword positions and :math:`w(t)` the word of token :math:`t`.

Evaluation maps the first-subword predictions back to **words** and scores entities (ftkit.nlp.ner_scores, seqeval's rules) in its
default (conlleval) mode: an entity counts only if type and both boundaries match.

    tagger = NerTagger.from_pretrained("bert-base-cased", label_list=data.label_list)
    args = NerRecipe().fit_args(tagger, tagger.encode(data.train), epochs=3)  # measured defaults, see README
    history = ftkit.fit(tagger.model, **args, val_loader=tagger.loader(tagger.encode(data.valid)),
                        metrics=entity_metrics(tagger.label_list))  # val_precision, val_recall, val_f1 per epoch
    evaluate_ner(tagger.model, tagger.encode(data.test))["f1"]
    tagger.predict(["Angela Merkel visited Paris ."])  # [[{'type': 'PER', 'text': 'Angela Merkel', ...}, ...]]

Loading never runs code from a model repository (``trust_remote_code=False`` everywhere). The figures of notebook 04
are in :mod:`ftkit.plots.ner`; a tiny offline model to test with comes from :func:`ftkit.nlp.tiny.build_tiny_bert`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import partial

import torch
from torch.utils.data import DataLoader

from ..data.conll import Sentence
from ..core import IGNORE, eval_mode
from .hf import (TruncationWarning, FeatureDataset, LengthGroupedBatches, check_head_and_length, check_save_folder,
                 check_texts, collate, from_pretrained, load_config, load_tokenizer, make_loader)
from ..optim import split_decay_params
from ..train.step import autocast as _autocast, send_to_device as _to_device
from ..utils import check_int, check_number, get_device
from .recipe import Recipe
from ..env import require

__all__ = ["load_model", "Encoded", "encode", "words_from_tokens", "predict_tags", "evaluate_ner", "entity_f1",
           "entity_metrics", "NerRecipe", "NerTagger"]


# --------------------------------------------------------------------------- loading
def load_model(model_name_or_path: str, label_list: list[str] | None = None):
    """``(model, label_list)``: a token-classification model whose head matches the labels.

    A base model (no NER head) gets a fresh head for ``label_list``. A fine-tuned one keeps its own label order;
    it must have the same labels as the data, else ``ValueError`` (its head would not fit).
    """
    require("transformers")
    from transformers import AutoModelForTokenClassification
    path = os.fspath(model_name_or_path)
    config = load_config(path)
    has_head = any(a.endswith("ForTokenClassification") for a in (config.architectures or []))
    if has_head:
        model_labels = [config.id2label[i] for i in range(config.num_labels)]
        if label_list is not None and model_labels == [f"LABEL_{i}" for i in range(len(label_list))]:
            model_labels = list(label_list)  # a head saved without names: take the data's, if the count fits
        if label_list is not None and sorted(model_labels) != sorted(label_list):
            raise ValueError(f"{path!r} was fine-tuned for {len(model_labels)} labels {model_labels}, but the data "
                             f"has {len(label_list)}: {label_list}; start from its base model (e.g. bert-base-cased) "
                             "or evaluate it on data with the same entity types")
        if label_list is not None and list(label_list) != model_labels:
            warnings.warn(f"{path!r} orders its labels {model_labels}, the data {list(label_list)}: tags are mapped "
                          "by name (the model's order is kept), so pass tagger.label_list, not the data's, to "
                          "entity_metrics", UserWarning, stacklevel=3)
        label_list = model_labels
    elif label_list is None:
        raise ValueError(f"{path!r} has no NER head yet; pass label_list= (e.g. load_conll(...).label_list)")
    model, _ = from_pretrained(AutoModelForTokenClassification, path, num_labels=len(label_list),
                               id2label=dict(enumerate(label_list)), label2id={t: i for i, t in enumerate(label_list)},
                               trust_remote_code=False)
    return model, list(label_list)


# --------------------------------------------------------------------------- tokenize + align
@dataclass
class Encoded(FeatureDataset):
    """Tokenized sentences: ``features[i]`` holds the model inputs + ``labels`` as 1-D tensors.

    ``word_ids[i][t]`` is the word of token ``t`` (``None`` for [CLS]/[SEP]); ``n_truncated`` counts the
    sentences cut at ``max_length``.
    """
    sentences: list[Sentence]
    features: list[dict]
    word_ids: list[list[int | None]]
    n_truncated: int
    max_length: int


def encode(sentences: list[Sentence], tokenizer, label_list: list[str], max_length: int = 256,
           stacklevel: int = 2) -> Encoded:
    """Subword inputs with word labels on first subwords (others ``-100``); warns with the count of cut sentences."""
    label2id = {t: i for i, t in enumerate(label_list)}
    unknown = sorted({t for s in sentences for t in s.labels} - set(label2id))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the model's labels {label_list}")
    enc = tokenizer([s.words for s in sentences], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    features, all_word_ids, cut = [], [], []
    for i, s in enumerate(sentences):
        word_ids = enc.word_ids(i)
        labels, prev = [], None
        for w in word_ids:
            labels.append(IGNORE if w is None or w == prev else label2id[s.labels[w]])
            prev = w
        last_word = max((w for w in word_ids if w is not None), default=-1)
        if len(word_ids) >= max_length and last_word < len(s.words) - 1:
            cut.append(i)
        features.append({**{k: torch.tensor(enc[k][i]) for k in keys}, "labels": torch.tensor(labels)})
        all_word_ids.append(word_ids)
    if cut:
        warnings.warn(f"{len(cut)} of {len(sentences)} sentences are longer than max_length={max_length} subwords "
                      f"and were cut (first: sentence {cut[0] + 1}, {len(sentences[cut[0]].words)} words); their cut "
                      "words are tagged 'O' (and scored so). Raise max_length to keep them.",
                      TruncationWarning, stacklevel=stacklevel)
    return Encoded(list(sentences), features, all_word_ids, len(cut), max_length)


# --------------------------------------------------------------------------- words back from tokens
def words_from_tokens(token_tags: list[str], word_ids: list[int | None], n_words: int) -> list[str]:
    """Word tags from token tags: each word takes its first subword's tag; words without tokens (cut) get ``O``."""
    tags, prev = ["O"] * n_words, None
    for tag, w in zip(token_tags, word_ids):
        if w is not None and w != prev:
            tags[w] = tag
        prev = w
    return tags


@torch.no_grad()
def predict_tags(model, encoded: Encoded, *, batch_size: int = 64, device="auto", amp: bool = False) -> list[list[str]]:
    """Word-level IOB2 tags for every sentence of ``encoded`` (argmax of the first subword's logits)."""
    device = get_device(device)
    model.to(device)
    id2label = model.config.id2label
    loader = make_loader(encoded, batch_size, sort_by_length=True)  # longest first, no shuffle
    order = list(loader.sampler)
    token_preds = []
    with eval_mode(model):
        for batch in loader:
            batch = _to_device({k: v for k, v in batch.items() if k != "labels"}, device)
            with _autocast(device, amp):
                logits = model(**batch).logits
            lengths = batch["attention_mask"].sum(1).tolist()
            token_preds += [row[:n] for row, n in zip(logits.argmax(-1).tolist(), lengths)]
    tags = [None] * len(encoded)
    for i, pred in zip(order, token_preds):
        tags[i] = words_from_tokens([id2label[p] for p in pred], encoded.word_ids[i], len(encoded.sentences[i].words))
    return tags


def evaluate_ner(model, encoded: Encoded, *, batch_size: int = 64, device="auto", amp: bool = False,
                 name: str | None = None) -> dict:
    r"""Entity-level scores on words (conlleval mode, as seqeval's default); prints the per-type report when ``name`` is given.

    Micro :math:`P = TP/(TP+FP)`, :math:`R = TP/(TP+FN)`, :math:`F_1 = 2PR/(P+R)`; macro averages per-type F1.
    """
    from .ner_scores import entity_report, entity_scores
    if len(encoded) == 0:
        raise ValueError("evaluate_ner got no sentences (an empty split): check the data file or the split's "
                         "name, e.g. len(data.test) before encoding")
    y_pred = predict_tags(model, encoded, batch_size=batch_size, device=device, amp=amp)
    y_true = [s.labels for s in encoded.sentences]
    scores = entity_scores(y_true, y_pred)
    report = entity_report(y_true, y_pred, digits=4)
    if name is not None:
        print(f"{name}: {len(y_true)} sentences, {encoded.n_truncated} cut at max_length={encoded.max_length}")
        print(report)
    return {**{k: scores[k] for k in ("precision", "recall", "f1")}, "macro_f1": scores["macro_f1"],
            "per_type": scores["per_type"], "n_sentences": len(y_true), "n_truncated": encoded.n_truncated,
            "report": report}


def _entity_counts(label_list: list[str]):
    """``counts(outputs, targets) -> (tp, n_pred, n_true)`` over the first-subword tokens of a batch, cached for
    the batch so that precision, recall and F1 share one pass."""
    from .ner_scores import get_entities
    cache = [None, None, None]  # outputs, targets (held, so their identity is unique), counts

    def counts(outputs, targets):
        if cache[0] is not outputs or cache[1] is not targets:
            pred, gold = outputs.argmax(-1).tolist(), targets.tolist()
            tp = n_pred = n_true = 0
            for p_row, t_row in zip(pred, gold):
                keep = [(label_list[p], label_list[t]) for p, t in zip(p_row, t_row) if t != IGNORE]
                p_ents = set(get_entities([p for p, _ in keep]))
                t_ents = set(get_entities([t for _, t in keep]))
                tp, n_pred, n_true = tp + len(p_ents & t_ents), n_pred + len(p_ents), n_true + len(t_ents)
            cache[:] = outputs, targets, (tp, n_pred, n_true)
        return cache[2]
    return counts


def entity_metrics(label_list: list[str]) -> list:
    r"""``fit`` metrics ``precision``, ``recall``, ``f1``: micro entity scores (conlleval mode) over the
    first-subword tokens, so the history holds the per-epoch table :math:`P, R, F_1` of the dev set.

    Each returns a pair summed over batches: :math:`(TP, n_{pred})`, :math:`(TP, n_{true})` and
    :math:`(2\,TP, n_{pred} + n_{true})`, whose ratios are the exact micro scores (entities never cross
    sentences). Cut words are not in the batch, so they do not count.
    """
    counts = _entity_counts(label_list)

    def precision(outputs, targets):
        tp, n_pred, _ = counts(outputs, targets)
        return torch.tensor(tp), torch.tensor(n_pred)

    def recall(outputs, targets):
        tp, _, n_true = counts(outputs, targets)
        return torch.tensor(tp), torch.tensor(n_true)

    def f1(outputs, targets):
        tp, n_pred, n_true = counts(outputs, targets)
        return torch.tensor(2 * tp), torch.tensor(n_pred + n_true)
    return [precision, recall, f1]


def entity_f1(label_list: list[str]):
    """The ``f1`` of :func:`entity_metrics` alone (history keys ``train_f1``, ``val_f1``)."""
    return entity_metrics(label_list)[2]


# --------------------------------------------------------------------------- the fine-tuning recipe
@dataclass
class NerRecipe(Recipe):
    """The NER fine-tuning defaults, each with why (measured: README, ``benchmarks/ner.py --vs trainer``).

    ``recipe.fit_args(tagger, train_set, epochs)`` gives model, loader, optimizer, schedule and ``grad_clip`` for
    ``fit(**args, val_loader=..., metrics=...)`` or ``fit_live_async`` with the same arguments.
    """
    lr: float = 5e-5                 # BERT fine-tuning's usual 2e-5 to 5e-5 (Trainer's default) for the encoder
    head_lr_mult: float = 10.0       # the fresh classifier starts from noise: 10x lr, +9 F1 pt at short budgets
    batch_size: int = 16             # more optimizer steps per epoch than 32 at the same compute
    warmup_ratio: float = 0.0        # measured: warmup + decay 0.01 changed F1 by < 1 pt (noise) at short budgets
    weight_decay: float = 0.0        # likewise no measurable effect over a few hundred steps (Trainer: 0 too)
    grad_clip: float | None = 1.0    # the fresh head's first gradients are large: clipping them is worth +10 F1 pt
    sort_by_length: bool = False     # length-grouped batches pad less but are alike: -2.7 F1 pt at short budgets
    sort_window: int = 50            # with sort_by_length: batches per length-sorted group (HF's 50)
    fused: bool = True               # AdamW in one kernel per step (Trainer's adamw_torch_fused): ~2.5x faster on CPU

    def __post_init__(self):
        super().__post_init__()
        check_number("head_lr_mult", self.head_lr_mult, positive=True)
        self.sort_window = check_int("sort_window", self.sort_window)

    def loader(self, data, *, batch_size, shuffle, sort_by_length, seed, pad_id):
        """Training batches grouped by length use ``sort_window`` batches per group."""
        if isinstance(data, FeatureDataset) and shuffle and sort_by_length:
            batches = LengthGroupedBatches(data.lengths, batch_size, mega=self.sort_window, seed=seed)
            return DataLoader(data, batch_sampler=batches, collate_fn=partial(collate, pad_id=pad_id))
        return super().loader(data, batch_size=batch_size, shuffle=shuffle, sort_by_length=sort_by_length,
                              seed=seed, pad_id=pad_id)

    def param_groups(self, model) -> list[dict]:
        """Encoder and head groups, each split into decayed weights and undecayed biases/norms."""
        head = getattr(model, "classifier", None) or getattr(model, "score", None)
        in_head = {id(p) for p in head.parameters()} if head is not None else set()
        decay, no_decay = split_decay_params(model)
        groups = []
        for is_head, lr in ((False, self.lr), (True, self.lr * self.head_lr_mult)):
            groups += [{"params": [p for p in decay if (id(p) in in_head) == is_head], "lr": lr},
                       {"params": [p for p in no_decay if (id(p) in in_head) == is_head], "lr": lr,
                        "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]


# --------------------------------------------------------------------------- the tagger
class NerTagger:
    """Model + tokenizer + label list: ``encode`` sentences, ``tag``/``predict`` raw text, ``save`` to a folder."""

    def __init__(self, model, tokenizer, label_list: list[str], max_length: int = 256):
        check_head_and_length(model.config, tokenizer, label_list, max_length, "subwords")
        self.model, self.tokenizer, self.label_list, self.max_length = model, tokenizer, list(label_list), max_length

    @classmethod
    def from_pretrained(cls, model_name_or_path, label_list: list[str] | None = None, max_length: int = 256):
        """Load tokenizer first (a folder without one fails before the weights are read), then the model."""
        tokenizer = load_tokenizer(model_name_or_path)
        model, label_list = load_model(model_name_or_path, label_list)
        return cls(model, tokenizer, label_list, max_length)

    def __repr__(self):
        n = sum(p.numel() for p in self.model.parameters())
        return (f"NerTagger({type(self.model).__name__}, {n / 1e6:.2f}M parameters, labels={self.label_list}, "
                f"max_length={self.max_length})")

    def encode(self, sentences: list[Sentence]) -> Encoded:
        return encode(sentences, self.tokenizer, self.label_list, self.max_length, stacklevel=3)

    def loader(self, data: Encoded | list[Sentence], batch_size: int = 32, **options) -> DataLoader:
        """:func:`make_loader` over encoded data (or sentences, encoded here) with this tokenizer's pad id."""
        encoded = data if isinstance(data, Encoded) else self.encode(data)
        return make_loader(encoded, batch_size, pad_id=self.tokenizer.pad_token_id or 0, **options)

    def tag(self, texts, *, device="auto") -> list[list[str]]:
        """Word tags for each text (a string split on whitespace, or a list of words). One string alone is one
        text (not a list of characters): ``tag("EU rejects it")`` returns that text's tags."""
        if isinstance(texts, str):
            return self.tag([texts], device=device)[0]
        texts = check_texts(texts, allow_words=True, allow_empty=True)
        sentences = [Sentence(t.split() if isinstance(t, str) else list(t), []) for t in texts]
        sentences = [Sentence(s.words, ["O"] * len(s.words)) for s in sentences]
        return predict_tags(self.model, self.encode(sentences), device=device)

    def predict(self, texts, *, device="auto") -> list[list[dict]]:
        """Entities per text: ``{'type', 'text', 'start', 'end'}`` with word indices (``end`` exclusive).
        One string alone is one text: ``predict("Angela Merkel visited Paris")`` returns its entities."""
        from .ner_scores import get_entities
        if isinstance(texts, str):
            return self.predict([texts], device=device)[0]
        texts = check_texts(texts, allow_words=True, allow_empty=True)
        out = []
        for text, tags in zip(texts, self.tag(texts, device=device)):
            words = text.split() if isinstance(text, str) else list(text)
            out.append([{"type": t, "text": " ".join(words[a:b + 1]), "start": a, "end": b + 1}
                        for t, a, b in get_entities(tags)])
        return out

    def save(self, folder) -> str:
        """Weights, config (with the label names) and tokenizer in one folder; reload with ``from_pretrained``."""
        check_save_folder(folder)
        os.makedirs(folder, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return os.fspath(folder)
