"""Resume exactly, never lose a log or the best model, no silent wrong result: one test per reported case.

The standard task: conftest's ``X, Y`` (``torch.randn(64, 4), torch.randint(0, 3, (64,))`` after seed 0) in batches
of 16.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ftkit.data import shipped
import ftkit
from ftkit.train.callbacks import EarlyStopping, ModelCheckpoint, ParamControl
from ftkit.train.loggers import CSVLogger
from ftkit.core import Callback, NonFiniteLossWarning
from ftkit.train.checkpoint import load_checkpoint, save_checkpoint
from conftest import X, Y, StopAt, Values, fit_toy_adamw, mlp, toy_loader, weights

# --------------------------------------------------------------------------- 1, 2: callback state on resume
def test_resume_keeps_the_best_score_so_a_worse_epoch_does_not_replace_best_pt(tmp_path):
    values = {1: 1.015, 2: 0.9, 3: 21.6, 4: 0.5}
    ckpt = ModelCheckpoint(tmp_path, monitor="val_loss")
    fit_toy_adamw(4, callbacks=[Values(values), ckpt, StopAt(epoch=2)])
    assert load_checkpoint(ckpt.best_path)["best"] == 0.9

    seen = {}

    class BestAfter(Callback):
        def on_epoch_end(self, state):
            seen[state.epoch] = load_checkpoint(ckpt.best_path)["best"]

    resumed = ModelCheckpoint(tmp_path, monitor="val_loss")
    fit_toy_adamw(4, callbacks=[Values(values), resumed, BestAfter()], resume_from=ckpt.last_path)
    assert seen == {3: 0.9, 4: 0.5}          # 21.6 did not replace 0.9; 0.5 did


def test_csv_logger_appends_on_resume(tmp_path):
    path = tmp_path / "log.csv"
    fit_toy_adamw(4, callbacks=[CSVLogger(path), ModelCheckpoint(tmp_path), StopAt(epoch=2)])
    fit_toy_adamw(4, callbacks=[CSVLogger(path)], resume_from=tmp_path / "last.pt")
    rows = path.read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


# --------------------------------------------------------------------------- 3: mid-epoch resume after SIGINT
def test_real_sigint_then_resume_continues_mid_epoch_bit_for_bit(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time, torch, ftkit
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_reliability import run
        from ftkit.train.callbacks import ModelCheckpoint
        from ftkit.core import Callback

        class Slow(Callback):
            def on_batch_end(self, state):
                print("step", state.step, flush=True)
                time.sleep(0.05)

        history, _ = fit_toy_adamw(5, callbacks=[Slow(), ModelCheckpoint({str(tmp_path)!r})])
        print("stop_reason", history.stop_reason, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.strip() == "step 6":          # mid-epoch 2 (4 batches an epoch)
            proc.send_signal(signal.SIGINT)
            break
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0 and "stop_reason interrupted at epoch 2" in out
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["resume"]["epoch"] == 2 and 0 < saved["resume"]["batches"] < 4

    straight, model_a = fit_toy_adamw(5)
    resumed, model_b = fit_toy_adamw(5, resume_from=tmp_path / "last.pt")
    assert [r["epoch"] for r in resumed.epochs] == [1, 2, 3, 4, 5] and len(resumed.steps) == 20
    a = torch.tensor([r["loss"] for r in straight.steps])
    b = torch.tensor([r["loss"] for r in resumed.steps])
    assert (a - b).abs().max() <= 1e-6
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], abs=1e-6)
    assert torch.allclose(weights(model_a), weights(model_b), atol=1e-6)


def test_keyboard_interrupt_resume_skips_no_batch(tmp_path):
    def interrupt(state):
        raise KeyboardInterrupt

    class At(Callback):
        def on_batch_end(self, state):
            if state.step == 6:
                interrupt(state)

    fit_toy_adamw(5, callbacks=[At(), ModelCheckpoint(tmp_path)])
    resumed, _ = fit_toy_adamw(5, resume_from=tmp_path / "last.pt")
    assert [r["step"] for r in resumed.steps] == list(range(1, 21))
    assert [r["epoch"] for r in resumed.epochs] == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- 4: schedules on resume
@pytest.mark.parametrize("name", ["cosine", "one_cycle", "linear_warmup"])
def test_named_schedule_is_rebuilt_for_the_new_total_and_continued(tmp_path, name):
    fit_toy_adamw(2, scheduler=name, callbacks=[ModelCheckpoint(tmp_path)])
    straight, model_a = fit_toy_adamw(4, scheduler=name)
    resumed, model_b = fit_toy_adamw(4, scheduler=name, resume_from=tmp_path / "last.pt")
    lrs = [r["lr"] for r in resumed.steps[8:]]
    assert lrs == pytest.approx([r["lr"] for r in straight.steps[8:]], rel=1e-9)
    assert max(lrs) > 0                       # the lr does not stay at the end of the 2-epoch schedule
    assert len(resumed.steps) == 16


def test_same_total_resume_continues_the_saved_scheduler(tmp_path):
    fit_toy_adamw(4, scheduler="cosine", callbacks=[ModelCheckpoint(tmp_path), StopAt(epoch=2)])
    straight, model_a = fit_toy_adamw(4, scheduler="cosine")
    resumed, model_b = fit_toy_adamw(4, scheduler="cosine", resume_from=tmp_path / "last.pt")
    assert [r["lr"] for r in resumed.steps] == pytest.approx([r["lr"] for r in straight.steps])
    assert torch.allclose(weights(model_a), weights(model_b), atol=1e-6)


def test_resume_without_the_schedule_or_with_too_few_epochs_says_what_to_pass(tmp_path):
    fit_toy_adamw(2, scheduler="cosine", callbacks=[ModelCheckpoint(tmp_path)])
    with pytest.raises(ValueError, match=r"trained with a learning-rate schedule .* pass the same scheduler="):
        fit_toy_adamw(4, resume_from=tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"already finished epoch 2.*pass epochs > 2"):
        fit_toy_adamw(2, scheduler="cosine", resume_from=tmp_path / "last.pt")
    history, _ = fit_toy_adamw(3, scheduler="constant", resume_from=tmp_path / "last.pt")
    assert history.steps[-1]["lr"] == pytest.approx(1e-2)   # 'constant' goes on at the initial lr


def test_resume_keeps_the_checkpoint_lr_and_says_so_when_the_optimizer_differs(tmp_path):
    fit_toy_adamw(2, callbacks=[ModelCheckpoint(tmp_path)], lr=1e-2)
    with pytest.warns(UserWarning, match=r"resuming with the checkpoint's lr 0.01 \(the optimizer given had 0.5\)"):
        history, _ = fit_toy_adamw(3, resume_from=tmp_path / "last.pt", lr=0.5)
    assert history.steps[-1]["lr"] == pytest.approx(1e-2)


# --------------------------------------------------------------------------- 5, 6: wrong objects, names
def test_optimizer_built_for_another_model_is_refused():
    model = mlp(dropout=0.2)
    opt = ftkit.make_optimizer("adam", model, lr=1e-2)
    model = mlp(dropout=0.2)                             # the model cell re-run, the optimizer cell not
    with pytest.raises(ValueError, match=r"optimizer holds \d+ of \d+ parameters that are not this model's.*Re-run"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, progress=False)


def test_monitor_and_mode_are_checked_before_the_first_epoch(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'minimum'"):
        ModelCheckpoint(tmp_path, mode="minimum")
    steps = []

    class Count(Callback):
        def on_batch_end(self, state):
            steps.append(state.step)

    for cb in (ModelCheckpoint(tmp_path, monitor="val_acc"), EarlyStopping("val_acc")):
        with pytest.raises(KeyError, match=r"monitors 'val_acc'.*did you mean 'val_accuracy'"):
            fit_toy_adamw(2, callbacks=[Count(), cb], val_loader=toy_loader(16, shuffle=False), metrics=["accuracy"])
    assert steps == [] and not os.path.exists(tmp_path / "best.pt")
    with pytest.raises(ValueError, match="val_loader is empty"):
        fit_toy_adamw(1, val_loader=[])


def test_model_checkpoint_min_mode_keeps_the_lowest(tmp_path):
    ckpt = ModelCheckpoint(tmp_path, monitor="val_loss", mode="min")
    fit_toy_adamw(4, callbacks=[Values({1: 3.0, 2: 1.0, 3: 2.0, 4: 5.0}), ckpt])
    assert load_checkpoint(ckpt.best_path)["best"] == 1.0 and load_checkpoint(ckpt.best_path)["epoch"] == 2


# --------------------------------------------------------------------------- 7, 8: metrics and batch shapes
def test_accuracy_with_one_hot_soft_and_single_logit_targets():
    from ftkit.metrics import accuracy
    out = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 2.0, 0.0], [0.0, 2.0, 1.0]])
    one_hot = nn.functional.one_hot(torch.tensor([0, 0, 1, 2]), 3).float()
    assert [int(v) for v in accuracy(out, one_hot)] == [2, 4]
    soft = one_hot * 0.8 + 0.2 / 3
    assert [int(v) for v in accuracy(out, soft)] == [2, 4]
    logits = torch.tensor([[1.5], [-0.5], [0.3], [-2.0]])
    assert [int(v) for v in accuracy(logits, torch.tensor([1, 0, 0, 1]))] == [2, 4]
    assert [int(v) for v in accuracy(logits, torch.tensor([[1.0], [0.0], [0.0], [1.0]]))] == [2, 4]
    with pytest.raises(ValueError, match="top5 accuracy needs at least 5 classes, but the model outputs 3"):
        ftkit.evaluate(mlp(dropout=0.2), toy_loader(16), "cross_entropy", ["top5"])


def test_a_three_element_batch_is_refused_not_trained_on_the_mask():
    mask = torch.ones(64, dtype=torch.long)
    batches = DataLoader(TensorDataset(X, mask, Y), batch_size=16)
    with pytest.raises(ValueError, match=r"3 elements .* cannot tell which one is the target"):
        ftkit.fit(mlp(dropout=0.2), batches, "cross_entropy", "adam", progress=False)


# --------------------------------------------------------------------------- 11-13: types, NaN grads, -100
def test_wrong_types_name_the_parameter():
    model = mlp(dropout=0.2)
    opt = ftkit.make_optimizer("sgd", model, lr=0.1)
    with pytest.raises(ValueError, match=r"grad_accum must be a positive integer .* got 2.5"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, grad_accum=2.5, progress=False)
    with pytest.raises(ValueError, match="epochs must be a whole number .* got 2.7"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, epochs=2.7, progress=False)
    with pytest.raises(ValueError, match="lr must be a number, got True"):
        ftkit.make_optimizer("sgd", model, lr=True)
    with pytest.raises(ValueError, match="grad_clip must be a number, got 'abc'"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, grad_clip="abc", progress=False)
    with pytest.raises(ValueError, match=r"scheduler 'step' needs step_size.*build the scheduler yourself"):
        ftkit.fit(model, toy_loader(16), "cross_entropy", opt, scheduler="step", progress=False)
    with pytest.raises(ValueError, match=r"total_steps must be a positive integer .* got 'abc'"):
        ftkit.make_scheduler("cosine", opt, total_steps="abc")
    with pytest.raises(ValueError, match="an iterator is used up after one epoch"):
        ftkit.fit(model, iter(toy_loader(16)), "cross_entropy", opt, epochs=2, progress=False)


def test_metrics_and_callbacks_may_be_given_alone():
    stopper = EarlyStopping("train_loss", patience=0, min_delta=1e9)  # nothing after epoch 1 counts as better
    history, _ = fit_toy_adamw(3, metrics="accuracy", callbacks=stopper)
    assert len(history) == 2 and history.stop_reason.startswith("early stopping: train_loss did not improve")
    assert stopper.best == history["train_loss"][0] and stopper.best_epoch == history.epochs[0]["epoch"]
    for acc in history["train_accuracy"]:  # correct predictions / samples of the epoch
        assert 0 <= acc <= 1 and acc * len(X) == pytest.approx(round(acc * len(X)))


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


def test_manual_changes_are_events_in_the_history():
    control = ParamControl()

    class At(Callback):
        def on_batch_end(self, state):
            if state.step == 2:
                control.set(lr=0.05, momentum=0.5)

    history, _ = fit_toy_adamw(1, opt="momentum", lr=0.1, callbacks=[At(), control])
    assert [(e["step"], e["name"], e["old"], e["new"]) for e in history.events] == [
        (2, "lr", 0.1, 0.05), (2, "momentum", 0.9, 0.5)]
    assert [r["lr"] for r in history.steps] == pytest.approx([0.1, 0.1, 0.05, 0.05])


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


def test_cifar_folder_with_a_missing_batch_names_it(tmp_path):
    from ftkit.data import cifar10, fake
    root = fake.write_fake_cifar10(tmp_path / "c", 50, 10)
    os.remove(os.path.join(root, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_3 "):
        cifar10.load_cifar10(tmp_path / "c", download=False)
    with pytest.raises(ValueError, match=r"subset must be a positive integer \(training images to keep\) or None, got 'abc'"):
        cifar10.load_cifar10(tmp_path / "c", subset="abc", download=False)
    os.remove(os.path.join(root, "test_batch"))
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_3, test_batch"):
        cifar10.load_cifar10(tmp_path / "c", download=False)


def test_max_steps_ends_training_after_that_many_steps_and_closes_the_epoch():
    history, _ = fit_toy_adamw(None, max_steps=6, val_loader=toy_loader(16, shuffle=False), scheduler="cosine")
    assert len(history.steps) == 6 and [r["epoch"] for r in history.epochs] == [1, 2]
    assert history.stop_reason is None and "val_loss" in history.epochs[-1]
    assert np.isclose(history.steps[-1]["lr"], 1e-2 * (1 + math.cos(math.pi * 5 / 6)) / 2)


def test_fit_draws_no_random_numbers_of_its_own_so_it_equals_a_plain_loop():
    losses = {}
    for name in ("fit", "plain"):
        ftkit.seed_everything(5)
        model, data = mlp(dropout=0.2), toy_loader(16)
        opt = ftkit.make_optimizer("sgd", model, lr=0.1, momentum=0.9)
        if name == "fit":
            losses[name] = [r["loss"] for r in ftkit.fit(model, data, "cross_entropy", opt, 2, progress=False).steps]
            continue
        losses[name] = []
        for _ in range(2):
            for x, y in data:
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses[name].append(loss.item())
    assert losses["fit"] == pytest.approx(losses["plain"], abs=1e-7)


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
    with pytest.raises(ValueError, match="max_train_sentences must be a positive integer or None, got 'abc'"):
        load_conll(tmp_path / "train", max_train_sentences="abc", download=False)


def test_tagger_takes_one_string_as_one_text(tmp_path):
    from pathlib import Path
    from ftkit.data.conll import load_conll
    from ftkit.nlp.ner import NerTagger
    from ftkit.nlp.tiny import build_tiny_bert
    sample = shipped("conll2003_sample")
    tagger = NerTagger.from_pretrained(build_tiny_bert(tmp_path / "bert", sample), load_conll(sample).label_list)
    text = "Angela Merkel visited Paris ."
    assert len(tagger.tag(text)) == 5 and tagger.tag(text) == tagger.tag([text])[0]
    assert tagger.predict(text) == tagger.predict([text])[0]


def test_a_manual_lr_keeps_each_param_groups_ratio():
    model = mlp(dropout=0.2)
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
                           {"params": model[3].parameters(), "lr": 0.1}], lr=0.01)   # a head at 10x
    control = ParamControl()

    class At(Callback):
        def on_batch_end(self, state):
            if state.step == 2:
                control.set(lr=0.003)

    ftkit.fit(model, toy_loader(16), "cross_entropy", opt, 1, callbacks=[At(), control], progress=False)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.003, 0.03])
