"""Issue 24 (errors): each bad input or silent mix-up gives a correct result or one clear message that says what
was wrong and how to fix it — reproduced here first, then fixed."""
from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import ftkit
from ftkit.core import History
from ftkit.data import cifar10 as C, fake
from ftkit.data import images as L
from ftkit.data.text import TextSplit
from ftkit.metrics import top_k
from ftkit.train.callbacks import EarlyStopping, ParamControl


# --------------------------------------------------------------------------- param groups and options
def two_groups():
    torch.manual_seed(0)
    return nn.Linear(2, 2), nn.Linear(2, 1)


def test_param_group_typo_names_the_closest_option():
    a, b = two_groups()
    with pytest.raises(ValueError, match=r"param group 1 has an unknown option 'lrr': did you mean 'lr'\?"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters()}, {"params": b.parameters(), "lrr": 0.5}], lr=0.1)
    with pytest.raises(ValueError, match=r"make_optimizer has an unknown option 'weight_decy': did you mean "
                                         r"'weight_decay'\?"):
        ftkit.make_optimizer("adamw", a, lr=0.1, weight_decy=0.1)
    opt = ftkit.make_optimizer("sgd", [{"params": a.parameters(), "name": "body"},
                                       {"params": b.parameters(), "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5] and opt.param_groups[0]["name"] == "body"


def test_param_group_values_are_range_checked_and_params_required():
    a, b = two_groups()
    with pytest.raises(ValueError, match=r"lr must be >= 0, got -1"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters(), "lr": -1}], lr=0.1)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 5"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters(), "momentum": 5}], lr=0.1)
    with pytest.raises(ValueError, match=r"param group 1 has no 'params' entry \(it has 'lr'\); each group is "
                                         r"\{'params'"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters()}, {"lr": 0.5}], lr=0.1)
    with pytest.raises(TypeError, match="param group 0 is a Parameter: pass either parameters or param-group dicts"):
        ftkit.make_optimizer("sgd", [next(a.parameters()), {"params": b.parameters()}], lr=0.1)


def test_betas_must_be_a_pair():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"betas must be a pair \(β₁, β₂\), e.g. betas=\(0.9, 0.999\), got 0.9"):
        ftkit.make_optimizer("adam", model, betas=0.9)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\), got 1.5"):
        ftkit.make_optimizer("adam", model, betas=(0.9, 1.5))
    assert ftkit.make_optimizer("adam", model, betas=[0.8, 0.99]).param_groups[0]["betas"] == (0.8, 0.99)


def test_param_control_checks_each_option_range():
    control = ParamControl()
    for key, value, match in (("momentum", 5, r"momentum must be in \[0, 1\), got 5"),
                              ("lr", -0.1, r"lr must be >= 0, got -0.1"),
                              ("weight_decay", -1, r"weight_decay must be >= 0"),
                              ("betas", 0.9, r"betas must be a pair"),
                              ("lr", "0.1", r"lr must be a number, got '0.1' \(a string")):
        with pytest.raises(ValueError, match=match):
            control.set(**{key: value})
    assert not control._pending  # nothing refused was queued
    control.set(momentum=0.5, betas=[0.8, 0.9])
    assert control._pending == {"momentum": 0.5, "betas": (0.8, 0.9)}


def test_early_stopping_patience_and_min_delta():
    with pytest.raises(ValueError, match=r"patience must be an integer >= 0 \(epochs without improvement"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="patience must be an integer >= 0.*got 2.5"):
        EarlyStopping(patience=2.5)
    with pytest.raises(ValueError, match="min_delta must be >= 0, got -0.1"):
        EarlyStopping(min_delta=-0.1)
    assert EarlyStopping(patience=0).patience == 0


def test_seed_everything_refuses_what_is_not_a_whole_number():
    for bad in ("abc", "1", 1.5, -1, None, True):
        with pytest.raises(ValueError, match="seed must be a whole number from 0 to 2\\*\\*63 - 1"):
            ftkit.seed_everything(bad)
    assert ftkit.seed_everything(np.int64(3)) == 3 and torch.initial_seed() == 3


# --------------------------------------------------------------------------- History files
def test_history_from_json_names_a_bad_file(tmp_path):
    good = History([{"epoch": 1, "step": 1, "loss": 1.0, "lr": 0.1}], [{"epoch": 1, "train_loss": 1.0}])
    path = tmp_path / "history.json"
    good.to_json(path)
    assert History.from_json(path).epochs == good.epochs
    text = path.read_text()
    path.write_text(text[:len(text) // 2])
    with pytest.raises(ValueError, match=r"history.json' is not valid JSON \(.* at line \d+, column \d+: "
                                         r"truncated or edited\?\); write it again"):
        History.from_json(path)
    path.write_text("")
    with pytest.raises(ValueError, match="history.json' is empty, not a History"):
        History.from_json(path)
    path.write_text(json.dumps({"test_accuracy": 0.9, "seconds": 3}))
    with pytest.raises(ValueError, match=r"is not a History: it has 'test_accuracy', 'seconds', but no 'steps' or "
                                         r"'epochs' \(a metrics file\?\)"):
        History.from_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a JSON list, not a History"):
        History.from_json(path)
    with pytest.raises(ValueError, match="the JSON text holds a JSON list"):
        History.from_json("[1, 2]")
    with pytest.raises(ValueError, match="'epochs' must be a list of dicts"):
        History.from_json('{"epochs": 3}')


# --------------------------------------------------------------------------- metrics
def test_top_k_skips_ignored_labels_like_accuracy():
    outputs = torch.tensor([[3.0, 2.0, 1.0, 0.0]] * 4)
    targets = torch.tensor([0, 3, -100, -100])
    hits, count = top_k(2)(outputs, targets)
    assert (int(hits), int(count)) == (1, 2)  # the two -100 rows count neither as hits nor in the total
    acc_hits, acc_count = ftkit.metrics.accuracy(outputs, targets)
    assert int(count) == int(acc_count)


# --------------------------------------------------------------------------- predict / BatchNorm
def test_predict_batch_size_and_numpy_input():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = np.random.default_rng(0).normal(size=(5, 3))  # float64, as NumPy makes it
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer \(samples per forward pass\), got 0"):
        ftkit.predict(model, torch.zeros(5, 3), batch_size=0)
    out = ftkit.predict(model, x, batch_size=2)
    assert torch.allclose(out, model(torch.tensor(x, dtype=torch.float32)).detach())


def test_batchnorm_with_a_one_sample_batch_says_what_to_change():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    data = torch.utils.data.TensorDataset(torch.randn(9, 3), torch.randint(2, (9,)))
    loader = torch.utils.data.DataLoader(data, batch_size=4)  # 4 + 4 + 1: the last batch has one sample
    with pytest.raises(ValueError, match=r"BatchNorm in training mode got a batch of 1 sample .*N % batch_size == 1"
                                         r"\): pass drop_last=True"):
        ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), progress=False)
    loader = torch.utils.data.DataLoader(data, batch_size=4, drop_last=True)
    ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), progress=False)


# --------------------------------------------------------------------------- CIFAR files
@pytest.fixture
def cifar(tmp_path):
    return fake.write_fake_cifar10(tmp_path / "c", 50, 10, num_batches=5)


class Boom:
    def __reduce__(self):  # what a crafted file does: call a function of its choice on load
        return (os.system, (f"touch {os.environ['BOOM_FILE']}",))


def test_a_crafted_batch_never_runs_code(cifar, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("BOOM_FILE", str(marker))
    with open(os.path.join(cifar, "data_batch_2"), "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": Boom()}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_2 was not loaded: it asks for (posix|nt).system, which a "
                                         r"CIFAR-10 batch never holds \(a file that names other code may be crafted"):
        C.load_cifar10(cifar.rsplit("/", 1)[0], download=False)
    assert not marker.exists()
    with open(os.path.join(cifar, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": Boom()}, f, protocol=2)
    with pytest.raises(ValueError, match="batches.meta is not a readable CIFAR-10 batches.meta"):
        C._label_names(cifar)
    assert not marker.exists()


def test_real_format_batches_still_load(cifar):
    data = C.load_cifar10(cifar.rsplit("/", 1)[0], val_fraction=0.2, download=False)
    assert (len(data.train.labels), len(data.val.labels), len(data.test.labels)) == (40, 10, 10)
    assert data.classes == C.CLASSES
    # a Python-2 style pickle (what the real tarball holds): numpy.core.multiarray._reconstruct, bytes strings
    with open(os.path.join(cifar, "test_batch"), "rb") as f:
        raw = f.read()
    assert b"_reconstruct" in raw


def test_cifar_meta_and_folder_problems_are_named(cifar):
    root = cifar.rsplit("/", 1)[0]
    meta = os.path.join(cifar, "batches.meta")
    with open(meta, "wb") as f:
        f.write(b"\x80\x02}q\x00(X\x0b")  # cut short
    with pytest.raises(ValueError, match="batches.meta is not a readable CIFAR-10 batches.meta.*delete it"):
        C.load_cifar10(root, download=False)
    with open(meta, "wb") as f:
        pickle.dump({b"label_names": [b"cat", b"dog"]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"batches.meta lists 2 label names \['cat', 'dog'\], but CIFAR-10 has 10"):
        C.load_cifar10(root, download=False)
    os.remove(meta)
    with open(os.path.join(cifar, "data_batch_1"), "rb") as f:
        batch = f.read()
    with open(os.path.join(cifar, "data_batch_6"), "wb") as f:
        f.write(batch)
    with pytest.raises(ValueError, match="has data_batch_6 besides data_batch_1..5.*move the extra file"):
        C.load_cifar10(root, download=False)
    os.remove(os.path.join(cifar, "data_batch_6"))
    with pytest.raises(ValueError, match=r"val_fraction must be a number, got '0.1' \(a string"):
        C.load_cifar10(root, val_fraction="0.1", download=False)
    data = C.load_cifar10(root, download=False)
    with pytest.raises(ValueError, match=r"std must be > 0 in every channel.*got \(0.2, 0, 0.2\)"):
        L.TensorLoader(*data.train, 8, mean=data.mean, std=(0.2, 0, 0.2), device="cpu")
    with pytest.raises(ValueError, match="std must be > 0 in every channel"):
        L.make_loader(*data.train, 8, mean=data.mean, std=(0.2, 0, 0.2))
    with pytest.raises(ValueError, match="num_batches must be 1 to 5"):
        fake.write_fake_cifar10(root, 20, 5, num_batches=6)


def test_cifar_or_synthetic_falls_back_only_without_cifar(cifar, tmp_path):
    root = cifar.rsplit("/", 1)[0]
    x, y, source = C.cifar10_or_synthetic(tmp_path / "nothing-here", 30, seed=0)
    assert source == "synthetic" and x.shape == (30, 3, 32, 32) and len(y) == 30
    x, y, source = C.cifar10_or_synthetic(root, 30, seed=0)
    assert source == "CIFAR-10" and x.shape == (30, 3, 32, 32)
    assert x.mean((0, 2, 3)).abs().max() < 1e-4  # normalized with its own statistics
    os.remove(os.path.join(cifar, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        C.cifar10_or_synthetic(root, 30, seed=0)
    with open(os.path.join(cifar, "data_batch_3"), "wb") as f:
        f.write(b"<html>404</html>")
    with pytest.raises(ValueError, match="data_batch_3 is not a readable CIFAR-10 batch"):
        C.cifar10_or_synthetic(root, 30, seed=0)


def test_notebook_01_calls_the_loader_that_keeps_a_partial_folders_error():
    with open(os.path.join(os.path.dirname(__file__), "..", "notebooks", "01_loss_landscapes.ipynb")) as f:
        nb = json.load(f)
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "cifar10_or_synthetic(data_dir" in code and "except FileNotFoundError" not in code


# --------------------------------------------------------------------------- landscape
def test_landscape_span_and_chunk_size():
    from ftkit.optviz.landscape import loss_slice, random_directions
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    data = (torch.randn(16, 3), torch.randint(2, (16,)))
    d = random_directions(model, seed=0)[0]
    with pytest.raises(ValueError, match=r"slice range \(-1e\+30, 1e\+30\) reaches beyond ±10000.*use e.g. \(-1, 1\)"):
        loss_slice(model, "cross_entropy", data, d, span=(-1e30, 1e30), verbose=False)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer.*got 0"):
        loss_slice(model, "cross_entropy", data, d, chunk_size=0, verbose=False)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer.*got -1"):
        loss_slice(model, "cross_entropy", data, d, chunk_size=-1, verbose=False)
    assert np.isfinite(loss_slice(model, "cross_entropy", data, d, chunk_size=3, verbose=False,
                                  resolution=5).losses).all()


def test_landscape_non_finite_points_are_said():
    from ftkit.optviz.landscape import loss_slice, random_directions
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    data = (torch.randn(16, 3), torch.randint(2, (16,)))
    d = random_directions(model, seed=0)[0]

    def loss(out, y):  # finite only near the trained weights
        value = nn.functional.cross_entropy(out, y)
        return torch.where(out.abs().max() > 50, torch.full_like(value, float("inf")), value)

    with pytest.warns(RuntimeWarning, match=r"\d+ of 21 grid points gave a non-finite loss and are NaN"):
        result = loss_slice(model, loss, data, d, span=(-9000, 9000), resolution=21, verbose=False)
    assert np.isnan(result.losses).any() and np.isfinite(result.losses[10])


# --------------------------------------------------------------------------- GD explorer
def test_gd_explorer_refuses_what_its_sliders_would_clamp():
    pytest.importorskip("ipywidgets")
    from ftkit.ui.gd_explorer import GDExplorer
    for kw, match in (({"lr": -1}, r"GDExplorer\(lr=-1\): lr must be a number from 0.0001 to 10"),
                      ({"lr": 100}, "lr must be a number from 0.0001 to 10"),
                      ({"momentum": 1.5}, "momentum must be a number from 0 to 0.99"),
                      ({"steps": 5000}, "steps must be a number from 10 to 1000")):
        with pytest.raises(ValueError, match=match):
            GDExplorer("quadratic", optimizers=("gd",), steps=kw.pop("steps", 20), grid=10, **kw)


# --------------------------------------------------------------------------- language model
def test_generate_checks_the_prompt():
    from ftkit.nlp.lm import GPT, GPTConfig, generate
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match=r"token id 11, outside the model's vocabulary 0..10"):
        generate(model, torch.tensor([[1, 11]]), 3)
    with pytest.raises(ValueError, match=r"token id -1, outside"):
        generate(model, torch.tensor([[-1]]), 3)
    with pytest.raises(ValueError, match=r"the prompt is empty \(shape \(1, 0\)\)"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="integer token ids"):
        generate(model, torch.zeros(1, 2), 3)
    with pytest.raises(TypeError, match="the prompt must be a tensor of token ids, got list"):
        generate(model, [[1, 2]], 3)
    assert generate(model, torch.tensor([1, 2]), 3, greedy=True).shape == (1, 5)  # one 1-D prompt is one row


# --------------------------------------------------------------------------- Transformers: labels, texts, folders
@pytest.fixture
def tiny(tiny_bert):
    return tiny_bert          # conftest's: one tiny BERT per session


DATA_LABELS = ["negative", "positive"]


def test_labels_in_another_order_are_mapped_by_name(tiny):
    from ftkit.nlp.classify import LabelOrderWarning, SentenceClassifier
    split = TextSplit(["the film was great", "the plot was awful"], [1, 0], label_list=DATA_LABELS)
    clf = SentenceClassifier.from_pretrained(tiny, ["positive", "negative"])
    with pytest.warns(LabelOrderWarning, match=r"the data orders its labels \['negative', 'positive'\], the "
                                               r"classifier \['positive', 'negative'\]: labels are mapped by name"):
        enc = clf.encode(split)
    # the bug: 'great' was labelled 1, which is 'negative' for this classifier
    assert [clf.label_list[int(y)] for y in enc.labels] == ["positive", "negative"]
    from ftkit.nlp.classify import evaluate_classifier
    with pytest.raises(ValueError, match=r"label_list \['negative', 'positive'\] is not the order these sentences "
                                         r"were encoded with"):
        evaluate_classifier(clf.model, enc, DATA_LABELS, device="cpu")
    with pytest.raises(ValueError, match=r"the data's labels \['a', 'b'\] are not the classifier's"):
        clf.encode(TextSplit(["x y"], [0], label_list=["a", "b"]))


def test_a_head_that_names_its_labels_refuses_another_order(tiny, tmp_path):
    from ftkit.nlp.classify import SentenceClassifier
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=16)
    clf.save(tmp_path / "clf")
    again = SentenceClassifier.from_pretrained(tmp_path / "clf")
    assert again.label_list == DATA_LABELS and again.max_length == 16
    assert set(again.predict(["the film was great"], device="cpu")[0]["probs"]) == set(DATA_LABELS)
    with pytest.raises(ValueError, match=r"fine-tuned for 2 labels \['negative', 'positive'\].*same order"):
        SentenceClassifier.from_pretrained(tmp_path / "clf", ["positive", "negative"])
    with pytest.raises(ValueError, match=r"the model's head names its outputs \['negative', 'positive'\].*but "
                                         r"label_list is \['positive', 'negative'\]"):
        SentenceClassifier(again.model, again.tokenizer, ["positive", "negative"])


def test_ner_head_that_names_its_labels_refuses_another_order(tiny, tmp_path):
    from ftkit.nlp.ner import NerTagger
    labels = ["O", "B-PER", "I-PER"]
    tagger = NerTagger.from_pretrained(tiny, labels)
    tagger.save(tmp_path / "ner")
    with pytest.warns(UserWarning, match=r"orders its labels \['O', 'B-PER', 'I-PER'\], the data .*mapped by name"):
        again = NerTagger.from_pretrained(tmp_path / "ner", ["B-PER", "I-PER", "O"])
    assert again.label_list == labels
    with pytest.raises(ValueError, match="the model's head names its outputs"):
        NerTagger(again.model, again.tokenizer, ["B-PER", "I-PER", "O"])


def test_predict_texts_are_checked(tiny):
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.nlp.hf import TruncationWarning
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=16)
    with pytest.raises(ValueError, match="text 1 of 1 is empty: there is nothing to classify"):
        clf.predict("")
    with pytest.raises(ValueError, match="text 2 of 2 is empty"):
        clf.predict(["a film", "   "])
    with pytest.raises(TypeError, match=r"text 1 of 1 is None \(NoneType\), not a string"):
        clf.predict([None])
    assert clf.predict([]) == [] and clf.predict_proba([]).shape == (0, 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        clf.predict(["a film"], batch_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a notebook that silenced warnings still learns it from the result
        out = clf.predict(["great " * 2000, "a film"], device="cpu")
    assert [p["cut"] for p in out] == [True, False]
    with pytest.warns(TruncationWarning, match=r"1 of 1 texts are longer than max_length=16 tokens: only their "
                                               r"start was read"):
        clf.predict("the film was great " * 500, device="cpu")  # 10,000 characters
    with pytest.raises(ValueError, match=r"max_length must be an integer >= 3 \(tokens per sentence"):
        SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=0)


def test_ner_max_length_empty_split_and_none_text(tiny):
    from ftkit.nlp.ner import Encoded, NerTagger, evaluate_ner
    with pytest.raises(ValueError, match=r"max_length must be an integer >= 3"):
        NerTagger.from_pretrained(tiny, ["O", "B-PER"], max_length=0)
    tagger = NerTagger.from_pretrained(tiny, ["O", "B-PER"])
    with pytest.raises(ValueError, match=r"evaluate_ner got no sentences \(an empty split\)"):
        evaluate_ner(tagger.model, tagger.encode([]), device="cpu")
    with pytest.raises(TypeError, match="text 2 of 2 is None.*not a string or a list of words"):
        tagger.tag(["Angela visited", None], device="cpu")


def test_model_folders_are_named(tiny, tmp_path, monkeypatch):
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.nlp.hf import load_config
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in os.listdir(tiny):
        if f != "config.json":
            with open(os.path.join(tiny, f), "rb") as src:
                (bare / f).write_bytes(src.read())
    with pytest.raises(FileNotFoundError, match=r"bare' has no config.json \(it holds: .*model.safetensors"):
        SentenceClassifier.from_pretrained(bare, DATA_LABELS)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_config(bare)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "distilbert").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no model folder at .*models/bert. \(its parent holds: distilbert\)"):
        load_config("models/bert")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="'weights.bin' is a file; a model is a folder"):
        load_config("weights.bin")


def test_save_onto_a_file_fails_before_writing(tiny, tmp_path):
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.nlp.ner import NerTagger
    target = tmp_path / "model"
    target.write_text("not a folder")
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS)
    with pytest.raises(FileExistsError, match=r"cannot save to '.*model': '.*model' is a file, and a saved model "
                                              r"is a folder"):
        clf.save(target)
    with pytest.raises(FileExistsError, match=r"is a file, and a saved model is a folder"):
        clf.save(target / "inner")
    with pytest.raises(FileExistsError, match="is a file"):
        NerTagger.from_pretrained(tiny, ["O", "B-PER"]).save(target)
    assert target.read_text() == "not a folder"


# --------------------------------------------------------------------------- neighbours
def test_neighbours_zero_sizes_seeds_and_replayed_values(tiny):
    from ftkit.data.text import load_text
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.train.replay import Replay
    with pytest.raises(ValueError, match=r"replay step 3: momentum must be in \[0, 1\), got 5"):
        Replay({3: {"momentum": 5}})
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got 'abc'"):
        C.load_cifar10("nowhere", seed="abc", download=False)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got 'abc'"):
        load_text("nowhere", seed="abc")
    with pytest.raises(ValueError, match=r"val_fraction must be a number, got '0.1' \(a string"):
        load_text("nowhere", val_fraction="0.1")
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=16)
    enc = clf.encode(TextSplit(["a film", "a plot"], [0, 1]))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        clf.fit_args(enc, batch_size=0)  # 0 was taken for "not given" (the default, 16)
    with pytest.raises(ValueError, match=r"2 texts but 1 pairs"):
        clf.encode(TextSplit(["a", "b"], [0, 1], ["c"]))

