"""Hugging Face plumbing shared by every fine-tuning module (NER, sentence classification, language models).

Load a tokenizer/config from a local folder or a Hub id with clear offline errors, pad batches dynamically, group
sentences of similar length, and save a model folder. Loading never runs code from a model repository
(``trust_remote_code=False`` everywhere).

    tokenizer = load_tokenizer("bert-base-uncased")                 # or a folder saved with save_pretrained
    loader = make_loader(encoded, 32, shuffle=True, sort_by_length=True, pad_id=tokenizer.pad_token_id)
"""
from __future__ import annotations

import math
import os
from functools import partial

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core import IGNORE
from ..utils import check_int
from ..env import require

__all__ = ["IGNORE", "TOKENIZER_FILES", "TruncationWarning", "load_tokenizer", "load_config", "collate", "FeatureDataset", "LengthGroupedBatches",
           "make_loader", "check_label_order", "check_texts", "check_save_folder",
           "save_folder", "check_path", "hub_error"]

# files that hold a tokenizer's vocabulary (a folder with none of them has no usable tokenizer)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


class TruncationWarning(UserWarning):
    """Some sentences were longer than ``max_length`` subwords and were cut."""


# --------------------------------------------------------------------------- loading
def _looks_local(path: str) -> bool:
    """``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``, or ``a/b`` whose ``a`` is a folder here (``models/bert``
    next to a ``models/`` folder is a path, not the Hub id of user ``models``)."""
    if path.startswith((".", "/", "~")) or path.count("/") > 1 or os.sep != "/" and os.sep in path:
        return True
    return "/" in path and os.path.isdir(path.split("/", 1)[0])


def check_path(path: str) -> None:
    """A string that looks like a path must be an existing folder; a folder must not be a file."""
    if os.path.isdir(path):
        return
    if os.path.isfile(path):
        raise NotADirectoryError(f"{path!r} is a file; a model is a folder written by save_pretrained (config.json, "
                                 "weights, tokenizer files): pass that folder")
    if _looks_local(path):
        parent = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
        near = sorted(os.listdir(parent))[:8] if os.path.isdir(parent) else []
        raise FileNotFoundError(f"no model folder at {os.path.abspath(path)!r}"
                                + (f" (its parent holds: {', '.join(near)})" if near else "")
                                + "; build a small one offline with ftkit.nlp.tiny.build_tiny_bert(out_dir) or give a "
                                  "Hub id such as 'bert-base-cased'")


def _check_config(path: str) -> None:
    """A local model folder needs ``config.json`` (transformers would say only "Unrecognized model")."""
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        has = sorted(os.listdir(path))
        hint = (" It holds a LoRA adapter: load it with the class that saved it (SentenceClassifier.from_pretrained)"
                if "adapter_config.json" in has else "")
        raise FileNotFoundError(f"model folder {path!r} has no config.json (it holds: "
                                f"{', '.join(has[:10]) or 'nothing'}); a folder written by "
                                f"model.save_pretrained(folder) has one.{hint}")


def hub_error(path: str, e: Exception) -> OSError:
    return OSError(f"could not load {path!r} ({type(e).__name__}: {e}). It is not a folder here "
                   f"({os.path.abspath(path)!r} does not exist), so it was taken for a Hub id. If it is a Hub id and "
                   f"there is no internet, save it on a machine that has it: `python -c \"from transformers import "
                   f"AutoModel, AutoTokenizer as T; "
                   f"AutoModel.from_pretrained('{path}').save_pretrained('models/{path}'); "
                   f"T.from_pretrained('{path}').save_pretrained('models/{path}')\"` and pass that folder")


def from_pretrained(auto_class, path: str, **kwargs):
    """``(model, loading info)``: ``auto_class.from_pretrained(path, output_loading_info=True, **kwargs)`` with
    transformers' load report silenced (it is a table on stderr, a pink error block in a notebook, for the expected
    case of a fresh head) and one line on stdout instead, naming the layers that start random."""
    require("transformers")
    from transformers.utils import logging as hf_logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = auto_class.from_pretrained(path, output_loading_info=True, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        print(f"{type(model).__name__} from {path}: new layers, random until trained: {', '.join(missing)}")
    return model, info


def load_tokenizer(model_name_or_path: str):
    """A fast (Rust) tokenizer from a folder or Hub id: label alignment needs ``word_ids()``, which only they have."""
    require("transformers")
    from transformers import AutoTokenizer
    path = os.fspath(model_name_or_path)
    check_path(path)
    if os.path.isdir(path) and not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"model folder {path!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                                "save it next to the weights with tokenizer.save_pretrained(folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except OSError as e:
        raise hub_error(path, e) from e
    except ValueError as e:  # "Unrecognized model": the folder lacks config.json, and its tokenizer names no class
        if "Unrecognized" in str(e):
            _check_config(path)
        raise
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"the tokenizer of {path!r} is not a fast tokenizer; label alignment needs word_ids(), "
                         "so save a tokenizer.json with it (tokenizers library)")
    return tokenizer


def load_config(model_name_or_path: str):
    """The model's ``config.json`` (folder or Hub id), with the offline error that says how to fetch it."""
    require("transformers")
    from transformers import AutoConfig
    path = os.fspath(model_name_or_path)
    check_path(path)
    _check_config(path)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except OSError as e:
        raise hub_error(path, e) from e


def check_label_order(config, label_list) -> None:
    """A head that names its outputs (``config.id2label``, not the default ``LABEL_i``) must name them in the
    order of ``label_list``: output ``i`` is ``label_list[i]`` everywhere in ftkit, so another order would
    swap predictions without a word."""
    names = [config.id2label.get(i, config.id2label.get(str(i))) for i in range(config.num_labels)]
    if names == [f"LABEL_{i}" for i in range(len(names))] or names == list(label_list):
        return
    raise ValueError(f"the model's head names its outputs {names} (output i is the i-th name), but label_list is "
                     f"{list(label_list)}: predictions would carry the wrong names. Pass label_list={names} (and "
                     "encode the data with it), or start from the base model for a new label order")


def check_head_and_length(config, tokenizer, label_list, max_length: int, unit: str = "tokens") -> None:
    """Before any encoding: the head has one output per label, in ``label_list``'s order, and ``max_length`` fits
    the special tokens and the model's positions."""
    if config.num_labels != len(label_list):
        raise ValueError(f"the model has {config.num_labels} output labels but label_list has "
                         f"{len(label_list)}: {label_list}")
    check_label_order(config, label_list)
    check_int("max_length", max_length, tokenizer.num_special_tokens_to_add() + 1,
              f" ({unit} per sentence, [CLS] and [SEP] included)")
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} is more than the {limit} positions the model has; "
                         f"use max_length <= {limit}")


def check_texts(texts, *, allow_words: bool = False, allow_empty: bool = False) -> list:
    """``texts`` as a list of strings (or, with ``allow_words``, lists of words); None, numbers and (unless
    ``allow_empty``) blank strings fail naming the first bad one."""
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        words = allow_words and isinstance(t, (list, tuple)) and all(isinstance(w, str) for w in t)
        if not (isinstance(t, str) or words):
            kind = "a string or a list of words" if allow_words else "a string"
            raise TypeError(f"text {i + 1} of {len(texts)} is {t!r} ({type(t).__name__}), not {kind}; drop or fill "
                            "the missing texts first")
        if not allow_empty and not (t.strip() if isinstance(t, str) else t):
            raise ValueError(f"text {i + 1} of {len(texts)} is empty: there is nothing to classify (a prediction "
                             "would only reflect the model's bias); drop empty texts first")
    return texts


# --------------------------------------------------------------------------- batches
def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad each key to the longest sequence in the batch (labels with -100, mask with 0).

    0-d entries (one label per sentence) are stacked, not padded.
    """
    pad = {"input_ids": pad_id, "labels": IGNORE}
    return {k: torch.stack([f[k] for f in features]) if features[0][k].dim() == 0 else
            pad_sequence([f[k] for f in features], batch_first=True, padding_value=pad.get(k, 0))
            for k in features[0]}


class FeatureDataset(Dataset):
    """Base of the encoded datasets (NER, classification): ``features[i]`` is one item's dict of 1-D tensors."""

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i]

    @property
    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]


class LengthGroupedBatches(Sampler):
    """Batches of similar length in random order (a ``batch_sampler``; a new order each epoch, fixed by ``seed``).

    Like HF's ``LengthGroupedSampler`` it shuffles, then sorts by length inside mega-batches of up to ``mega``
    batches (at least 4 mega-batches), so padding stays small; unlike it, it then shuffles the *batches*, so an
    epoch does not run from long to short sentences within each mega-batch.
    """

    def __init__(self, lengths: list[int], batch_size: int, *, mega: int = 50, seed: int = 0):
        self.lengths, self.batch_size, self.mega = list(lengths), int(batch_size), int(mega)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        perm = torch.randperm(n, generator=self.generator).tolist()
        size = min(self.mega, max(n // (4 * bs), 1)) * bs  # a multiple of bs: only the last batch can be short
        batches = []
        for i in range(0, n, size):
            group = sorted(perm[i:i + size], key=self.lengths.__getitem__, reverse=True)
            batches += [group[j:j + bs] for j in range(0, len(group), bs)]
        yield from (batches[k] for k in torch.randperm(len(batches), generator=self.generator).tolist())


def make_loader(encoded, batch_size: int = 32, *, shuffle: bool = False, sort_by_length: bool = False,
                seed: int = 0, pad_id: int = 0) -> DataLoader:
    """Batches of padded dicts from a dataset of feature dicts that has ``lengths`` (tokens per item).

    ``sort_by_length``: similar lengths share a batch (less padding, faster). With ``shuffle`` the grouping is
    :class:`LengthGroupedBatches` (shuffle, sort inside mega-batches of 50 batches, then shuffle the batches: HF's
    ``LengthGroupedSampler`` runs long → short inside each mega-batch, which cost F1 in the NER measurements);
    without, items go longest first. ``seed`` fixes the order of every epoch.
    """
    batch_size = check_int("batch_size", batch_size, meaning=" (sentences per batch)")
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    lengths = encoded.lengths
    sampler = None
    if sort_by_length and shuffle:
        return DataLoader(encoded, batch_sampler=LengthGroupedBatches(lengths, batch_size, seed=seed),
                          collate_fn=partial(collate, pad_id=pad_id))
    elif sort_by_length:
        sampler = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    return DataLoader(encoded, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=generator, collate_fn=partial(collate, pad_id=pad_id))


# --------------------------------------------------------------------------- saving
def check_save_folder(folder) -> str:
    """``folder`` may be created (or exists as a folder): a file there, or a file in its path, fails here,
    before any weight is written."""
    folder = os.fspath(folder)
    path = os.path.abspath(folder)
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    if path and not os.path.isdir(path):
        raise FileExistsError(f"cannot save to {folder!r}: {path!r} is a file, and a saved model is a folder; "
                              "pass a folder path (e.g. 'out/model') or move the file")
    return folder


def save_folder(folder, model, tokenizer) -> str:
    """Weights + config (label names included) + tokenizer in one folder that ``from_pretrained`` reloads.

    A peft model writes its adapter (and its ``modules_to_save``) here instead of the full weights.
    """
    check_save_folder(folder)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return os.fspath(folder)
