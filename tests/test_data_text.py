"""ftkit.data.text: TSV/CSV/JSONL sentence-classification files, label lists, splits and bad input."""
from __future__ import annotations

import json

import pytest

from ftkit.data.text import load_text, read_text_file


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_glue_tsv_with_int_labels_and_a_seeded_dev_split(tmp_path):
    rows = "".join(f"sentence {i} \"quoted\"\t{i % 3 * 5}\n" for i in range(40))  # labels 0, 5, 10
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + rows)
    write(tmp_path / "test.tsv", "sentence\tlabel\nfine\t10\nbad\t0\n")
    data = load_text(tmp_path, seed=1)
    assert data.label_list == ["0", "5", "10"]  # numeric order, not "0", "10", "5"
    assert (len(data.train), len(data.valid), len(data.test)) == (36, 4, 2)
    assert data.test.labels == [2, 0] and data.test.texts == ["fine", "bad"]
    assert data.train.texts[0] == 'sentence 0 "quoted"'  # TSV quotes are plain characters (GLUE)
    assert set(data.valid.texts).isdisjoint(data.train.texts)
    assert load_text(tmp_path, seed=1).valid.texts == data.valid.texts  # same seed, same split
    assert load_text(tmp_path, seed=2).valid.texts != data.valid.texts
    assert data.notes == ["valid = 4 sentences drawn from train (seed 1)"]


def test_csv_string_labels_dev_becomes_test_and_subsampling(tmp_path):
    write(tmp_path / "train.csv", "text,sentiment\n" + "".join(f'"word {i}, more",{"pos" if i % 2 else "neg"}\n'
                                                              for i in range(20)))
    write(tmp_path / "dev.csv", "text,sentiment\ngreat,pos\n")
    data = load_text(tmp_path, text_column="text", label_column="sentiment", max_train_sentences=5)
    assert data.label_list == ["neg", "pos"]
    assert data.test.texts == ["great"] and data.test.labels == [1]   # no test file: the dev file is the test set
    assert (len(data.train), len(data.valid)) == (5, 2)
    assert data.train.texts[0].startswith("word ") and "," in data.train.texts[0]


def test_jsonl_sentence_pairs(tmp_path):
    lines = [{"sentence1": f"a{i}", "sentence2": f"b{i}", "label": "entailment" if i % 2 else "contradiction"}
             for i in range(10)]
    write(tmp_path / "train.jsonl", "\n".join(map(json.dumps, lines)) + "\n\n")
    write(tmp_path / "validation.jsonl", json.dumps(lines[1]) + "\n")
    write(tmp_path / "test.jsonl", json.dumps(lines[0]) + "\n")
    data = load_text(tmp_path)
    assert data.train.pairs == [f"b{i}" for i in range(10)] and data.valid.texts == ["a1"]
    assert data.label_list == ["contradiction", "entailment"] and data.test.labels == [0]
    assert "pairs" in repr(data)


def test_bad_files_get_one_clear_error(tmp_path):
    bad = write(tmp_path / "a.tsv", "review\tstars\ngood\t1\n")
    with pytest.raises(ValueError, match=r"has no label column 'label'; its columns are: review, stars"):
        read_text_file(bad)
    with pytest.raises(ValueError, match=r"has no text column 'body'; its columns are: review, stars"):
        read_text_file(bad, text_column="body", label_column="stars")
    empty = write(tmp_path / "b.tsv", "sentence\tlabel\nfine\t1\n  \t0\n")
    with pytest.raises(ValueError, match=r"b\.tsv, line 3: empty sentence in column 'sentence'"):
        read_text_file(empty)

    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "train.tsv", "sentence\tlabel\ngood\tpos\nbad\tneg\n")
    write(tmp_path / "d" / "test.tsv", "sentence\tlabel\nok\tpos\nmeh\tmixed\n")
    with pytest.raises(ValueError, match=r"test\.tsv, line 3: label 'mixed' never occurs in train; train's labels "
                                         r"are \['neg', 'pos'\]"):
        load_text(tmp_path / "d")
    write(tmp_path / "d" / "test.tsv", "index\tsentence\n0\tok\n")
    with pytest.raises(ValueError, match="no label column 'label'.*an unlabeled test file cannot be scored"):
        load_text(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match=r"no train file in .*nowhere'.*or pass dataset='glue/sst2'"):
        load_text(tmp_path / "nowhere", download=False)
