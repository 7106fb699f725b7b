"""ftkit.train.step: one training step, evaluate and predict — batches, AMP, non-finite values."""
from __future__ import annotations

import collections
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ftkit
from ftkit.core import NonFiniteLossWarning
from ftkit.train.callbacks import ParamControl

from conftest import fit_toy_adamw, mlp, toy_loader, weights, X, Y


# --------------------------------------------------------------------------- predict / BatchNorm
def test_predict_batch_size_and_numpy_input():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = np.random.default_rng(0).normal(size=(5, 3))  # float64, as NumPy makes it
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1 \(samples per forward pass\), got 0"):
        ftkit.predict(model, torch.zeros(5, 3), batch_size=0)
    out = ftkit.predict(model, x, batch_size=2)
    assert torch.allclose(out, model(torch.tensor(x, dtype=torch.float32)).detach())


def test_a_three_element_batch_is_refused_not_trained_on_the_mask():
    mask = torch.ones(64, dtype=torch.long)
    batches = DataLoader(TensorDataset(X, mask, Y), batch_size=16)
    with pytest.raises(ValueError, match=r"3 elements .* cannot tell which one is the target"):
        ftkit.fit(mlp(dropout=0.2), batches, "cross_entropy", "adam", progress=False)


def test_a_nan_gradient_with_a_finite_loss_stops_before_the_update():
    model = mlp(dropout=0.2)
    before = weights(model).clone()

    def loss(out, y):   # finite value (0), but d sqrt(u)/du at u = 0 is inf → NaN gradients
        return torch.sqrt((out * 0).sum()) + 0 * nn.functional.cross_entropy(out, y)

    with pytest.warns(NonFiniteLossWarning, match="non-finite gradient norm"):
        history = ftkit.fit(model, toy_loader(16), loss, ftkit.make_optimizer("sgd", model, lr=0.1), progress=False)
    assert history.stop_reason.startswith("non-finite gradient norm (nan) with a finite loss")
    assert torch.equal(weights(model), before)


def test_a_batch_of_only_ignored_labels_neither_poisons_evaluate_nor_stops_fit():
    y = Y.clone()
    y[:16] = -100
    data = DataLoader(TensorDataset(X, y), batch_size=16)
    model = mlp(dropout=0.0)
    result = ftkit.evaluate(model, data, "cross_entropy", ["accuracy"])
    expected = nn.functional.cross_entropy(model(X[16:]), Y[16:]).item()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.warns(RuntimeWarning, match="every label -100"):
        history = ftkit.fit(model, data, "cross_entropy", "sgd", epochs=2, progress=False)
    assert history.stop_reason is None and len(history.steps) == 6 and math.isfinite(history["train_loss"][-1])


# --------------------------------------------------------------------------- 15: small API traps
def test_predict_on_a_list_of_samples_history_typos_and_frames():
    model = mlp(dropout=0.0)
    out = ftkit.predict(model, [X[0], X[1]])
    assert out.shape == (2, 3) and torch.allclose(out, model(X[:2]), atol=1e-6)
    history, _ = fit_toy_adamw(1, val_loader=toy_loader(16, shuffle=False))
    with pytest.raises(KeyError, match="no epoch column 'val_los'; did you mean 'val_loss'"):
        history["val_los"]
    assert len(history.to_frame("steps")) == 4 and len(history.to_frame("epochs")) == 1
    with pytest.raises(ValueError, match="which must be 'step' or 'epoch'"):
        history.to_frame("batches")
    control = ParamControl()
    with pytest.raises(ValueError, match="unknown setting 'lrr'; did you mean 'lr'"):
        control.set(lrr=0.1)


def test_model_returning_a_tuple_says_how_to_pick_the_logits():
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x), x

    model = Pair()
    with pytest.raises(TypeError, match=r"the model returned a tuple of 2, not a tensor .* out\[0\]"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", ftkit.make_optimizer("sgd", model), progress=False)


def test_dict_batches_use_the_models_own_loss():
    class HFLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, input_ids, labels=None):
            logits = self.lin(input_ids)
            loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return SimpleNamespace(loss=loss, logits=logits)

    x = torch.randn(64, 4)
    y = x[:, :3].argmax(1)
    batches = [{"input_ids": x[i:i + 16], "labels": y[i:i + 16]} for i in range(0, 64, 16)]
    model = HFLike()
    history = ftkit.fit(model, batches, None, ftkit.make_optimizer("adam", model, lr=0.05), epochs=15,
                        metrics=["accuracy"], progress=False)
    assert history["train_accuracy"][-1] > 0.8
    assert ftkit.predict(model, batches).shape == (64, 3)


def test_amp_on_cpu_runs_in_bfloat16(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    dtypes = []
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    hooks = [m.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype)) for m in linears]
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("adam", model, lr=1e-2), epochs=1,
                        amp=True, progress=False)
    assert math.isfinite(history["train_loss"][0])
    assert dtypes and set(dtypes) == {torch.bfloat16}  # every Linear ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay fp32
    dtypes.clear()
    ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("adam", model, lr=1e-2), epochs=1, progress=False)
    assert set(dtypes) == {torch.float32}  # and without amp, fp32
    for h in hooks:
        h.remove()


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def test_a_mapping_batch_that_is_not_a_dict_trains_like_a_dict():
    """Hugging Face collators yield a BatchEncoding (a Mapping, not a dict); fit sends it to the device whole."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))

        def forward(self, x, labels=None):
            return self.net(x)

    x, y = data()
    losses = {}
    for kind in (dict, collections.UserDict):
        torch.manual_seed(0)
        model = Net()
        batches = [kind(x=x[i:i + 16], labels=y[i:i + 16]) for i in range(0, 64, 16)]
        history = ftkit.fit(model, batches, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                            progress=False, device="cpu")
        losses[kind] = [r["loss"] for r in history.steps]
    assert len(losses[dict]) == 8 and losses[dict] == losses[collections.UserDict]
    assert losses[dict][-1] < losses[dict][0]
