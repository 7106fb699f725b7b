"""Checkpoint files (train/checkpoint.py): plain-data files with wrong contents and bare pickles get one clear error."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.train.callbacks import ModelCheckpoint
from ftkit.train.checkpoint import load_checkpoint

X32, Y32 = torch.randn(32, 4), torch.randint(0, 3, (32,))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    model = nn.Linear(4, 3)
    ftkit.fit(model, DataLoader(TensorDataset(X32, Y32), batch_size=8), "cross_entropy", "sgd", 1,
              callbacks=[ModelCheckpoint(folder)], progress=False)
    return torch.load(folder / "last.pt", weights_only=True)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].update(weight=[[0.0] * 4] * 3), r"its model weights \['weight'\] are lists, not tensors"),
    (lambda c: c["optimizer"].pop("param_groups"), r"its 'optimizer' has no 'param_groups' list"),
    (lambda c: c.pop("rng"), r"it has no random-number state"),
    (lambda c: c.update(history=[]), r"its 'history' is not a dict"),
    (lambda c: c.update(step="3"), r"its 'step' is '3', not a whole number"),
])
def test_a_checkpoint_with_wrong_contents_is_named_not_a_bare_key_error(tmp_path, saved, edit, message):
    ckpt = {k: (dict(v) if isinstance(v, dict) else v) for k, v in saved.items()}
    ckpt["model"], ckpt["optimizer"] = dict(saved["model"]), dict(saved["optimizer"])
    edit(ckpt)
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=r"is not a complete ftkit checkpoint: " + message + r".*nothing was loaded"):
        load_checkpoint(tmp_path / "edited.pt", nn.Linear(4, 3))


def test_a_bare_pickle_is_refused_as_a_file_ftkit_will_not_unpickle(tmp_path, saved):
    with open(tmp_path / "state.pkl", "wb") as f:
        pickle.dump({"model": {}, "optimizer": {}}, f)
    with pytest.raises(ValueError, match=r"is a bare Python pickle \(written by pickle\.dump\).*will not unpickle it"):
        load_checkpoint(tmp_path / "state.pkl")
