"""A tiny BERT built offline (random weights + a WordPiece vocabulary from the shipped CoNLL sample): the model
the tests, benchmarks and offline notebook runs use where no pretrained checkpoint can be downloaded."""
from __future__ import annotations

import os

import torch

from ..data import shipped
from ..data.conll import Sentence, load_conll
from ..env import require

__all__ = ["wordpiece_vocab", "build_tiny_bert"]


def wordpiece_vocab(sentences: list[Sentence], size: int = 1000) -> dict[str, int]:
    """A cased WordPiece vocabulary: special tokens, every printable ASCII and seen character (alone and as
    ``##c``), then the most frequent BERT pre-tokens (ties alphabetical) up to ``size``. Unseen words fall
    back to known pieces and characters rather than [UNK].

    Deterministic by construction: the ``tokenizers`` trainers break frequency ties in hash order, which
    changes the vocabulary (and every result after it) from one Python process to the next.
    """
    import string
    from collections import Counter

    require("tokenizers")
    from tokenizers.pre_tokenizers import BertPreTokenizer
    split = BertPreTokenizer().pre_tokenize_str  # the same word splitting the tokenizer will apply
    counts = Counter(piece for s in sentences for w in s.words for piece, _ in split(w))
    chars = sorted({c for w in counts for c in w} | set(string.ascii_letters + string.digits + string.punctuation))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    tokens += words[:max(size - len(tokens), 0)]
    return {t: i for i, t in enumerate(tokens)}


def build_tiny_bert(out_dir, data_dir=None, *, tokenizer_vocab_size: int = 1000,
                    hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 2,
                    intermediate_size: int = 128, max_position_embeddings: int = 512, seed: int = 0,
                    **config_kwargs) -> str:
    """Write a randomly initialised BERT (config + safetensors) and a cased WordPiece tokenizer whose vocabulary
    comes from the training split of ``data_dir`` (:func:`wordpiece_vocab`) to ``out_dir``, offline.

    ``config_kwargs`` go to ``BertConfig`` (e.g. bert-base sizes with ``vocab_size=28996`` to time it).
    """
    require("transformers")
    from transformers import BertConfig, BertModel, BertTokenizer

    data = load_conll(data_dir if data_dir is not None else shipped("conll2003_sample"), download=False)
    tokenizer = BertTokenizer(vocab=wordpiece_vocab(data.train, tokenizer_vocab_size), do_lower_case=False,
                              strip_accents=False, model_max_length=max_position_embeddings)
    vocab_size = config_kwargs.pop("vocab_size", len(tokenizer))
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
                        **config_kwargs)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        BertModel(config, add_pooling_layer=False).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return os.fspath(out_dir)
