"""ftkit.train.resume: a stopped run resumed equals an uninterrupted one; changed settings on resume are honoured or
refused."""
from __future__ import annotations

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

import ftkit
from ftkit.core import Callback
from ftkit.data import synthetic
from ftkit.train.callbacks import ModelCheckpoint, ParamControl
from ftkit.train.checkpoint import load_checkpoint
from ftkit.train.loggers import CSVLogger

from conftest import fit_toy, fit_toy_adamw, mlp, StopAt, toy_loader, Values, weights, X, Y


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
        import signal, sys, time, torch, ftkit
        signal.signal(signal.SIGINT, signal.default_int_handler)   # a background job (CI, nohup, &) starts ignoring it
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from conftest import fit_toy_adamw
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
    with pytest.warns(UserWarning, match=rf"resuming with the '{name}' schedule re-timed for 16 optimizer steps \(the "
                                         r"saved run's: 8\)"):
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
    with pytest.warns(UserWarning, match=r"resuming with the 'constant' schedule in place of the saved run's 'cosine': "
                                         r".* at lr 0\.01 where the saved run would have gone on at 0\. To continue"):
        history, _ = fit_toy_adamw(3, scheduler="constant", resume_from=tmp_path / "last.pt")
    assert history.steps[-1]["lr"] == pytest.approx(1e-2)   # 'constant' goes on at the initial lr


def test_resume_keeps_the_checkpoint_lr_and_says_so_when_the_optimizer_differs(tmp_path):
    fit_toy_adamw(2, callbacks=[ModelCheckpoint(tmp_path)], lr=1e-2)
    with pytest.warns(UserWarning, match=r"resuming with the checkpoint's lr 0.01 \(the optimizer given had 0.5\)"):
        history, _ = fit_toy_adamw(3, resume_from=tmp_path / "last.pt", lr=0.5)
    assert history.steps[-1]["lr"] == pytest.approx(1e-2)


# --------------------------------------------------------------------------- schedules and manual lr on resume
def two_groups(model, lr=0.1):
    """SGD with the head at 10x the body's lr (what LRSchedule.set keeps)."""
    return torch.optim.SGD([{"params": model[0].parameters(), "lr": lr},
                            {"params": model[2].parameters(), "lr": 10 * lr}], lr=lr)


# --------------------------------------------------------------------------- a refused resume changes nothing
def snapshot(model, opt):
    return (weights(model).clone(), [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups],
            {k: {n: t.clone() for n, t in v.items()} for k, v in opt.state.items()}, torch.get_rng_state().clone(),
            np.random.get_state()[1].copy())


def same(a, b):
    return (torch.equal(a[0], b[0]) and a[1] == b[1] and a[2].keys() == b[2].keys()
            and all(torch.equal(a[2][k][n], b[2][k][n]) for k in a[2] for n in a[2][k])
            and torch.equal(a[3], b[3]) and (a[4] == b[4]).all())


# --------------------------------------------------------------------------- batch size changed on resume
class Seen(Callback):
    """Which samples each training batch held (the first input feature identifies a sample of X)."""

    def __init__(self, model):
        self.rows = []
        model[0].register_forward_pre_hook(lambda m, args: self.rows.append(args[0][:, 0].tolist()) if m.training
                                           else None)

    def samples(self):
        index = {round(v, 6): i for i, v in enumerate(X[:, 0].tolist())}
        return [[index[round(v, 6)] for v in row] for row in self.rows]


def step_lrs(rows, after=0):
    """The lr of each optimizer step after step ``after`` (History has a row per batch: with grad_accum, several
    rows share a step)."""
    return [lr for step, lr in {r["step"]: r["lr"] for r in rows}.items() if step > after]


# --------------------------------------------------------------------------- whatever ends a fit keeps its work
class Flaky(torch.utils.data.Dataset):
    """X, Y, with sample 5 corrupt from epoch ``bad_epoch`` on (raises on read)."""

    def __init__(self):
        self.epoch, self.bad_epoch = 0, 2

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        if i == 5 and self.epoch >= self.bad_epoch:
            raise OSError("corrupt sample 5")
        return X[i], Y[i]


class EpochOf(Callback):
    def __init__(self, data):
        self.data = data

    def on_epoch_start(self, state):
        self.data.epoch = state.epoch


# --------------------------------------------------------------------------- an interrupt inside a batch (issue 35)
class _Boom(torch.autograd.Function):
    """Identity forward; its backward raises KeyboardInterrupt on the ``at``-th backward pass."""
    calls = 0
    at = None

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _Boom.calls += 1
        if _Boom.calls == _Boom.at:
            raise KeyboardInterrupt
        return grad


class DropNet(nn.Module):
    """Dropout (so every forward draws random numbers) and BatchNorm (so every forward changes buffers)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))

    def forward(self, x):
        return _Boom.apply(self.body(x))


def dropnet():
    torch.manual_seed(5)
    return DropNet()


class InterruptingVal:
    """A validation loader that raises KeyboardInterrupt in its second batch of epoch ``epoch`` (once)."""

    def __init__(self, epoch):
        self.epoch, self.now, self.armed = epoch, 0, True

    def __len__(self):
        return 2

    def __iter__(self):
        yield X[:8], Y[:8]
        if self.armed and self.now == self.epoch:
            self.armed = False
            torch.rand(3)   # validation may draw random numbers too (an augmentation, a sampler)
            raise KeyboardInterrupt
        yield X[8:16], Y[8:16]


def test_checkpoints_are_plain_data_and_resume_bit_for_bit(tmp_path):
    class NumpyLogs(Callback):   # numpy numbers in the logs (common in user callbacks) become Python numbers
        def on_epoch_end(self, state):
            state.logs["np_metric"] = np.float64(0.5)

    fit_toy(4, callbacks=[NumpyLogs(), ModelCheckpoint(tmp_path), StopAt(step=22)])   # mid-epoch 2
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)   # raises if anything is not plain data
    assert ckpt["history"]["epochs"][0]["np_metric"] == 0.5 and type(ckpt["history"]["epochs"][0]["np_metric"]) is float
    assert ckpt["resume"]["batches"] == 6
    straight, model_a = fit_toy(4)
    resumed, model_b = fit_toy(4, resume_from=tmp_path / "last.pt")
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in straight.steps], abs=1e-6)
    assert torch.allclose(weights(model_a), weights(model_b), atol=1e-6)


def test_a_callback_state_that_is_not_plain_data_is_named_before_training(tmp_path):
    class Keeps(Callback):
        def state_dict(self):
            return {"when": object()}

    model = mlp()
    before = weights(model).clone()
    with pytest.raises(TypeError, match=r"\['callbacks'\]\['.*Keeps'\]\['when'\] is a builtins\.object: a checkpoint "
                                        r"holds only tensors, numbers, strings"):
        fit_toy(1, model=model, callbacks=[Keeps(), ModelCheckpoint(tmp_path)])
    assert torch.equal(weights(model), before) and not (tmp_path / "last.pt").exists()


def test_a_manual_lr_survives_a_resume_with_a_named_schedule_and_more_epochs(tmp_path):
    control = ParamControl()

    class At(Callback):
        def on_batch_end(self, state):
            if state.step == 20:
                control.set(lr=0.005)

    model = mlp()
    fit_toy(2, model=model, opt=two_groups(model), scheduler="cosine", callbacks=[At(), control, ModelCheckpoint(tmp_path)])
    model = mlp()
    opt = two_groups(model)
    resumed, _ = fit_toy(4, model=model, opt=opt, scheduler="cosine", resume_from=tmp_path / "last.pt")
    assert [r["lr"] for r in resumed.steps[20:]] == pytest.approx([0.005] * 44)   # from the change on, to the end
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.05])    # the head keeps its 10x
    assert resumed.events[0]["new"] == 0.005


@pytest.mark.parametrize("case", ["epochs", "schedule", "max_steps", "dataset"])
def test_a_refused_resume_changes_nothing(tmp_path, case):
    fit_toy(2, scheduler="cosine", callbacks=[ModelCheckpoint(tmp_path), StopAt(step=22)] if case == "dataset"
        else [ModelCheckpoint(tmp_path)])
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ftkit.fit(model, toy_loader(), "cross_entropy", opt, 1, progress=False)   # a model trained in this session
    ftkit.seed_everything(7)
    before = snapshot(model, opt)
    kwargs = {"epochs": dict(epochs=2, scheduler="cosine"),
              "schedule": dict(epochs=3),   # the checkpoint has a schedule: this run has none
              "max_steps": dict(epochs=None, max_steps=30, scheduler="cosine"),
              "dataset": dict(epochs=3, data=TensorDataset(X[:48], Y[:48]), scheduler="cosine")}[case]
    epochs = kwargs.pop("epochs")
    data = kwargs.pop("data", None)
    message = {"epochs": r"already finished epoch 2.*pass epochs > 2",
               "schedule": r"was trained with a learning-rate schedule",
               "max_steps": r"already took 32 optimizer steps.* max_steps=30",
               "dataset": r"stopped in epoch 2 after 24 of its 64 samples.*now has 48 samples"}[case]
    with pytest.raises(ValueError, match=message):
        ftkit.fit(model, toy_loader(4, data), "cross_entropy", opt, epochs, resume_from=tmp_path / "last.pt",
                  progress=False, **kwargs)
    assert same(snapshot(model, opt), before)


def test_a_larger_batch_on_resume_trains_exactly_the_remaining_samples_of_the_epoch(tmp_path):
    model = mlp()
    first = Seen(model)
    fit_toy(3, model=model, callbacks=[first, ModelCheckpoint(tmp_path), StopAt(step=21)])  # 5 batches of 4 into epoch 2
    model = mlp()
    straight = Seen(model)
    fit_toy(3, model=model)                                   # batch 4 throughout: epoch 2 draws this order
    order = [i for row in straight.samples()[16:32] for i in row]
    model = mlp()
    resumed = Seen(model)
    history, _ = fit_toy(3, model=model, batch_size=8, callbacks=[resumed], resume_from=tmp_path / "last.pt")
    rows = resumed.samples()
    assert [len(r) for r in rows[:6]] == [4, 8, 8, 8, 8, 8]   # the half-done batch of 8, then whole ones
    assert [i for r in rows[:6] for i in r] == order[20:]      # exactly the 44 samples epoch 2 had not trained on
    assert sorted(i for r in rows[6:] for i in r) == list(range(64))   # epoch 3: every sample once
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3] and len(history.steps) == 21 + 6 + 8


def test_a_smaller_batch_on_resume_starts_inside_the_next_batch(tmp_path):
    model = mlp()
    fit_toy(2, model=model, batch_size=8, callbacks=[ModelCheckpoint(tmp_path), StopAt(step=11)])  # 3 batches of 8 in
    model = mlp()
    seen = Seen(model)
    history, _ = fit_toy(2, model=model, batch_size=16, callbacks=[seen], resume_from=tmp_path / "last.pt")
    assert [len(r) for r in seen.samples()] == [8, 16, 16]


@pytest.mark.parametrize("change", [dict(batch_size=16), dict(grad_accum=4)], ids=["batch_size", "grad_accum"])
def test_a_larger_step_continues_the_schedule_at_the_same_point_of_its_curve(tmp_path, change):
    fit_toy(4, scheduler="cosine", callbacks=[ModelCheckpoint(tmp_path), StopAt(epoch=2)])   # 32 of 64 steps
    straight, _ = fit_toy(4, scheduler="cosine", **change)                                     # 16 steps in all
    resumed, _ = fit_toy(4, scheduler="cosine", resume_from=tmp_path / "last.pt", **change)
    lrs = step_lrs(resumed.steps, after=32)
    assert len(lrs) == 8   # from the middle of the curve on, not from its peak:
    assert lrs == pytest.approx(step_lrs(straight.steps, after=8), rel=1e-9)
    assert lrs[0] == pytest.approx(0.05) and lrs[-1] < 0.002


def test_same_total_steps_by_coincidence_still_continues_at_the_same_fraction(tmp_path):
    fit_toy(2, scheduler="cosine", callbacks=[ModelCheckpoint(tmp_path), StopAt(epoch=1)])   # 16 of 32 steps: half
    straight, _ = fit_toy(4, batch_size=8, scheduler="cosine")                               # 32 steps too: 1/4 done
    resumed, _ = fit_toy(4, batch_size=8, scheduler="cosine", resume_from=tmp_path / "last.pt")
    assert step_lrs(resumed.steps, after=16) == pytest.approx(step_lrs(straight.steps, after=8), rel=1e-9)


def test_a_larger_batch_mid_epoch_ends_the_schedule_exactly_at_its_end(tmp_path):
    fit_toy(3, scheduler="cosine", callbacks=[ModelCheckpoint(tmp_path), StopAt(step=21)])   # 20 samples into epoch 2
    straight, _ = fit_toy(3, batch_size=8, scheduler="cosine")                               # 24 steps
    resumed, _ = fit_toy(3, batch_size=8, scheduler="cosine", resume_from=tmp_path / "last.pt")
    assert len(resumed.steps) == 21 + 6 + 8                 # epoch 2: the cut batch + 5; epoch 3: 8
    assert [r["lr"] for r in resumed.steps[21:]] == pytest.approx([r["lr"] for r in straight.steps[10:]], rel=1e-9)


def test_a_changed_batch_size_with_a_scheduler_object_is_refused(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fit_toy(2, model=model, opt=opt, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, 32),
        callbacks=[ModelCheckpoint(tmp_path)])
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"16 optimizer steps per epoch, this run 4 .*scheduler object .* by name"):
        fit_toy(4, model=model, opt=opt, batch_size=16, scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, 16),
            resume_from=tmp_path / "last.pt")


def test_an_error_from_the_data_keeps_the_history_and_a_resumable_last_pt(tmp_path):
    ftkit.seed_everything(1)
    model, data = mlp(), Flaky()     # the model as fit_toy builds it
    with pytest.raises(OSError, match="corrupt sample 5") as err:
        fit_toy(3, data=data, model=model, callbacks=[EpochOf(data), ModelCheckpoint(tmp_path),
                                                      CSVLogger(tmp_path / "log.csv")])
    history = err.value.history
    assert [r["epoch"] for r in history.epochs] == [1] and 16 <= len(history.steps) < 32
    assert "OSError: corrupt sample 5" in history.stop_reason
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["step"] == len(history.steps) and saved["resume"]["epoch"] == 2
    # nothing else is lost either: the model keeps the weights last.pt holds, epoch 1's best.pt and log row stay
    assert all(torch.equal(v, saved["model"][k]) for k, v in model.state_dict().items())
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert [r.split(",")[0] for r in (tmp_path / "log.csv").read_text().splitlines()] == ["epoch", "1"]
    data.bad_epoch = 99                                  # the sample is fixed: the resume trains on to the end
    resumed, model_b = fit_toy(3, data=data, callbacks=[EpochOf(data)], resume_from=tmp_path / "last.pt")
    ftkit.seed_everything(1)
    straight, model_a = fit_toy(3, data=data, model=mlp(), callbacks=[EpochOf(data)])   # built as the first run's
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in straight.steps], abs=1e-6)
    assert torch.allclose(weights(model_a), weights(model_b), atol=1e-6)


@pytest.mark.parametrize("where", ["model", "callback", "validation"])
def test_an_error_from_the_model_a_callback_or_validation_keeps_the_history(tmp_path, where):
    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.calls = mlp(), 0

        def forward(self, x):
            self.calls += 1
            if where == "model" and self.calls == 23:
                raise RuntimeError("model broke")
            return self.net(x)

    class BreaksAt(Callback):
        def on_batch_end(self, state):
            if where == "callback" and state.step == 22:
                raise RuntimeError("callback broke")

    class BadVal:
        def __len__(self):
            return 1

        def __iter__(self):
            if where == "validation":
                raise RuntimeError("validation broke")
            yield X[:8], Y[:8]

    model = Breaks()
    with pytest.raises(RuntimeError, match=f"{where} broke") as err:
        fit_toy(3, model=model, opt=torch.optim.SGD(model.parameters(), lr=0.1), val_loader=BadVal(),
            callbacks=[BreaksAt(), ModelCheckpoint(tmp_path)])
    history = err.value.history
    steps = {"model": 21, "callback": 22, "validation": 16}[where]   # call 23 = step 22 (one val call)
    assert len(history.steps) == steps and f"RuntimeError: {where} broke" in history.stop_reason
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["step"] == steps
    if where == "validation":   # every batch of epoch 1 trained: the resume validates and closes epoch 1
        assert saved["resume"]["epoch"] == 1 and not saved["resume"].get("complete")


def test_ctrl_c_keeps_the_history_and_last_pt(tmp_path):
    class CtrlC(Callback):
        def on_batch_end(self, state):
            if state.step == 21:
                raise KeyboardInterrupt

    history, _ = fit_toy(3, callbacks=[CtrlC(), ModelCheckpoint(tmp_path)])
    assert len(history.steps) == 21 and history.stop_reason.startswith("interrupted at epoch 2")
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 21


def test_an_error_inside_an_optimizer_step_keeps_the_last_consistent_last_pt(tmp_path):
    class BreaksInStep(Callback):
        def on_step_end(self, state):
            if state.step == 22:
                raise RuntimeError("scheduler hook broke")

    with pytest.warns(RuntimeWarning, match=r"no last\.pt for step 22: training ended inside it"):
        with pytest.raises(RuntimeError, match="scheduler hook broke") as err:
            fit_toy(3, callbacks=[BreaksInStep(), ModelCheckpoint(tmp_path)])
    assert len(err.value.history.steps) == 21
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 16     # epoch 1's, not a torn one


def test_a_crash_in_validation_resumes_to_validate_and_close_that_epoch(tmp_path):
    class BadOnce:
        broken = True

        def __len__(self):
            return 1

        def __iter__(self):
            if BadOnce.broken and self.epoch == 2:
                raise RuntimeError("validation broke")
            yield X[:8], Y[:8]

    val = BadOnce()

    class Epoch(Callback):
        def on_epoch_start(self, state):
            val.epoch = state.epoch

    with pytest.raises(RuntimeError, match="validation broke"):
        fit_toy(3, val_loader=val, callbacks=[Epoch(), ModelCheckpoint(tmp_path)])
    BadOnce.broken = False
    resumed, model_b = fit_toy(3, val_loader=val, callbacks=[Epoch()], resume_from=tmp_path / "last.pt")
    straight, model_a = fit_toy(3, val_loader=val, callbacks=[Epoch()])
    assert [r["epoch"] for r in resumed.epochs] == [1, 2, 3] and len(resumed.steps) == 48
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], abs=1e-6)
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], abs=1e-6)
    assert torch.allclose(weights(model_a), weights(model_b), atol=1e-6)


# --------------------------------------------------------------------------- other settings changed between runs
def test_other_changes_between_runs_are_refused_before_anything_changes_or_said(tmp_path):
    fit_toy(1, callbacks=[ModelCheckpoint(tmp_path)])
    model = mlp().to(torch.bfloat16)
    before = weights(model).clone()
    with pytest.raises(ValueError, match=r"holds model weights in torch\.float32 \('0\.\w+'\), the model given is "
                                         r"in torch\.bfloat16; nothing was loaded"):
        ftkit.fit(model, toy_loader(), "cross_entropy", torch.optim.SGD(model.parameters(), lr=0.1), 2,
                  resume_from=tmp_path / "last.pt", progress=False)
    assert torch.equal(weights(model), before)
    model = mlp()
    groups = [{"params": [model[0].weight]}, {"params": [model[0].bias, *model[2].parameters()]}]
    with pytest.raises(ValueError, match=r"has 1 optimizer param groups, the optimizer given has 2"):
        fit_toy(2, model=model, opt=torch.optim.SGD(groups, lr=0.1), resume_from=tmp_path / "last.pt")
    model = mlp()
    with pytest.warns(UserWarning, match=r"resuming with the checkpoint's weight_decay 0 \(the optimizer given had "
                                         r"0\.01\)"):
        fit_toy(2, model=model, opt=torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01),
            resume_from=tmp_path / "last.pt")


def test_an_old_checkpoint_with_numpy_rng_is_refused_with_the_way_to_convert_it(tmp_path):
    fit_toy(2, callbacks=[ModelCheckpoint(tmp_path), StopAt(epoch=1)])
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    ckpt["rng"]["numpy"] = np.random.get_state()          # what ftkit wrote before checkpoints became plain data
    ckpt["rng"]["python"] = __import__("random").getstate()
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"holds a pickled numpy\..*resave_trusted"):
        fit_toy(2, resume_from=tmp_path / "old.pt")
    from ftkit.train.checkpoint import resave_trusted
    resave_trusted(tmp_path / "old.pt")                    # the user wrote it: trusted once, then plain data
    history, _ = fit_toy(2, resume_from=tmp_path / "old.pt")
    assert [r["epoch"] for r in history.epochs] == [1, 2]


def test_a_changed_batch_size_mid_epoch_on_a_loader_without_batch_size_is_refused(tmp_path):
    from ftkit.data.images import TensorLoader
    images, labels = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (32,))
    tensors = lambda bs: TensorLoader(images, labels, bs, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, device="cpu")
    net = lambda: nn.Sequential(nn.Flatten(), nn.Linear(192, 10))
    model = net()
    ftkit.fit(model, tensors(4), "cross_entropy", torch.optim.SGD(model.parameters(), lr=0.1), 2, progress=False,
              callbacks=[ModelCheckpoint(tmp_path), StopAt(step=11)])
    model = net()
    before = weights(model).clone()
    with pytest.raises(ValueError, match=r"stopped mid-epoch, and the train_loader's batches changed \(8 → 4 per "
                                         r"epoch\) without a batch size and dataset length"):
        ftkit.fit(model, tensors(8), "cross_entropy", torch.optim.SGD(model.parameters(), lr=0.1), 2,
                  progress=False, resume_from=tmp_path / "last.pt")
    assert torch.equal(weights(model), before)


def test_a_resume_that_changes_the_monitored_column_starts_the_best_afresh(tmp_path):
    val = toy_loader(16, TensorDataset(X[:16], Y[:16]))
    fit_toy(3, val_loader=val, callbacks=[ModelCheckpoint(tmp_path), StopAt(epoch=1)])   # best = epoch 1's val_loss
    best_val = load_checkpoint(tmp_path / "best.pt")["best"]
    with pytest.warns(UserWarning, match=r"best score is of 'val_loss' \(min\), this run watches 'train_loss' \(min\)"):
        fit_toy(3, callbacks=[ModelCheckpoint(tmp_path)], resume_from=tmp_path / "last.pt")   # no val_loader now
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["monitor"] == "train_loss" and best["best"] != best_val and best["epoch"] >= 2


@pytest.mark.parametrize("where", ["backward", "grad_accum", "validation"])
def test_an_interrupt_inside_a_batch_leaves_last_pt_at_the_last_finished_step(tmp_path, where):
    """Ctrl-C pressed twice (a KeyboardInterrupt) in backward, on the second batch of a grad_accum pair or in
    validation: last.pt holds the last finished optimizer step — weights, buffers, RNG, step rows — so the resumed
    run equals an uninterrupted one."""
    accum = 2 if where == "grad_accum" else 1
    val = InterruptingVal(2 if where == "validation" else 0)

    class Epoch(Callback):
        def on_epoch_start(self, state):
            val.now = state.epoch

    _Boom.calls, _Boom.at = 0, {"backward": 21, "grad_accum": 20, "validation": None}[where]
    kw = dict(model=dropnet(), grad_accum=accum, val_loader=val, callbacks=[Epoch(), ModelCheckpoint(tmp_path)])
    fit_toy(3, **kw)
    saved = load_checkpoint(tmp_path / "last.pt")
    rows = {"backward": 20, "grad_accum": 18, "validation": 32}[where]   # batches of finished steps
    assert len(saved["history"]["steps"]) == rows and saved["step"] == rows // accum
    _Boom.at = None
    resumed, model_b = fit_toy(3, model=dropnet(), grad_accum=accum, val_loader=val, callbacks=[Epoch()],
                           resume_from=tmp_path / "last.pt")
    val.armed = False
    straight, model_a = fit_toy(3, model=dropnet(), grad_accum=accum, val_loader=val, callbacks=[Epoch()])
    assert len(resumed.steps) == len(straight.steps) == 48       # one row per batch, none twice
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in straight.steps], abs=1e-6)
    assert (weights(model_a) - weights(model_b)).abs().max() <= 1e-6
    assert torch.allclose(model_a.body[1].running_mean, model_b.body[1].running_mean, atol=1e-6)
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], abs=1e-6)


# --------------------------------------------------------------------------- settings changed on resume: one rule
@pytest.mark.parametrize("name", ["cosine", "linear_warmup", "one_cycle", "constant"])
@pytest.mark.parametrize("epochs", [3, 4], ids=["same_epochs", "more_epochs"])
def test_another_lr_on_resume_is_not_applied_under_any_schedule_and_is_named(tmp_path, name, epochs):
    """Saved at lr 0.1 (3 epochs), resumed with lr 0.01: the run goes on exactly as an uninterrupted lr-0.1 run
    with the resumed epochs would, and one warning names the lr — for every schedule, with or without more epochs."""
    fit_toy(3, scheduler=name, lr=0.1, callbacks=[ModelCheckpoint(tmp_path), StopAt(epoch=2)])
    with pytest.warns(UserWarning, match=r"resuming with the checkpoint's lr \(.*\) 0\.1 \(the optimizer given had "
                                         r"0\.01\).*ParamControl\.set\(lr=\.\.\.\)"):
        resumed, model_b = fit_toy(epochs, scheduler=name, lr=0.01, resume_from=tmp_path / "last.pt")
    straight, model_a = fit_toy(epochs, scheduler=name, lr=0.1)
    # after the resume point (step 32), the lr of an lr-0.1 run of `epochs` epochs (more epochs: the schedule is
    # rebuilt for the new total from the checkpoint's base lr, not the one given)
    assert [r["lr"] for r in resumed.steps[32:]] == pytest.approx([r["lr"] for r in straight.steps[32:]], rel=1e-9)
    if epochs == 3:
        assert (weights(model_a) - weights(model_b)).abs().max() <= 1e-6


def test_one_cycle_momentum_cycle_is_not_reported_as_a_change(tmp_path, recwarn):
    model = mlp()
    fit_toy(3, scheduler="one_cycle", model=model, opt=ftkit.make_optimizer("sgd", model, lr=0.1, momentum=0.9),
        callbacks=[ModelCheckpoint(tmp_path), StopAt(step=20)])
    model = mlp()
    fit_toy(3, scheduler="one_cycle", model=model, opt=ftkit.make_optimizer("sgd", model, lr=0.1, momentum=0.9),
        resume_from=tmp_path / "last.pt")
    assert not [w for w in recwarn if "resuming with" in str(w.message)]


def test_another_weight_decay_on_resume_is_named_not_counted_in_param_groups(tmp_path):
    model = mlp()
    fit_toy(2, model=model, opt=ftkit.make_optimizer("adamw", model, lr=1e-3, weight_decay=0.01),
        callbacks=[ModelCheckpoint(tmp_path)])
    model = mlp()
    with pytest.raises(ValueError, match=r"trained with weight_decay=0\.01, the optimizer given has weight_decay=0 "
                                         r".*build the optimizer with weight_decay=0\.01"):
        fit_toy(3, model=model, opt=ftkit.make_optimizer("adamw", model, lr=1e-3, weight_decay=0.0),
            resume_from=tmp_path / "last.pt")
    model = mlp()
    with pytest.warns(UserWarning, match=r"checkpoint's weight_decay 0\.01 \(the optimizer given had 0\.05\)"):
        fit_toy(3, model=model, opt=ftkit.make_optimizer("adamw", model, lr=1e-3, weight_decay=0.05),
            resume_from=tmp_path / "last.pt")


def test_the_cut_of_a_resumed_batch_is_the_samples_already_trained(tmp_path):
    """Saved after 5 batches of 4 (20 samples), resumed with batches of 8: 20 = 2 × 8 + 4, so the resumed epoch
    starts 4 samples into its third batch; on several processes (which cannot cut a batch) that is refused."""
    from types import SimpleNamespace
    from ftkit.train.resume import Resume
    fit_toy(2, callbacks=[ModelCheckpoint(tmp_path), StopAt(step=5)])
    ckpt = load_checkpoint(tmp_path / "last.pt")
    state = SimpleNamespace(max_steps=None, epochs=2, scheduler=None, lr_schedule=SimpleNamespace(spec=None))
    settings = {"batch_size": 8, "samples_per_epoch": 64, "batches_per_epoch": 8, "grad_accum": 1}
    one = Resume(state, SimpleNamespace(world=1), settings)
    assert one._plan("last.pt", ckpt) == (1, 2) and one.cut == 4
    assert one._skip({"batches": 5, "samples": 20, "settings": {"batch_size": 4}}) == (2, 4)
    with pytest.raises(ValueError, match=r"stopped after 20 samples of epoch 1, inside a batch of 8; on several "
                                         r"processes a batch cannot be cut"):
        Resume(state, SimpleNamespace(world=2), settings)._plan("last.pt", ckpt)


def test_resume_from_checkpoint_matches_a_straight_run(tmp_path):
    x, y = synthetic.blobs(n=256, num_classes=3)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)

    def run(callbacks=(), resume_from=None):
        ftkit.seed_everything(1)
        model = mlp(2, 32, 3, dropout=0.2)          # dropout + shuffling: both consume the RNG
        opt = ftkit.make_optimizer("adamw", model, lr=1e-2)
        history = ftkit.fit(model, loader, "cross_entropy", opt, 4, scheduler="cosine", callbacks=callbacks,
                            resume_from=resume_from, progress=False)
        return history, model

    class StopAfterEpoch2(Callback):
        def on_epoch_end(self, state):
            state.stop = state.epoch == 2

    straight, model_a = run()
    part, _ = run([ModelCheckpoint(tmp_path, monitor="train_loss"), StopAfterEpoch2()])
    assert len(part) == 2
    resumed, model_b = run(resume_from=tmp_path / "last.pt")
    a = torch.tensor([r["loss"] for r in straight.steps])
    b = torch.tensor([r["loss"] for r in resumed.steps])
    assert len(a) == len(b) == 4 * len(loader) and len(resumed) == 4
    assert (a - b).abs().max() <= 1e-6
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_a_schedule_re_timed_on_resume_is_said_with_both_lrs(tmp_path):
    """More epochs rebuild a named schedule for the new total: the lr jumps (cosine at step 32 of 48 → of 64:
    0.025 → 0.05), and one warning says so with both numbers; the same epochs continue exactly, without a word."""
    fit_toy(3, scheduler="cosine", lr=0.1, callbacks=[ModelCheckpoint(tmp_path), StopAt(epoch=2)])
    with pytest.warns(UserWarning, match=r"resuming with the 'cosine' schedule re-timed for 64 optimizer steps \(the "
                                         r"saved run's: 48\): .* at lr 0\.05 where the saved run would have gone on "
                                         r"at 0\.025\. To continue the saved run exactly, keep its schedule, epochs"):
        fit_toy(4, scheduler="cosine", lr=0.1, resume_from=tmp_path / "last.pt")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed, _ = fit_toy(3, scheduler="cosine", lr=0.1, resume_from=tmp_path / "last.pt")
    assert resumed.steps[32]["lr"] == pytest.approx(0.025)


def test_a_multi_process_stop_with_a_metric_that_cannot_merge_is_refused_naming_it(tmp_path):
    from types import SimpleNamespace
    from ftkit.train.resume import Resume
    fit_toy(2, callbacks=[ModelCheckpoint(tmp_path), StopAt(step=5)])
    ckpt = load_checkpoint(tmp_path / "last.pt")
    ckpt["resume"]["metric_states_unmerged"] = "pearson_corr_coef (PearsonCorrCoef): not supported"
    state = SimpleNamespace(max_steps=None, epochs=2, scheduler=None, lr_schedule=SimpleNamespace(spec=None))
    settings = {"batch_size": 4, "samples_per_epoch": 64, "batches_per_epoch": 16, "grad_accum": 1}
    with pytest.raises(ValueError, match=r"stopped inside epoch 1 on several processes, and the metric "
                                         r"pearson_corr_coef \(PearsonCorrCoef\): not supported: .* Resume from a "
                                         r"checkpoint written at an epoch end"):
        Resume(state, SimpleNamespace(world=1), settings)._plan("last.pt", ckpt)


def test_a_mid_epoch_checkpoint_of_one_process_among_several_is_refused_when_its_metrics_are_partial(tmp_path):
    """An error on process 0 ends it alone: the last.pt it writes holds its own share of the epoch's metric totals
    (the processes sum them only when they stop together). A resume would log wrong metrics: refused, saying why;
    the same point after a stop of all processes (totals summed, ``merged``) resumes."""
    from types import SimpleNamespace
    from ftkit.train.resume import Resume
    fit_toy(2, metrics=["accuracy"], callbacks=[ModelCheckpoint(tmp_path), StopAt(step=5)])
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["resume"]["settings"]["processes"] == 1 and ckpt["resume"]["metrics"][1] == {"accuracy": 20}
    ckpt["resume"]["settings"]["processes"] = 2
    state = SimpleNamespace(max_steps=None, epochs=2, scheduler=None, lr_schedule=SimpleNamespace(spec=None))
    settings = {"batch_size": 4, "samples_per_epoch": 64, "batches_per_epoch": 16, "grad_accum": 1}
    with pytest.raises(ValueError, match=r"written inside epoch 1 by process 0 of 2 after an error or interrupt that "
                                         r"ended it alone: its totals of that epoch's metrics \(accuracy\) hold only "
                                         r"process 0's share.* Resume with metrics=\[\]"):
        Resume(state, SimpleNamespace(world=1), settings)._plan("last.pt", ckpt)
    ckpt["resume"]["merged"] = True
    assert Resume(state, SimpleNamespace(world=1), settings)._plan("last.pt", ckpt) == (1, 5)
