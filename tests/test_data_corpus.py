"""ftkit.data.corpus: text → char/BPE tokens → contiguous split → windows, and one clear error per bad input."""
import math
import sys
import types

import pytest
import torch

from ftkit.data.corpus import (BPETokenizer, RandomWindows, SequentialWindows, load_corpus,
                               make_tokenizer, read_text)
from conftest import DATA

SHAKESPEARE = DATA / "text" / "shakespeare.txt"
MILTON = DATA / "text" / "milton.txt"


def test_char_tokenizer_round_trip_and_sorted_ids():
    tok = make_tokenizer("char", "hello", "world")
    assert tok.chars == sorted("helowrd") and tok.vocab_size == 7
    assert tok.encode("hold") == [tok.chars.index(c) for c in "hold"]
    assert tok.decode(tok.encode("lowerheld")) == "lowerheld"


def test_char_vocabulary_of_one_author_names_the_other_authors_new_characters():
    tok = make_tokenizer("char", read_text(SHAKESPEARE))
    with pytest.raises(ValueError, match=r"outside this \d+-character vocabulary: 'Z' \(\d+×\).*"
                                         r"make_tokenizer\('char', pretrain_text, finetune_text\).*tokenizer='bpe'"):
        tok.encode(read_text(MILTON))
    shared = make_tokenizer("char", read_text(SHAKESPEARE), read_text(MILTON))
    assert shared.vocab_size == tok.vocab_size + 1 and shared.decode(shared.encode("ZEAL")) == "ZEAL"


def test_bpe_is_trained_locally_round_trips_any_utf8_and_compresses():
    text = read_text(SHAKESPEARE)[:30_000]
    tok = make_tokenizer("bpe", text, vocab_size=400)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 400
    unseen = "Zoë’s naïve café — 東京 ✓\nnew line"
    assert tok.decode(tok.encode(unseen)) == unseen       # byte level: nothing is unknown
    sample = read_text(SHAKESPEARE)[50_000:60_000]
    assert len(tok.encode(sample)) < 0.6 * len(sample)    # merges learned: well under one token per character
    with pytest.raises(ValueError, match="vocab_size must be a whole number >= 257"):
        make_tokenizer("bpe", text, vocab_size=100)


def test_unknown_tokenizer_lists_the_choices():
    with pytest.raises(ValueError, match="unknown tokenizer 'word'; choose one of: bpe, char"):
        load_corpus(SHAKESPEARE, "word", block_size=8)


def test_corpus_split_is_contiguous_and_bits_convert_from_nats():
    c = load_corpus(SHAKESPEARE, "char", block_size=64, val_fraction=0.1)
    ids = torch.tensor(c.tokenizer.encode(read_text(SHAKESPEARE)))
    assert torch.equal(torch.cat([c.train, c.val]), ids)
    assert len(c.val) == int(len(ids) * 0.1)
    assert c.tokenizer.decode(c.val[:40].tolist()) == read_text(SHAKESPEARE)[len(c.train):len(c.train) + 40]
    assert c.bits_per(math.log(2)) == pytest.approx(1.0)   # char tokens: bits per char = nats / ln 2
    bpe = load_corpus(SHAKESPEARE, "bpe", block_size=64, vocab_size=512, text=read_text(SHAKESPEARE)[:40_000])
    per_token = bpe.val_chars / len(bpe.val)
    assert per_token > 1.5 and bpe.bits_per(1.0) == pytest.approx(1 / per_token / math.log(2))


def test_random_windows_are_shifted_slices_reproducible_by_seed():
    tokens = torch.arange(1000)
    loader = RandomWindows(tokens, block_size=16, batch_size=4, n_batches=3, seed=7)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    for x, y in batches:
        assert x.shape == y.shape == (4, 16)
        assert torch.equal(y, x + 1)                       # targets are the inputs shifted by one token
        assert torch.equal(x, x[:, :1] + torch.arange(16))  # each row a contiguous slice
        assert int(y.max()) <= 999
    again = list(RandomWindows(tokens, 16, 4, 3, seed=7))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert not torch.equal(next(iter(loader))[0], batches[0][0])  # a second pass draws new windows


def test_sequential_windows_cover_the_split_once():
    tokens = torch.arange(103)
    loader = SequentialWindows(tokens, block_size=10, batch_size=4)
    xs, ys = zip(*loader)
    assert len(loader) == 3 and [len(x) for x in xs] == [4, 4, 2]
    assert torch.equal(torch.cat(xs).flatten(), tokens[:100]) and torch.equal(torch.cat(ys).flatten(), tokens[1:101])


def test_folder_reads_every_txt_sorted(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "notes.md").write_text("skipped")
    assert read_text(tmp_path) == "first\n\nsecond"


def _file(name, data: bytes):
    def make(folder):
        (folder / name).write_bytes(data)
        return folder / name
    return make


@pytest.mark.parametrize("make, error, message", [
    (lambda p: p / "missing.txt", FileNotFoundError, r"no text file or folder at .*missing\.txt.*give a path"),
    (_file("e.txt", b""), ValueError, "is empty"),
    (_file("w.txt", b" \n\t\n"), ValueError, "is empty"),
    (_file("l.txt", "caf\xe9 au lait".encode("latin-1")), ValueError,
     r"is not UTF-8 text: byte 0xe9 at offset 3.*iconv -f latin1 -t utf-8"),
    (lambda p: p.joinpath("d").mkdir() or p / "d", FileNotFoundError, r"holds no \*\.txt file"),
    (_file("s.txt", b"to be or not"), ValueError, r"gives 12 tokens, fewer than the 34 .* block_size \+ 1 = 17"),
])
def test_bad_text_gets_one_clear_error(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        load_corpus(make(tmp_path), "char", block_size=16)


def test_hf_dataset_source_joins_the_column(monkeypatch):
    class Fake(dict):
        column_names = ["text"]
    fake = types.SimpleNamespace(load_dataset=lambda name, split: Fake(text=[f"{name}:{split}", "line two"]))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert read_text("hf:some/poems") == "some/poems:train\nline two"
    with pytest.raises(ValueError, match="has no column 'body'; choose one of: text"):
        read_text("hf:some/poems", hf_column="body")
