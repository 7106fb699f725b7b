"""A bad parameter stops each notebook in its setup cell (the cell after ``parameters``), before any data loads,
with one message naming the parameter and what it accepts.

One papermill run per notebook proves it end to end (each stops at the setup cell: a kernel start, no training);
the other bad values of the issue run the notebook's own parameters and setup cells in this process (no kernel).
"""
from __future__ import annotations

import json

import pytest

from notebook_runs import NOTEBOOKS, setup_cell_error
from ftkit.notebook import ParameterError


def cell_sources(name: str) -> tuple[str, str]:
    """(the parameters cell, the setup cell after it) of ``notebooks/<name>``."""
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    at = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    params, setup = ("".join(c["source"]) for c in cells[at:at + 2])
    assert "setup(globals()" in setup, f"{name}: the cell after parameters must call setup"
    return params, setup


def run_setup(name: str, tmp_path, **overrides) -> dict:
    """Execute the parameters cell, then ``overrides`` (as papermill's injected cell would), then the setup cell."""
    params, setup = cell_sources(name)
    namespace: dict = {}
    exec(params, namespace)
    namespace.update(output_dir=str(tmp_path / "out"), **overrides)
    exec(setup, namespace)
    return namespace


NOTEBOOK = {"01": "01_loss_landscapes.ipynb", "02": "02_gradient_descent.ipynb", "03": "03_cifar10_cnn.ipynb",
            "04": "04_bert_ner.ipynb", "05": "05_sentence_classification.ipynb", "06": "06_language_model.ipynb"}


@pytest.mark.notebook
@pytest.mark.parametrize("nb, bad, message", [
    ("01", {"method": "vmpa"}, "parameter method='vmpa': expected one of 'auto', 'vmap', 'loop'; did you mean 'vmap'?"),
    ("02", {"kappa": 0.5}, "parameter kappa=0.5: expected a number >= 1"),
    ("03", {"epochs": "abc"}, "parameter epochs='abc': expected a whole number >= 1"),
    ("04", {"lr": "abc"}, "parameter lr='abc': expected a number > 0"),
    ("05", {"modes": "full"}, "parameter modes='full': expected a list of one of 'full', 'head', 'lora'; "
                              "write modes=['full']"),
    ("06", {"n_layer": 0}, "parameter n_layer=0: expected a whole number >= 1"),
])
def test_papermill_stops_in_the_setup_cell_naming_the_parameter(nb, bad, message, tmp_path):
    err = setup_cell_error(NOTEBOOK[nb], tmp_path, **bad)
    assert message in err.evalue, err.evalue


@pytest.mark.parametrize("nb, bad, message", [
    ("01", {"eos_lrs": "[0.6]"}, "parameter eos_lrs='[0.6]': expected a list of a number > 0; papermill's -p passes "
                                 "text: give a list with -y, e.g. papermill ... -y 'eos_lrs: [0.6]'"),
    ("01", {"task": "cifar"}, "did you mean 'cifar10'?"),
    ("01", {"epochz": 3}, "unknown parameter 'epochz'; did you mean 'epochs'?"),
    ("02", {"momentum": 1.5}, "parameter momentum=1.5: expected a number >= 0 and <= 0.999"),
    ("03", {"optimizer": "adamm"}, "parameter optimizer='adamm': expected one of 'sgd', 'gd', 'momentum', "
                                   "'nesterov', 'adam', 'adamw', 'rmsprop', 'adagrad'; did you mean 'adam'?"),
    ("03", {"scheduler": "cosin"}, "parameter scheduler='cosin'"),
    ("03", {"model": "resnet18"}, "parameter model='resnet18': expected one of 'simple_cnn', 'fast_resnet'"),
    ("03", {"device": "gpu"}, "parameter device='gpu': expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("03", {"preset": "tpu"}, "parameter preset='tpu': expected one of 'auto', 'cpu', 'gpu'"),
    ("04", {"max_train_sentences": 0}, "parameter max_train_sentences=0: expected a whole number >= 1 or None"),
    ("04", {"ddp_device": "gpu"}, "parameter ddp_device='gpu'"),
    ("05", {"modes": ["full", "lorra"]}, "parameter modes[1]='lorra'"),
    ("05", {"amp": "yes"}, "parameter amp='yes': expected True or False"),
    ("06", {"losses": ["cross_entropy", "msa"]}, "parameter losses[1]='msa'"),
    ("06", {"tokenizer": "wordpiece"}, "parameter tokenizer='wordpiece': expected one of 'char', 'bpe'"),
    ("06", {"finetune_steps": 150}, "parameter finetune_steps=150 must be a multiple of eval_every=100"),
    ("06", {"n_embd": 130}, "parameter n_embd=130 must be a multiple of n_head=4"),
])
def test_every_bad_value_of_the_issue_is_named_before_any_work(nb, bad, message, tmp_path):
    with pytest.raises(ParameterError) as err:
        run_setup(NOTEBOOK[nb], tmp_path, **bad)
    assert message in str(err.value), str(err.value)


@pytest.mark.parametrize("nb", sorted(NOTEBOOK))
def test_the_presets_fill_every_knob_left_at_none_and_a_set_value_wins(nb, tmp_path, monkeypatch, capsys):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = run_setup(NOTEBOOK[nb], tmp_path)
    out = capsys.readouterr().out
    assert cpu["preset"] == "cpu" and "preset 'cpu' (no CUDA GPU found): about" in out and "expected result:" in out
    assert cpu["chosen"].from_preset, "the CPU preset decides something"
    params, _ = cell_sources(NOTEBOOK[nb])
    left_at_none = [line.split("=")[0].strip() for line in params.splitlines() if "= None" in line.split("#")[0]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # the GPU preset is for a machine with CUDA
    gpu = run_setup(NOTEBOOK[nb], tmp_path, preset="gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in cpu["chosen"].from_preset:
        assert name in left_at_none
    assert set(gpu["chosen"].from_preset) == set(cpu["chosen"].from_preset), "both presets decide the same knobs"
    name = cpu["chosen"].from_preset[0]
    mine = run_setup(NOTEBOOK[nb], tmp_path, **{name: gpu[name]})
    assert mine[name] == gpu[name] and name not in mine["chosen"].from_preset   # the user's value wins


def test_offline_the_loaders_name_the_working_directory_a_relative_data_dir_was_read_from(tmp_path, monkeypatch):
    """A notebook run from the repo root, notebooks/ or Colab's /content reads ``data/...`` from different folders:
    the message says which one."""
    from ftkit.data.cifar10 import load_cifar10
    from ftkit.data.conll import load_conll
    from ftkit.data.text import load_text
    monkeypatch.chdir(tmp_path)
    where = f"(relative to the working directory {str(tmp_path)!r})"
    for load in (lambda: load_cifar10("data/cifar10", download=False),
                 lambda: load_conll("data/conll2003", download=False), lambda: load_text("data/sst2", None)):
        with pytest.raises(FileNotFoundError) as err:
            load()
        assert where in str(err.value), str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        load_cifar10(str(tmp_path / "abs"), download=False)
    assert "working directory" not in str(err.value)


def test_notebook_01_asks_for_cifar_by_default_and_synthetic_only_by_name(tmp_path, monkeypatch):
    """``synthetic=False`` (01's task="cifar10"): no silent stand-in; offline, the loader's message with the working
    directory. ``synthetic=True`` (task="synthetic"): the synthetic task even where CIFAR-10 is."""
    from ftkit.data import cifar10 as C, fake
    monkeypatch.setattr(C, "_can_reach", lambda *a, **k: False)          # offline, without waiting for a timeout
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"relative to the working directory .*cannot be reached"):
        C.cifar10_or_synthetic("data/cifar10", 30, seed=0, synthetic=False)
    fake.write_fake_cifar10(tmp_path / "cifar", n_train=50, n_test=10)
    assert C.cifar10_or_synthetic(tmp_path / "cifar", 30, synthetic=False)[2] == "CIFAR-10"
    assert C.cifar10_or_synthetic(tmp_path / "cifar", 30, synthetic=True)[2] == "synthetic"
    params, _ = cell_sources("01_loss_landscapes.ipynb")
    assert 'task = "cifar10"' in params


def _first_number(text: str) -> float:
    import re
    return float(re.search(r"\d+(?:\.\d+)?", str(text))[0])


@pytest.mark.parametrize("nb", sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
def test_the_readme_table_gives_each_notebooks_own_minutes(nb):
    """The README's CPU and GPU minutes are the ones the notebook prints (its ``setup(minutes=...)``)."""
    import ast
    import re
    from conftest import ROOT
    _, setup = cell_sources(nb)
    minutes = ast.literal_eval(re.search(r"minutes=(\{[^}]*\})", setup)[1])
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if f"(notebooks/{nb})" in line)
    cpu, gpu = (cell.strip() for cell in row.split("|")[3:5])
    assert (_first_number(cpu), _first_number(gpu)) == (_first_number(minutes["cpu"]), _first_number(minutes["gpu"])), \
        f"README: {cpu!r} / {gpu!r}; {nb}: {minutes}"
