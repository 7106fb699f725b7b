"""fit/evaluate/predict: learning, resume, faults, events and the callbacks that ship with the loop."""
from __future__ import annotations

import json
import math
import os
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
from ftkit.train.callbacks import Callback, EarlyStopping, LRMonitor, ModelCheckpoint, ParamControl
from ftkit.train.loggers import CSVLogger, TensorBoardLogger
from ftkit.ui import LivePlot
from ftkit.data import synthetic
from ftkit.train import NonFiniteLossWarning, load_checkpoint, save_checkpoint
from conftest import At, mlp


def test_fit_learns_blobs_above_chance_and_records_history(blobs):
    train, val = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("adam", model, lr=1e-2), epochs=4,
                        val_loader=val, metrics=["accuracy"], progress=False)
    assert len(history) == 4 and len(history.steps) == 4 * len(train)
    assert history["val_accuracy"][-1] > 0.9  # chance is 1/3
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert [r["step"] for r in history.steps] == list(range(1, 4 * len(train) + 1))
    assert ftkit.evaluate(model, val, "cross_entropy", ["accuracy"])["accuracy"] == pytest.approx(
        history["val_accuracy"][-1])


def test_history_round_trips_through_json_csv_and_frame(blobs, tmp_path):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=2,
                        progress=False)
    history.to_json(tmp_path / "h.json")
    again = ftkit.History.from_json(tmp_path / "h.json")
    assert again.epochs == history.epochs and again.steps == history.steps
    history.to_csv(tmp_path / "steps.csv", which="step")
    assert len((tmp_path / "steps.csv").read_text().strip().splitlines()) == len(history.steps) + 1
    frame = history.to_frame()
    assert list(frame["epoch"]) == [1, 2] and frame["train_loss"].notna().all()


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


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_finite_weights(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    opt = ftkit.make_optimizer("sgd", model, lr=1e12)
    with pytest.warns(NonFiniteLossWarning, match=r"non-finite loss .* at epoch 1, step \d+"):
        history = ftkit.fit(model, train, "cross_entropy", opt, epochs=3, progress=False)
    assert history.stop_reason.startswith("non-finite loss")
    assert len(history.epochs) == 0 and all(math.isfinite(r["loss"]) for r in history.steps)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_keyboard_interrupt_mid_epoch_keeps_model_history_and_writes_last(blobs, tmp_path):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    ended = []

    class Ended(Callback):
        def on_fit_end(self, state):
            ended.append(state.stop_reason)

    def interrupt(state):
        raise KeyboardInterrupt

    ckpt = ModelCheckpoint(tmp_path)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=3,
                        callbacks=[At(5, interrupt), Ended(), ckpt], progress=False)
    assert len(history.steps) == 5 and "interrupted at epoch 1, step 5" in history.stop_reason
    assert ended == [history.stop_reason]
    saved = load_checkpoint(ckpt.last_path, model=mlp(2, 32, 3, dropout=0.0))
    assert saved["step"] == 5 and len(saved["history"]["steps"]) == 5


def test_state_stop_mid_epoch_ends_after_that_batch(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=3,
                        callbacks=[At(3, lambda s: setattr(s, "stop", True))], progress=False)
    assert len(history.steps) == 3
    [row] = history.epochs                  # the stopped epoch, recorded as such (issue 35: Stop keeps notebooks running)
    assert (row["epoch"], row["partial"], row["batches"]) == (1, True, 3)


def test_bad_inputs_give_one_clear_error_each():
    model = mlp(2, 32, 3, dropout=0.0)
    opt = ftkit.make_optimizer("sgd", model, lr=0.1)
    with pytest.raises(ValueError, match="train_loader is empty"):
        ftkit.fit(model, DataLoader(TensorDataset(torch.randn(0, 2), torch.zeros(0).long())), "cross_entropy", opt)
    x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
    with pytest.raises(ValueError, match=r"model output \(shape \(8, 3\).*label \d is outside \[0, 2\]"):
        ftkit.fit(model, DataLoader(TensorDataset(x, y + 5), batch_size=8), "cross_entropy", opt, progress=False)
    with pytest.raises(TypeError, match=r"integer class labels .* targets.long\(\)"):
        ftkit.fit(model, DataLoader(TensorDataset(x, y.float()), batch_size=8), "cross_entropy", opt, progress=False)
    with pytest.raises(ValueError, match=r"prediction shape \(8, 3\) differs from target shape \(8,\)"):
        ftkit.fit(model, DataLoader(TensorDataset(x, y.float()), batch_size=8), "mse", opt, progress=False)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        ftkit.fit(model, [(x, y)], "cross_entropy", opt, epochs=0)
    with pytest.raises(ValueError, match="batch must be \\(inputs, targets\\)"):
        ftkit.fit(model, [x], "cross_entropy", opt, progress=False)


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


def test_early_stopping_stops_on_patience_and_restores_best(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    fake = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    kept = {}

    class FakeVal(Callback):
        def on_epoch_end(self, state):
            state.logs["val_loss"] = next(fake)
            if state.epoch == 2:
                kept.update({k: v.clone() for k, v in state.model.state_dict().items()})

    stopper = EarlyStopping(patience=2)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=6,
                        callbacks=[FakeVal(), stopper], progress=False)
    assert len(history) == 4 and "did not improve for 2 epochs (best 0.5 at epoch 2)" in history.stop_reason
    assert all(torch.equal(v, kept[k]) for k, v in model.state_dict().items())
    with pytest.raises(KeyError, match="pass val_loader= to fit"):
        ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1),
                  callbacks=[EarlyStopping("val_accuracy")], progress=False)


def test_param_control_sets_lr_at_next_step_and_overrides_the_scheduler(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    control = ParamControl()
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=2,
                        scheduler="cosine", callbacks=[At(4, lambda s: control.set(lr=0.0123)), control],
                        progress=False)
    lrs = [r["lr"] for r in history.steps]
    assert lrs[0] == pytest.approx(0.1) and lrs[3] < 0.1           # the cosine schedule drove steps 1-4
    assert all(lr == pytest.approx(0.0123) for lr in lrs[4:])      # from step 5 on the hand wins
    assert control.applied == [{"step": 4, "lr": 0.0123}]
    with pytest.raises(ValueError, match="lr must be finite, got nan"):
        control.set(lr=float("nan"))
    with pytest.raises(ValueError, match="lr must be >= 0, got -1"):
        control.set(lr=-1)


def test_grad_accum_equals_a_bigger_batch():
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    def run(batch_size, accum):
        ftkit.seed_everything(3)
        model = mlp(2, 32, 2, dropout=0.0)
        ftkit.fit(model, DataLoader(TensorDataset(x, y), batch_size=batch_size), "cross_entropy",
                  ftkit.make_optimizer("sgd", model, lr=0.5), epochs=2, grad_accum=accum, progress=False)
        return torch.cat([p.flatten() for p in model.parameters()])
    assert torch.allclose(run(32, 1), run(16, 2), atol=1e-6)


def test_grad_clip_bounds_the_update():
    x, y = torch.randn(32, 2) * 100, torch.randint(0, 2, (32,))
    model = mlp(2, 32, 2, dropout=0.0)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    ftkit.fit(model, [(x, y)], "cross_entropy", ftkit.make_optimizer("sgd", model, lr=1.0), grad_clip=0.01,
              progress=False)
    after = torch.cat([p.detach().cpu().flatten() for p in model.parameters()])
    assert (after - before).norm() <= 0.01 + 1e-6


def test_loggers_write_tensorboard_events_csv_and_lr_columns(blobs, tmp_path):
    train, val = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("adamw", model, lr=1e-2,
                                                                            weight_decay=0.1),
                        epochs=2, val_loader=val, progress=False,
                        callbacks=[TensorBoardLogger(tmp_path / "tb", every=5), CSVLogger(tmp_path / "log.csv"),
                                   LRMonitor()])
    (run,) = os.listdir(tmp_path / "tb")                      # one folder per fit: <date>_<time>_ftkit
    assert run.endswith("_ftkit") and any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb" / run))
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss") and len(rows) == 3
    assert {"lr_0", "lr_1"} <= set(history.steps[0]) and {"lr_0", "lr_1"} <= set(history.epochs[0])


def test_live_plot_without_a_frontend_draws_one_static_figure_at_the_end(blobs):
    train, _ = blobs
    model = mlp(2, 32, 3, dropout=0.0)
    plot = LivePlot()
    history = ftkit.fit(model, train, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), epochs=2,
                        metrics=["accuracy"], callbacks=[plot], progress=False)
    assert plot.fig is None  # no IPython kernel here
    from ftkit.plots import training_figure
    fig = training_figure(history)
    names = [t.name for t in fig.data]
    assert names[:2] == ["loss (step)", "train_loss"] and "train_accuracy" in names
    assert len(fig.data[0].y) == len(history.steps)
    per_epoch = len(history.steps) // 2   # epoch losses sit at each epoch's last step on the step axis
    assert list(fig.data[1].x) == [history.steps[per_epoch - 1]["step"], history.steps[-1]["step"]]


def test_metrics_accuracy_and_top_k_against_hand_counts():
    from ftkit.metrics import MetricTracker, accuracy, top_k
    out = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 2.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 1, 1, -100])
    correct, count = accuracy(out, y)
    assert (int(correct), int(count)) == (2, 3)
    top2, n = top_k(2)(out, torch.tensor([2, 1, 0, 0]))
    assert (int(top2), int(n)) == (2, 4)   # rows 2 and 3 have their label in the top 2
    tracker = MetricTracker(["accuracy"])
    tracker.update(out[:2], y[:2])
    tracker.update(out[2:], y[2:])
    assert tracker.compute("val_") == {"val_accuracy": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match="unknown metric 'f1'; choose one of: acc, accuracy"):
        MetricTracker(["f1"])


def test_accuracy_reads_classes_from_the_right_axis_for_sequences_and_images():
    from ftkit.metrics import accuracy
    tokens = torch.zeros(1, 4, 3)                       # (B, T, C) token logits, as HF returns them
    tokens[0, torch.arange(4), torch.tensor([2, 0, 1, 1])] = 1
    correct, count = accuracy(tokens, torch.tensor([[2, 0, 0, -100]]))
    assert (int(correct), int(count)) == (2, 3)
    pixels = tokens.permute(0, 2, 1).unsqueeze(-1)      # (N, C, H, W) with (N, H, W) labels
    correct, count = accuracy(pixels, torch.tensor([[[2], [0], [0], [1]]]))
    assert (int(correct), int(count)) == (3, 4)


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


def test_train_module_imports_no_widgets_or_plotly():
    code = "import sys, ftkit.train, ftkit.train.callbacks; print(json.dumps(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('plotly', 'ipywidgets'))))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
