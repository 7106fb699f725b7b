"""ftkit.train.checkpoint: safe writes, plain data, one clear error per bad file."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.train.callbacks import ModelCheckpoint
from ftkit.train.checkpoint import load_checkpoint, save_checkpoint

from conftest import fit_toy, fit_toy_adamw, mlp, toy_loader, weights

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


# --------------------------------------------------------------------------- checkpoint files
def test_bad_checkpoint_files_get_one_clear_error_each(tmp_path):
    history, model = fit_toy_adamw(1, callbacks=[ModelCheckpoint(tmp_path)])
    good = (tmp_path / "last.pt").read_bytes()
    cases = {
        "empty.pt": (b"", r"is empty \(0 bytes\)"),
        "cut.pt": (good[: len(good) // 2], r"cannot be read — it is truncated, corrupted"),
        "flipped.pt": (good[:200] + bytes(b ^ 0xFF for b in good[200:400]) + good[400:], r"cannot be read"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message):
            fit_toy_adamw(2, resume_from=tmp_path / name)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"holds a plain state_dict of 4 tensors, not an ftkit checkpoint"):
        fit_toy_adamw(2, resume_from=tmp_path / "weights.pt")
    with pytest.raises(IsADirectoryError, match="is a folder; give the checkpoint file in it"):
        fit_toy_adamw(2, resume_from=tmp_path)


def test_a_checkpoint_of_another_model_or_optimizer_is_refused_before_any_weight_changes(tmp_path):
    fit_toy_adamw(1, callbacks=[ModelCheckpoint(tmp_path)])
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3))
    before = weights(other).clone()
    with pytest.raises(ValueError, match=r"holds a different model .* shape of '0.bias': saved \(16,\), model \(8,\)\. Nothing was loaded"):
        ftkit.fit(other, toy_loader(16), "cross_entropy", ftkit.make_optimizer("adamw", other), 2,
                  resume_from=tmp_path / "last.pt", progress=False)
    assert torch.equal(weights(other), before)
    with pytest.raises(ValueError, match="trained with AdamW, but the optimizer given is SGD"):
        fit_toy_adamw(2, opt="sgd", resume_from=tmp_path / "last.pt")


def test_orphaned_temp_files_of_a_killed_save_are_cleaned_at_the_next_save(tmp_path):
    history, model = fit_toy_adamw(1)
    orphan = tmp_path / "last.pt.tmp-999999"
    orphan.write_bytes(b"half a checkpoint")
    state = type("S", (), dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
                               epoch=1, step=4, history=history))()
    save_checkpoint(tmp_path / "last.pt", state)
    assert not orphan.exists() and load_checkpoint(tmp_path / "last.pt")["step"] == 4


# --------------------------------------------------------------------------- a checkpoint runs no code
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_checkpoint_runs_nothing_and_the_error_says_why(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"format": "ftkit-checkpoint-1", "model": {}, "optimizer": _Evil(marker)}, tmp_path / "evil.pt")
    model = mlp()
    before = weights(model).clone()
    with pytest.raises(ValueError, match=r"was refused: it holds a pickled posix\.system, an object whose loading "
                                         r"can run code .*weights_only=True.* nothing from the file was run"):
        fit_toy(2, model=model, resume_from=tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="Do not load this file"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists() and torch.equal(weights(model), before)


def test_checkpoint_survives_a_kill_during_the_write(tmp_path):
    path = tmp_path / "ckpt.pt"
    model = nn.Linear(1000, 1000)  # 4 MB: each save takes a while
    state = SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
                            epoch=1, step=7, lr_override=False, history=ftkit.History())
    save_checkpoint(path, state)
    script = textwrap.dedent(f"""
        import sys, torch, ftkit
        from types import SimpleNamespace
        from ftkit.train.checkpoint import save_checkpoint
        model = torch.nn.Linear(1000, 1000)
        state = SimpleNamespace(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), scheduler=None,
                                epoch=2, step=99, lr_override=False, history=ftkit.History())
        print("ready", flush=True)
        while True:
            save_checkpoint({str(path)!r}, state)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)   # several saves in, most likely mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(path)       # the old or the new file, never a torn one
    assert ckpt["step"] in (7, 99) and ckpt["model"]["weight"].shape == (1000, 1000)
