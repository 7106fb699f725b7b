"""ftkit.ui.dashboard: the training dashboard's controls (LR slider, Pause, Stop, LR finder) driven from Python."""
from __future__ import annotations

import time

import pytest
from traitlets import TraitError

import ftkit
from ftkit.ui import fit_live, TrainingDashboard

from conftest import drive, mlp, Pace


def test_slider_from_another_thread_sets_lr_at_next_step_then_stop_ends_early(train_loader):
    def opt(model):
        return ftkit.make_optimizer("sgd", model, lr=0.1)
    epochs, total = 4, 4 * len(train_loader)
    ftkit.seed_everything(0)
    model = mlp(2, 32, 3)
    schedule = [r["lr"] for r in ftkit.fit(model, train_loader, "cross_entropy", opt(model), epochs,
                                           scheduler="cosine", progress=False).steps]
    ftkit.seed_everything(0)
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(every_ms=0)
    control = dash.control
    followed = []
    driver = drive([
        (lambda: dash.progress.value >= 10, lambda: (followed.append(dash.slider.value),
                                                     setattr(dash.slider, "value", 3e-3))),
        (lambda: control.applied, lambda: dash.stop_button.click()),
    ])
    history = fit_live(model, train_loader, "cross_entropy", opt(model), epochs, dashboard=dash, scheduler="cosine",
                       callbacks=[Pace()])
    driver.join()
    [applied] = control.applied
    k = applied["step"]
    lrs = [r["lr"] for r in history.steps]
    assert applied["lr"] == 3e-3 and k >= 10
    assert lrs[:k] == pytest.approx(schedule[:k])                # the cosine schedule drove steps 1..k
    assert lrs[k:] == pytest.approx([3e-3] * (len(lrs) - k))      # the hand value from step k+1 on
    assert followed[0] == pytest.approx(schedule[9], rel=0.03)    # before the move the slider showed the schedule
    assert len(lrs) < total and history.stop_reason.startswith("stopped by request at epoch")
    assert "stopped by request" in dash.readout.value and f"set by hand: 0.003 at step {k}" in dash.readout.value
    assert dash.slider.disabled and dash.stop_button.disabled     # nothing to control after the end


def test_stop_twice_then_the_same_dashboard_trains_again_to_the_end(train_loader):
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(every_ms=0)
    drive([(lambda: dash.progress.value >= 5, lambda: (dash.stop_button.click(), dash.stop_button.click()))])
    first = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 3,
                     dashboard=dash, callbacks=[Pace()])
    assert 5 <= len(first.steps) < 3 * len(train_loader) and "stopped by request" in first.stop_reason
    second = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                      dashboard=dash)
    assert len(second.steps) == 2 * len(train_loader) and second.stop_reason is None   # the stop was not carried over
    assert "finished" in dash.readout.value and dash.progress.value == dash.progress.max == 2 * len(train_loader)


def test_controls_used_before_or_after_training_apply_cleanly(train_loader):
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(lr_range=(1e-4, 0.5))
    dash.stop_button.click()                      # Stop before training: it ends at the first batch, history kept
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                       dashboard=dash)
    assert history.steps == [] and history.stop_reason == "stopped by request at epoch 1, step 0"
    dash.slider.value = 50.0                      # after training, out of range: clamped, kept for the next fit
    assert dash.slider.value == pytest.approx(0.5)
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1,
                       dashboard=dash, scheduler="cosine")
    assert [r["lr"] for r in history.steps] == [0.5] * len(train_loader)   # the hand value wins from step 1


def test_bad_slider_values_and_ranges_get_one_clear_error():
    dash = TrainingDashboard()
    dash.slider.value = 1e-9
    assert dash.slider.value == pytest.approx(1e-6)   # clamped to the low end
    with pytest.raises(TraitError, match=r"the lr slider needs a finite number > 0, got nan; pick a value in "
                                         r"\[1e-06, 1\]"):
        dash.slider.value = float("nan")
    for bad in (0.0, -0.1, float("inf")):
        with pytest.raises(TraitError, match=f"finite number > 0, got {bad}"):
            dash.slider.value = bad
    assert "finite number &gt; 0, got inf" in dash.message.value            # also shown on the dashboard
    assert dash.control._pending == {} and dash.slider.value == pytest.approx(1e-6)
    with pytest.raises(ValueError, match=r"lr_range must be \(low, high\) with low < high, got \(0.1, 0.01\)"):
        TrainingDashboard(lr_range=(0.1, 0.01))
    with pytest.raises(ValueError, match=r"lr_range\[0\] must be > 0, got 0"):
        TrainingDashboard(lr_range=(0, 1))


def test_optimizer_lr_outside_the_range_widens_the_slider(train_loader):
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(lr_range=(1e-4, 1e-2))
    history = ftkit.fit(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.3), 1,
                        callbacks=[dash], progress=False)
    assert (dash.slider.min, dash.slider.max) == (-4, 0)          # up to the decade holding 0.3
    assert dash.slider.value == pytest.approx(0.3) and history.steps[-1]["lr"] == pytest.approx(0.3)


def test_pause_holds_the_step_counter_and_resume_runs_to_the_end(train_loader):
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(every_ms=0)
    seen = {}

    def hold():
        dash.pause_button.click()                               # Pause: the training waits before its next step
        time.sleep(0.05)
        seen["paused"] = len(dash._state.history.steps)
        time.sleep(0.3)
        seen["later"] = len(dash._state.history.steps)
        seen["readout"] = dash.readout.value
        dash.slider.value = 0.02                                # a move during the pause applies at once
        dash.pause_button.click()                               # Resume
    driver = drive([(lambda: dash.progress.value >= 5, hold)])
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                       dashboard=dash, callbacks=[Pace()])
    driver.join()
    assert seen["paused"] == seen["later"] >= 5 and f"paused before step {seen['paused'] + 1}" in seen["readout"]
    assert len(history.steps) == 2 * len(train_loader) and history.stop_reason is None
    [event] = history.events
    assert (event["step"], event["new"], event["source"]) == (seen["paused"], 0.02, "slider")
    assert dash.pause_button.description == "Pause"


def test_stop_while_paused_ends_training_and_stop_after_the_end_does_not_carry_over(train_loader):
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(every_ms=0)
    drive([(lambda: dash.progress.value >= 3, dash.pause),
           (lambda: dash.paused, lambda: (time.sleep(0.1), dash.stop()))])
    first = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                     dashboard=dash, callbacks=[Pace()])
    assert 3 <= len(first.steps) < 2 * len(train_loader) and "stopped by request" in first.stop_reason
    dash.stop()                                                   # pressed after the end: nothing to stop
    assert "no training is running: Stop ignored" in dash.message.value
    second = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1,
                      dashboard=dash)
    assert len(second.steps) == len(train_loader) and second.stop_reason is None


def test_lr_finder_button_mid_training_leaves_the_training_undisturbed(train_loader):
    def train(dash=None, find_at=None):
        ftkit.seed_everything(0)
        model = mlp(2, 32, 3)
        dash = dash or TrainingDashboard(every_ms=0)
        if find_at:
            drive([(lambda: dash.progress.value >= find_at, dash.lr_find_button.click)])
        return fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("adam", model, lr=1e-3), 2,
                        dashboard=dash, callbacks=[Pace()]), dash
    plain, _ = train()
    dash = TrainingDashboard(every_ms=0, lr_find_steps=30)
    dash.find_lr()                                               # before any training: says what it needs
    assert "needs a running or paused training" in dash.message.value
    found, dash = train(dash, find_at=6)
    result = dash.lr_find_result
    assert result is not None and len(result.lrs) > 10 and "LR finder: suggested lr" in dash.message.value
    assert [r["loss"] for r in found.steps] == [r["loss"] for r in plain.steps]   # bit for bit
    assert found.events == []                                    # the finder is no manual change of the run


def test_lr_slider_spans_the_schedules_peak_not_its_warm_up_start(train_loader):
    """One-cycle starts at max_lr/25: a range around that start ended at 0.4·max_lr, so the slider showed the
    schedule's peak clamped and a drag could not reach it."""
    model = mlp(2, 32, 3)
    dash, shown = TrainingDashboard(every_ms=0), []

    class Watch(ftkit.Callback):
        def on_step_end(self, state):
            shown.append((dash.slider.value, state.optimizer.param_groups[0]["lr"]))
    history = ftkit.fit(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.3), 3,
                        scheduler="one_cycle", callbacks=[dash, Watch()], progress=False)
    assert history.steps[0]["lr"] == pytest.approx(0.3 / 25, rel=0.01)
    assert (dash.slider.min, dash.slider.max) == pytest.approx((-3.523, 0.477), abs=1e-3)   # 3e-4 … 3
    peak = max(lr for _, lr in shown)
    assert peak == pytest.approx(0.3, rel=0.01)
    assert [s for s, lr in shown if lr == peak][0] == pytest.approx(peak, rel=0.01)   # the peak shown, unclamped


def test_lr_slider_spans_four_decades_around_the_lr_and_the_box_sets_an_exact_value(monkeypatch):
    from ftkit.data import synthetic
    from torch import nn
    x, y = synthetic.blobs(n=64, num_classes=3)
    loader = synthetic.make_loaders(x, y, batch_size=32)[0]
    model = nn.Sequential(nn.Linear(2, 3))
    dash = TrainingDashboard()
    ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.03), 1, callbacks=[dash],
              progress=False)
    assert (dash.slider.min, dash.slider.max) == pytest.approx((-4.523, -0.523), abs=1e-3)   # 3e-5 … 0.3
    assert dash.slider.step == 0.001 and dash.slider.value == pytest.approx(0.03)
    assert dash.lr_box.value == pytest.approx(0.03)                       # the box shows the slider's lr
    dash.lr_box.value = 0.0123                                            # typed: exactly this lr
    assert dash.slider.value == pytest.approx(0.0123) and dash.control._pending == {"lr": pytest.approx(0.0123)}
    dash.lr_box.value = -1.0                                              # refused, named, the box goes back
    assert "finite number &gt; 0, got -1.0" in dash.message.value and dash.lr_box.value == pytest.approx(0.0123)
    dash.lr_box.value = 50.0                                              # clamped to the end, shown as applied
    assert dash.lr_box.value == pytest.approx(0.3, rel=1e-3)
