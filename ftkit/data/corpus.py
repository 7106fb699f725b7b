r"""Text for language models: a file or folder (or a Hugging Face dataset when online) → character or byte-level
BPE tokens → a contiguous train/val split → ``(inputs, targets)`` batches of ``block_size`` windows for ``fit``.

A window of :math:`T+1` tokens :math:`t_i … t_{i+T}` gives the inputs :math:`t_i … t_{i+T-1}` and the targets
shifted by one, :math:`t_{i+1} … t_{i+T}`: every position learns to predict the next token.

* ``CharTokenizer``: one id per character (65 for the shipped Shakespeare). Every id is one character, so
  bits per token = bits per character.
* ``BPETokenizer``: byte-level BPE trained here with the ``tokenizers`` library (GPT-2's scheme): 256 byte
  symbols plus learned merges; any UTF-8 text encodes, nothing is unknown.

Training batches are random windows (nanoGPT's ``get_batch``); the validation loader covers the val split once in
non-overlapping windows, so every evaluation sees the same tokens.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ..utils import check_int, choose
from . import shipped
from ..env import require

__all__ = ["read_text", "CharTokenizer", "BPETokenizer", "TOKENIZERS", "make_tokenizer", "RandomWindows",
           "SequentialWindows", "Corpus", "load_corpus"]


# --------------------------------------------------------------------------- text
def _decode_utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        context = data[max(e.start - 20, 0):e.start + 20]
        raise ValueError(f"{where} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
                         f"(near {context!r}); convert the file, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`, "
                         "or read it with its encoding yourself and pass the string") from None


def read_text(source, *, hf_split: str = "train", hf_column: str = "text") -> str:
    """The text of a ``.txt`` file, of every ``*.txt`` in a folder (sorted, joined by a blank line), or of
    ``"hf:<dataset name>"`` (``datasets.load_dataset``: needs the network or its cache), or of
    ``"shipped:<name>"``, a text that comes with ftkit (``"shipped:text/shakespeare.txt"``, any working directory)."""
    source = os.fspath(source)
    if source.startswith("hf:"):
        return _read_hf(source[3:], hf_split, hf_column)
    path = shipped(source[len("shipped:"):]) if source.startswith("shipped:") else Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"the folder {source!r} holds no *.txt file; put plain-text files in it")
        text = "\n\n".join(_decode_utf8(f.read_bytes(), str(f)) for f in files)
    elif path.is_file():
        text = _decode_utf8(path.read_bytes(), source)
    else:
        raise FileNotFoundError(f"no text file or folder at {source!r} (working directory {os.getcwd()!r}); give a "
                                "path to a .txt file or a folder of them, e.g. 'shipped:text/shakespeare.txt', or "
                                "'hf:<dataset name>' to load a Hugging Face dataset online")
    if not text.strip():
        raise ValueError(f"{source!r} is empty (or only whitespace): a language model needs text to learn from")
    return text


def _read_hf(name: str, split: str, column: str) -> str:
    require("datasets")
    import datasets
    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, … : one message with the way out
        raise FileNotFoundError(f"could not load the Hugging Face dataset {name!r} (split {split!r}): {e}; on a "
                                "machine without internet save the text to a .txt file and pass its path") from e
    if column not in data.column_names:
        raise ValueError(f"the dataset {name!r} has no column {column!r}; choose one of: "
                         f"{', '.join(data.column_names)} (hf_column=...)")
    return "\n".join(data[column])


# --------------------------------------------------------------------------- tokenizers
class CharTokenizer:
    """One id per distinct character of the texts it was fitted on (sorted, so the ids are reproducible)."""

    name = "char"

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, *texts, vocab_size=None):
        """``vocab_size`` is ignored: the vocabulary is the set of characters."""
        return cls("".join(set().union(*map(set, texts))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = Counter(c for c in text if c not in self.stoi)
            shown = ", ".join(f"{c!r} ({n}×)" for c, n in unknown.most_common(10))
            raise ValueError(f"the text has {len(unknown)} character(s) outside this {self.vocab_size}-character "
                             f"vocabulary: {shown}; build the vocabulary on every text you will use "
                             "(make_tokenizer('char', pretrain_text, finetune_text)) or use tokenizer='bpe' "
                             "(byte-level: any text encodes)") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) trained locally with the ``tokenizers`` library."""

    name = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer

    @classmethod
    def fit(cls, *texts, vocab_size=None):
        require("tokenizers")
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        vocab_size = 1024 if vocab_size is None else check_int("vocab_size", vocab_size, 257,
                                                                " (byte-level BPE starts from 256 byte symbols)")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def __repr__(self):
        return f"BPETokenizer(vocab_size={self.vocab_size})"


TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer}


def make_tokenizer(tokenizer, *texts, vocab_size: int | None = None):
    """``make_tokenizer("char", text)`` / ``("bpe", text, vocab_size=1024)``; a tokenizer object passes through."""
    if not isinstance(tokenizer, str):
        if callable(getattr(tokenizer, "encode", None)) and callable(getattr(tokenizer, "decode", None)):
            return tokenizer
        raise TypeError(f"tokenizer must be a name ({', '.join(TOKENIZERS)}) or an object with encode/decode, "
                        f"got {type(tokenizer).__name__}")
    return choose("tokenizer", tokenizer, TOKENIZERS).fit(*texts, vocab_size=vocab_size)


# --------------------------------------------------------------------------- batches
class RandomWindows:
    """``n_batches`` batches of ``batch_size`` random windows per pass (an "epoch" = ``n_batches`` steps).

    Its own generator: seeded once, so passes continue the stream (new windows every epoch) and a run is
    reproducible whatever else draws random numbers."""

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, n_batches: int, seed: int = 0):
        self.block_size = check_int("block_size", block_size)
        self.batch_size = check_int("batch_size", batch_size)
        self.n_batches = check_int("n_batches", n_batches)
        _check_length(tokens, block_size, "the training split")
        self.windows = tokens.unfold(0, block_size + 1, 1)  # a view: row i = tokens[i : i + T + 1]
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        for _ in range(self.n_batches):
            ix = torch.randint(len(self.windows), (self.batch_size,), generator=self.generator)
            rows = self.windows[ix]
            yield rows[:, :-1], rows[:, 1:]


class SequentialWindows:
    """The whole split once, as non-overlapping windows (the tail shorter than a window is left out)."""

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int):
        self.block_size = check_int("block_size", block_size)
        self.batch_size = check_int("batch_size", batch_size)
        _check_length(tokens, block_size, "the validation split")
        n = (len(tokens) - 1) // block_size
        self.inputs = tokens[:n * block_size].view(n, block_size)
        self.targets = tokens[1:n * block_size + 1].view(n, block_size)

    def __len__(self):
        return math.ceil(len(self.inputs) / self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.inputs), self.batch_size):
            yield self.inputs[i:i + self.batch_size], self.targets[i:i + self.batch_size]


def _check_length(tokens, block_size, what):
    if len(tokens) < block_size + 1:
        raise ValueError(f"{what} has {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}: give more "
                         f"text, a smaller block_size, or a smaller val_fraction")


# --------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    """A tokenized text split contiguously: the first ``1 - val_fraction`` trains, the rest validates."""
    tokenizer: object
    train: torch.Tensor          # token ids (int64)
    val: torch.Tensor
    source: str
    n_chars: int                 # characters of the whole text
    val_bytes: int               # UTF-8 bytes of the val split's text (for bits per byte)
    val_chars: int

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def train_loader(self, block_size: int, batch_size: int, steps: int, seed: int = 0) -> RandomWindows:
        return RandomWindows(self.train, block_size, batch_size, steps, seed)

    def val_loader(self, block_size: int, batch_size: int) -> SequentialWindows:
        return SequentialWindows(self.val, block_size, batch_size)

    def bits_per(self, nats_per_token: float, unit: str = "char") -> float:
        """Convert a loss in nats per token to bits per character (``unit="char"``) or per UTF-8 byte."""
        units = {"char": self.val_chars, "byte": self.val_bytes}[unit]
        return nats_per_token * len(self.val) / units / math.log(2)

    def __repr__(self):
        return (f"Corpus({self.source!r}: {self.n_chars:,} characters → {len(self.train):,} train + "
                f"{len(self.val):,} val tokens, {self.tokenizer})")


def load_corpus(source, tokenizer="char", *, block_size: int, val_fraction: float = 0.1,
                vocab_size: int | None = None, text: str | None = None) -> Corpus:
    """Read ``source`` (see :func:`read_text`; or pass ``text=``), tokenize it with ``tokenizer`` (a name, fitted
    on this text, or a fitted tokenizer to share a vocabulary) and split it; both splits hold a full window."""
    block_size = check_int("block_size", block_size)
    if not 0 < float(val_fraction) < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = read_text(source) if text is None else text
    tokenizer = make_tokenizer(tokenizer, text, vocab_size=vocab_size)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    need = 2 * (block_size + 1)
    if len(ids) < need:
        raise ValueError(f"{os.fspath(source)!r} gives {len(ids)} tokens, fewer than the {need} that a train and a "
                         f"val split of one block_size + 1 = {block_size + 1} window each need; give more text or a "
                         "smaller block_size")
    n_val = max(int(len(ids) * val_fraction), block_size + 1)
    train, val = ids[:-n_val], ids[-n_val:]
    _check_length(train, block_size, "the training split")
    val_text = tokenizer.decode(val.tolist())
    return Corpus(tokenizer, train, val, os.fspath(source), len(text), len(val_text.encode("utf-8")), len(val_text))
