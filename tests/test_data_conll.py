"""ftkit.data.conll: CoNLL reading, IOB1 → IOB2, label checks, the Hugging Face branch and its errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from ftkit.data import conll, shipped
from ftkit.data.conll import iob1_to_iob2, label_list_from, load_conll, read_conll, Sentence

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = shipped("conll2003_sample")


def write(path, text):
    path.write_text(text)
    return path


def make_dir(tmp_path, train, valid=None, test=None, valid_name="valid.txt"):
    write(tmp_path / "train.txt", train)
    write(tmp_path / valid_name, valid if valid is not None else train)
    write(tmp_path / "test.txt", test if test is not None else train)
    return tmp_path


TRAIN = """-DOCSTART- -X- -X- O

Match NN I-NP O
: : O O
Chelsea NNP I-NP I-ORG
Arsenal NNP I-NP B-ORG
2-1 CD I-NP O

Hong NNP I-NP I-LOC
Kong NNP I-NP I-LOC
. . O O
"""


@pytest.mark.parametrize("iob1, iob2", [
    (["I-PER", "I-PER", "O", "I-LOC"], ["B-PER", "I-PER", "O", "B-LOC"]),
    (["I-ORG", "B-ORG", "I-ORG"], ["B-ORG", "B-ORG", "I-ORG"]),            # B- splits two adjacent ORGs
    (["I-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"]),            # a type change starts an entity
    (["B-MISC", "I-MISC", "O", "B-PER"], ["B-MISC", "I-MISC", "O", "B-PER"]),  # IOB2 passes unchanged
    ([], []),
])
def test_iob1_to_iob2(iob1, iob2):
    assert iob1_to_iob2(iob1) == iob2


def test_read_conll_skips_docstart_and_converts(tmp_path):
    sentences = read_conll(write(tmp_path / "train.txt", TRAIN))
    assert sentences == [Sentence(["Match", ":", "Chelsea", "Arsenal", "2-1"], ["O", "O", "B-ORG", "B-ORG", "O"]),
                         Sentence(["Hong", "Kong", "."], ["B-LOC", "I-LOC", "O"])]


def test_label_column_is_configurable(tmp_path):
    text = "Paris I-LOC NNP\nis O VBZ\n\nBerlin I-LOC NNP\n"
    assert read_conll(write(tmp_path / "a.txt", text), label_column=1) == [
        Sentence(["Paris", "is"], ["B-LOC", "O"]), Sentence(["Berlin"], ["B-LOC"])]
    with pytest.raises(ValueError, match=r"a\.txt, line 1: NER tag 'NNP' is not 'O', 'B-TYPE' or 'I-TYPE'"):
        read_conll(tmp_path / "a.txt")  # default: last column, which here holds POS tags


def test_sample_files():
    data = load_conll(SAMPLE)
    assert (len(data.train), len(data.valid), len(data.test)) == (600, 150, 150)
    assert data.label_list == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert data.train[0].words[:3] == ["The", "Russian", "government"]
    assert data.train[0].labels[:3] == ["O", "B-MISC", "O"]
    tags = [t for s in data.train for t in s.labels]
    assert all(prev != "O" or not t.startswith("I-") for prev, t in zip(["O"] + tags, tags))  # IOB2 everywhere
    assert sum(t.startswith("B-") for t in tags) == 1442  # entities in train
    assert len(load_conll(SAMPLE, max_train_sentences=25).train) == 25


def test_dev_txt_is_accepted(tmp_path):
    data = load_conll(make_dir(tmp_path, TRAIN, valid_name="dev.txt"))
    assert len(data.valid) == 2 and data.files["valid"].endswith("dev.txt")


def test_malformed_line_names_file_and_line(tmp_path):
    bad = TRAIN.replace("Kong NNP I-NP I-LOC", "Kong I-LOC")
    with pytest.raises(ValueError, match=r"train\.txt, line 10: malformed line 'Kong I-LOC': 2 columns, but the "
                                         r"file's first token line has 4"):
        load_conll(make_dir(tmp_path, bad))


def test_label_not_seen_in_train(tmp_path):
    dev = "Monday NNP I-NP O\nJune NNP I-NP I-DATE\n"
    with pytest.raises(ValueError, match=r"valid\.txt, line 2: label 'I-DATE' \(word 'June'\): entity type 'DATE' "
                                         r"never occurs in the training split"):
        load_conll(make_dir(tmp_path, TRAIN, valid=dev))


def test_inner_tag_of_known_type_is_fine(tmp_path):
    # train has only one-word PERs (B-PER); IOB2 still allows I-PER, so a two-word PER in dev is valid
    data = load_conll(make_dir(tmp_path, "Smith NNP I-NP I-PER\n", valid="John NNP I-NP I-PER\nSmith NNP I-NP I-PER\n"))
    assert data.label_list == ["O", "B-PER", "I-PER"]
    assert data.valid[0].labels == ["B-PER", "I-PER"]


def test_missing_split_and_missing_data(tmp_path, monkeypatch):
    write(tmp_path / "train.txt", TRAIN)
    with pytest.raises(FileNotFoundError, match=r"lacks: valid \(valid\.txt or dev\.txt or eng\.testa\), test"):
        load_conll(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no CoNLL files"):
        load_conll(empty, download=False)

    def offline(*args, **kwargs):
        raise ConnectionError("no network")
    import datasets
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match=r"loading 'lhoestq/conll2003' with Hugging Face datasets failed "
                                                r"\(ConnectionError: no network\)\. On a machine with internet run"):
        load_conll(empty)


def test_hugging_face_branch_converts_ids(tmp_path, monkeypatch):
    """The online branch on a local stand-in with the Hub copy's schema (tokens + ClassLabel ner_tags)."""
    import datasets
    tags = datasets.Sequence(datasets.ClassLabel(names=conll.HF_CONLL2003_TAGS))
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": tags})
    rows = {"tokens": [["-DOCSTART-"], ["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]],
            "ner_tags": [[0], [3, 0, 7, 0], [1, 2]]}
    split = datasets.Dataset.from_dict(rows, features=features)
    fake = datasets.DatasetDict(train=split, validation=split, test=split)
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: calls.append((name, kw)) or fake)
    data = load_conll(tmp_path / "missing")
    assert calls == [("lhoestq/conll2003", {"revision": None})]
    assert data.source == "hf:lhoestq/conll2003"
    assert data.train == [Sentence(["EU", "rejects", "German", "call"], ["B-ORG", "O", "B-MISC", "O"]),
                          Sentence(["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    assert data.label_list == label_list_from(data.train) == ["O", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER",
                                                              "I-PER"]


def test_conll_bom_bad_bytes_and_empty_files_are_named(tmp_path):
    from ftkit.data.conll import load_conll, read_conll
    token = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
    (tmp_path / "bom.txt").write_bytes("\ufeff".encode() + token.encode())
    assert [s.words for s in read_conll(tmp_path / "bom.txt")] == [["EU", "rejects"]]
    (tmp_path / "latin.txt").write_bytes(token.encode() + "Zürich NNP B-NP B-LOC\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.txt, line 4: byte 0xfc at column 2 is not UTF-8"):
        read_conll(tmp_path / "latin.txt")
    for name, empty in (("train", "train.txt"), ("test", "test.txt")):
        folder = tmp_path / name
        folder.mkdir()
        for split in ("train.txt", "valid.txt", "test.txt"):
            (folder / split).write_text("" if split == empty else token)
        with pytest.raises(ValueError, match=rf"the {'training' if name == 'train' else 'test'} file .*{empty}' has no sentences"):
            load_conll(folder, download=False)
    with pytest.raises(ValueError, match="max_train_sentences must be a whole number >= 1 or None, got 'abc'"):
        load_conll(tmp_path / "train", max_train_sentences="abc", download=False)
