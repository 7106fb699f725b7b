"""Sentence-classification data: ``train`` / ``dev`` / ``test`` files (TSV, CSV or JSONL) or a Hugging Face dataset.

Files (GLUE style): ``train.tsv`` with a header ``sentence<TAB>label``; ``.csv`` and ``.jsonl`` (one JSON object a
line) work the same. Sentence pairs use two text columns (``sentence1``, ``sentence2``). Labels may be ints or
strings; the label list comes from train (numeric order for ints, else alphabetical) and every dev/test label must
be in it.

    data = load_text("data/sst2")                       # or load_text(dataset="glue/sst2") when online
    data.train.texts[0], data.label_list[data.train.labels[0]]

Splits: without a dev file, ``val_fraction`` of train (fixed ``seed``) becomes dev. Without a test file the dev
file becomes the test set and dev is split from train (what GLUE users do: its test labels are hidden).
"""
from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass, field

from ..utils import check_int, check_number
from ..env import require

__all__ = ["TextSplit", "TextData", "read_text_file", "load_text", "HF_ALIASES"]

EXTENSIONS = (".tsv", ".csv", ".jsonl")
SPLIT_NAMES = {"train": ("train",), "valid": ("dev", "valid", "validation"), "test": ("test",)}
TEXT_COLUMNS = ("sentence", "text", "review", "content")  # tried in order when text_column is None
PAIR_COLUMNS = (("sentence1", "sentence2"), ("question", "sentence"), ("premise", "hypothesis"))
# Hub names for the datasets the articles use (Parquet copies: no dataset script ever runs)
HF_ALIASES = {"glue/sst2": ("nyu-mll/glue", "sst2"), "sst2": ("nyu-mll/glue", "sst2"),
              "imdb": ("stanfordnlp/imdb", None)}


@dataclass
class TextSplit:
    """Parallel lists: ``texts[i]`` (and ``pairs[i]`` for sentence pairs) has label index ``labels[i]``.

    ``label_list`` names the indices (``label_list[labels[i]]``; :func:`load_text` fills it), so a classifier
    whose labels come in another order maps them by name instead of by position."""
    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None
    label_list: list[str] | None = None

    def __len__(self):
        return len(self.texts)

    def subset(self, indices) -> TextSplit:
        indices = list(indices)
        return TextSplit([self.texts[i] for i in indices], [self.labels[i] for i in indices],
                         None if self.pairs is None else [self.pairs[i] for i in indices], self.label_list)


@dataclass
class TextData:
    train: TextSplit
    valid: TextSplit
    test: TextSplit
    label_list: list[str]
    source: str
    notes: list[str] = field(default_factory=list)  # how dev/test were made, subsampling

    def __repr__(self):
        return (f"TextData(train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)} sentences"
                f"{', pairs' if self.train.pairs is not None else ''}, labels={self.label_list}, "
                f"source={self.source!r})")


# --------------------------------------------------------------------------- files
def _records(path: str):
    """``(line number, dict)`` for every row of a TSV/CSV (header first) or JSONL file."""
    with open(path, encoding="utf-8", newline="") as f:
        if path.endswith(".jsonl"):
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}, line {n}: not a JSON object ({e})") from None
            return
        tsv = path.endswith(".tsv")  # GLUE TSVs are unquoted: a quote is just a character
        reader = csv.DictReader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        for row in reader:
            yield reader.line_num, row


def _pick_columns(columns, text_column, path) -> tuple[str, str | None]:
    if text_column is not None:
        names = (text_column,) if isinstance(text_column, str) else tuple(text_column)
        if not 1 <= len(names) <= 2:
            raise ValueError(f"text_column must be one column name or a pair of them, got {text_column!r}")
        missing = [c for c in names if c not in columns]
        if missing:
            raise ValueError(f"{path} has no text column {missing[0]!r}; its columns are: {', '.join(columns)} "
                             "(pass text_column=...)")
        return names[0], names[1] if len(names) == 2 else None
    for pair in PAIR_COLUMNS:
        if all(c in columns for c in pair):
            return pair
    for name in TEXT_COLUMNS:
        if name in columns:
            return name, None
    raise ValueError(f"{path} has none of the text columns {', '.join(TEXT_COLUMNS)}; its columns are: "
                     f"{', '.join(columns)} (pass text_column=... or text_column=(first, second) for pairs)")


def read_text_file(path, text_column=None, label_column: str = "label"):
    """``(texts, pairs or None, raw labels, line numbers)`` of one file; empty sentences and rows without a
    label are errors naming the line."""
    path = os.fspath(path)
    texts, pairs, labels, lines = [], [], [], []
    columns = first, second = None, None
    for n, row in _records(path):
        if columns == (None, None):
            found = list(row)
            columns = first, second = _pick_columns(found, text_column, path)
            if label_column not in found:
                raise ValueError(f"{path} has no label column {label_column!r}; its columns are: {', '.join(found)}"
                                 " (pass label_column=...; an unlabeled test file cannot be scored: leave it out "
                                 "and the dev file becomes the test set)")
        for col in (first, second):
            if col is not None and not str(row.get(col) or "").strip():
                raise ValueError(f"{path}, line {n}: empty sentence in column {col!r}; remove the row or fill it")
        if row.get(label_column) in (None, ""):
            raise ValueError(f"{path}, line {n}: no label in column {label_column!r}")
        texts.append(str(row[first]))
        pairs.append(str(row[second]) if second else None)
        labels.append(row[label_column])
        lines.append(n)
    if not texts:
        raise ValueError(f"{path} has no rows")
    return texts, (pairs if second else None), labels, lines


def _find(data_dir: str, split: str) -> str | None:
    for name in SPLIT_NAMES[split]:
        for ext in EXTENSIONS:
            path = os.path.join(data_dir, name + ext)
            if os.path.isfile(path):
                return path
    return None


def _label_list(raw_labels) -> list[str]:
    names = sorted({str(y) for y in raw_labels})
    try:
        return sorted(names, key=int)  # 0, 1, …, 10 in numeric order
    except ValueError:
        return names


def _to_indices(raw_labels, label_list, where, lines=None) -> list[int]:
    index = {name: i for i, name in enumerate(label_list)}
    out = []
    for k, y in enumerate(raw_labels):
        if str(y) not in index:
            at = f", line {lines[k]}" if lines else f", row {k}"
            raise ValueError(f"{where}{at}: label {y!r} never occurs in train; train's labels are {label_list}")
        out.append(index[str(y)])
    return out


# --------------------------------------------------------------------------- Hugging Face datasets
def _load_hf(dataset: str, text_column, label_column):
    require("datasets")
    from datasets import load_dataset
    name, config = HF_ALIASES.get(dataset, (dataset.split(":")[0], dataset.split(":")[1] if ":" in dataset else None))
    ds = load_dataset(name, config)
    feature = ds["train"].features.get(label_column)
    if feature is None:
        raise ValueError(f"{dataset!r} has no label column {label_column!r}; its columns are: "
                         f"{', '.join(ds['train'].column_names)}")
    names = getattr(feature, "names", None)
    first, second = _pick_columns(ds["train"].column_names, text_column, dataset)
    splits = {}
    for split, hf_split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        if hf_split not in ds:
            continue
        labels = list(ds[hf_split][label_column])
        if all(y == -1 for y in labels):  # GLUE hides its test labels as -1
            continue
        splits[split] = (list(ds[hf_split][first]), list(ds[hf_split][second]) if second else None,
                         [names[y] if names else y for y in labels], None)
    return splits, f"hf:{name}" + (f"/{config}" if config else "")


# --------------------------------------------------------------------------- load
def _where(path) -> str:
    return "" if path is None or os.path.isabs(path) else f" (relative to the working directory {os.getcwd()!r})"


def load_text(data_dir=None, dataset: str | None = None, *, text_column=None, label_column: str = "label",
              max_train_sentences: int | None = None, val_fraction: float = 0.1, seed: int = 0,
              download: bool = True) -> TextData:
    """Train/dev/test sentences with label indices, from ``data_dir`` files or else the HF ``dataset``.

    ``text_column``: a column name, a pair of names, or ``None`` (``sentence``, ``text``, … or the pairs
    ``sentence1``/``sentence2``, … whichever the file has). ``max_train_sentences`` keeps a seeded random subset
    of train after the dev split was taken.
    """
    check_int("seed", seed, 0)
    if not 0 < check_number("val_fraction", val_fraction) < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    files = {split: _find(os.fspath(data_dir), split) for split in SPLIT_NAMES} if data_dir is not None else {}
    if files.get("train"):
        raw = {split: read_text_file(p, text_column, label_column) for split, p in files.items() if p}
        source = os.fspath(data_dir)
    elif data_dir is not None and any(files.values()):
        raise FileNotFoundError(f"{os.fspath(data_dir)!r} has dev/test files but no train file "
                                f"(train{'/train'.join(EXTENSIONS)})")
    elif dataset is not None and download:
        try:
            raw, source = _load_hf(dataset, text_column, label_column)
        except ValueError:
            raise
        except Exception as e:  # offline, hub down: one message that says what to do
            raise FileNotFoundError(
                f"no train.tsv/.csv/.jsonl in {data_dir!r}{_where(data_dir)}, and loading {dataset!r} with Hugging "
                f"Face datasets failed "
                f"({type(e).__name__}: {e}). On a machine with internet run `python -c \"import datasets; "
                f"datasets.load_dataset(...)\"` for it to fill the cache, or write train/dev/test files") from e
    else:
        where = f"in {os.fspath(data_dir)!r}{_where(data_dir)}" if data_dir is not None else "(no data_dir given)"
        raise FileNotFoundError(f"no train file {where}: write train.tsv (header sentence<TAB>label), train.csv "
                                "or train.jsonl there, or pass dataset='glue/sst2' (needs internet)")

    label_list = _label_list(raw["train"][2])
    split = {}
    for name, (texts, pairs, labels, lines) in raw.items():
        where = files.get(name) or f"{source} {name}"
        split[name] = TextSplit(texts, _to_indices(labels, label_list, where, lines), pairs, label_list)
    notes = []
    rng = random.Random(seed)
    if "test" not in split and "valid" in split:
        split["test"] = split.pop("valid")
        notes.append("test = the dev split (no labelled test split)")
    for name in ("test", "valid"):
        if name not in split:
            order = list(range(len(split["train"])))
            rng.shuffle(order)
            k = max(1, round(val_fraction * len(order)))
            split[name] = split["train"].subset(sorted(order[:k]))
            split["train"] = split["train"].subset(sorted(order[k:]))
            notes.append(f"{name} = {k} sentences drawn from train (seed {seed})")
    if max_train_sentences is not None:
        check_int("max_train_sentences", max_train_sentences, meaning=" or None")
        if max_train_sentences < len(split["train"]):
            keep = sorted(rng.sample(range(len(split["train"])), int(max_train_sentences)))
            split["train"] = split["train"].subset(keep)
            notes.append(f"train = {max_train_sentences} sentences drawn at random (seed {seed})")
    return TextData(split["train"], split["valid"], split["test"], label_list, source, notes)
