"""CoNLL-format named-entity data: read ``train.txt`` / ``valid.txt`` / ``test.txt`` into word-level sentences.

File format (CoNLL-2003): one token per line, whitespace-separated columns ``word POS chunk NER``, a blank
line between sentences, ``-DOCSTART-`` lines between documents. The NER tag is the last column unless
``label_column`` says otherwise. Tags are converted from IOB1 (an entity's first token is ``I-`` unless it
directly follows an entity of the same type) to IOB2 (every entity starts with ``B-``); IOB2 input passes
through unchanged, so the conversion is always safe.

    data = load_conll("data/conll2003_sample")
    data.train[0]      # Sentence(words=['The', 'Russian', ...], labels=['O', 'B-MISC', ...])
    data.label_list    # ['O', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG', 'B-PER', 'I-PER']

When ``data_dir`` has no CoNLL files, ``load_conll`` loads CoNLL-2003 through Hugging Face ``datasets``
(a Parquet copy on the Hub; no dataset script is ever run).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple

from ..utils import check_int
from ..env import require

__all__ = ["Sentence", "NerData", "iob1_to_iob2", "read_conll", "load_conll", "label_list_from",
           "HF_CONLL2003", "HF_CONLL2003_TAGS"]

# file names tried for each split, in order (the original distribution calls them eng.train/testa/testb)
SPLIT_FILES = {"train": ("train.txt", "eng.train"),
               "valid": ("valid.txt", "dev.txt", "eng.testa"),
               "test": ("test.txt", "eng.testb")}
HF_CONLL2003 = "lhoestq/conll2003"  # Parquet copy of CoNLL-2003 on the Hugging Face Hub (no loading script)
# tag ids used by the Hugging Face CoNLL-2003 copies (already IOB2)
HF_CONLL2003_TAGS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


class Sentence(NamedTuple):
    words: list[str]
    labels: list[str]


@dataclass
class NerData:
    """Word-level splits plus the label list (``O`` first, then ``B-``/``I-`` per entity type, sorted)."""
    train: list[Sentence]
    valid: list[Sentence]
    test: list[Sentence]
    label_list: list[str]
    source: str
    files: dict = field(default_factory=dict)

    def __repr__(self):
        return (f"NerData(train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)} sentences, "
                f"labels={self.label_list}, source={self.source!r})")


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """IOB1 → IOB2: an ``I-X`` that does not continue an ``X`` entity (after ``O`` or another type) becomes ``B-X``."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-"):
            prev = out[i - 1] if i else "O"
            if prev == "O" or prev[2:] != tag[2:]:
                tag = "B-" + tag[2:]
        out.append(tag)
    return out


def _check_tag(tag: str, where: str) -> None:
    if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
        raise ValueError(f"{where}: NER tag {tag!r} is not 'O', 'B-TYPE' or 'I-TYPE'; is label_column right?")


def read_conll(path, label_column: int = -1, known_labels: list[str] | None = None) -> list[Sentence]:
    """Sentences of one CoNLL file (``-DOCSTART-`` skipped, tags converted to IOB2).

    Every token line must have the same number of columns (≥ 2) as the file's first token line; a line that
    does not fails with the file name and line number, and so does a tag whose entity type is not in
    ``known_labels`` (the training labels, when reading dev/test).
    """
    known_types = None if known_labels is None else {t[2:] for t in known_labels if t != "O"}
    path = os.fspath(path)
    sentences, words, tags, n_cols = [], [], [], None

    def flush():
        if words:
            sentences.append(Sentence(list(words), iob1_to_iob2(tags)))
            words.clear()
            tags.clear()

    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = _decode(raw, path, lineno)
            cols = line.split()
            if not cols:
                flush()
                continue
            if cols[0] == "-DOCSTART-":
                flush()
                continue
            where = f"{path}, line {lineno}"
            if n_cols is None:
                n_cols = len(cols)
                if n_cols < 2:
                    raise ValueError(f"{where}: expected 'word ... tag' columns, got {line.strip()!r} (1 column)")
                if not -n_cols <= label_column < n_cols:
                    raise ValueError(f"{where}: label_column={label_column} but the file has {n_cols} columns")
            if len(cols) != n_cols:
                raise ValueError(f"{where}: malformed line {line.rstrip()!r}: {len(cols)} columns, but the file's "
                                 f"first token line has {n_cols} (word POS chunk NER); fix or remove this line")
            tag = cols[label_column]
            _check_tag(tag, where)
            if known_types is not None and tag != "O" and tag[2:] not in known_types:
                raise ValueError(f"{where}: label {tag!r} (word {cols[0]!r}): entity type {tag[2:]!r} never occurs "
                                 f"in the training split, whose labels are {known_labels}")
            words.append(cols[0])
            tags.append(cols[label_column])
    flush()
    return sentences


def _decode(raw: bytes, path: str, lineno: int) -> str:
    """One line as UTF-8 (a byte-order mark on line 1 is dropped), or an error naming file, line and byte."""
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}, line {lineno}: byte {raw[e.start]:#04x} at column {e.start + 1} is not UTF-8; "
                         "convert the file, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`") from None


def label_list_from(sentences: list[Sentence]) -> list[str]:
    """``O`` plus ``B-X``, ``I-X`` for every entity type X seen (sorted): IOB2 can produce both for any type."""
    types = sorted({tag[2:] for s in sentences for tag in s.labels if tag != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def _find(data_dir: str, split: str) -> str | None:
    for name in SPLIT_FILES[split]:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    return None


def _load_hf(name: str, revision: str | None = None) -> dict[str, list[Sentence]]:
    require("datasets")
    from datasets import load_dataset
    ds = load_dataset(name, revision=revision)  # Parquet data only: datasets >= 4 never runs loading scripts
    out = {}
    for split, hf_split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        feature = ds[hf_split].features["ner_tags"]
        names = getattr(getattr(feature, "feature", None), "names", None) or HF_CONLL2003_TAGS
        out[split] = [Sentence(list(r["tokens"]), iob1_to_iob2([names[t] for t in r["ner_tags"]]))
                      for r in ds[hf_split] if r["tokens"] and r["tokens"][0] != "-DOCSTART-"]
    return out


def _where(path: str) -> str:
    return "" if os.path.isabs(path) else f" (relative to the working directory {os.getcwd()!r})"


def load_conll(data_dir="data/conll2003", *, label_column: int = -1, max_train_sentences: int | None = None,
               download: bool = True, hf_name: str = HF_CONLL2003, hf_revision: str | None = None) -> NerData:
    """Train/valid/test sentences and the label list, from ``data_dir`` or else from the Hugging Face Hub.

    The label list comes from the whole training split; a valid/test label whose entity type never occurs in
    train is an error naming file and line. ``max_train_sentences`` then keeps the first N training sentences.
    """
    data_dir = os.fspath(data_dir)
    if max_train_sentences is not None:
        check_int("max_train_sentences", max_train_sentences, meaning=" or None")   # before any file is read
    files = {split: _find(data_dir, split) for split in SPLIT_FILES}
    if any(files.values()):
        missing = [f"{split} ({' or '.join(SPLIT_FILES[split])})" for split, p in files.items() if p is None]
        if missing:
            raise FileNotFoundError(f"{data_dir!r} has CoNLL files but lacks: {', '.join(missing)}")
        train = read_conll(files["train"], label_column)
        if not train:
            raise ValueError(f"the training file {files['train']!r} has no sentences (empty, or only -DOCSTART- "
                             "lines): put the training sentences there, one 'word ... tag' line per token")
        known = label_list_from(train)
        splits = {"train": train, "valid": read_conll(files["valid"], label_column, known),
                  "test": read_conll(files["test"], label_column, known)}
        for split in ("valid", "test"):
            if not splits[split]:
                raise ValueError(f"the {split} file {files[split]!r} has no sentences (empty, or only -DOCSTART- "
                                 "lines): it cannot be scored; put the sentences there")
        source = data_dir
    elif download:
        try:
            splits = _load_hf(hf_name, hf_revision)
        except Exception as e:  # offline, hub down, datasets missing: one message that says what to do
            raise FileNotFoundError(
                f"no CoNLL files (train.txt, valid.txt, test.txt) in {data_dir!r}{_where(data_dir)}, and loading "
                f"{hf_name!r} with "
                f"Hugging Face datasets failed ({type(e).__name__}: {e}). On a machine with internet run "
                f"`python -c \"import datasets; datasets.load_dataset('{hf_name}')\"` to fill the datasets cache, "
                f"or put the three CoNLL-2003 files into {data_dir!r}") from e
        source = f"hf:{hf_name}"
    else:
        raise FileNotFoundError(f"no CoNLL files (train.txt, valid.txt, test.txt) in {data_dir!r}{_where(data_dir)}")

    if not splits["train"]:
        raise ValueError(f"the training split from {source!r} has no sentences")
    label_list, train = label_list_from(splits["train"]), splits["train"]
    if max_train_sentences is not None:             # checked above, before any file was read
        train = train[:int(max_train_sentences)]
    return NerData(train, splits["valid"], splits["test"], label_list, source, files)
