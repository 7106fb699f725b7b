"""The training dashboard driven from Python: slider and Stop from another thread while fit runs, bad input,
reuse before/after training, and a papermill run (a kernel with no frontend) that must not wait on a UI."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from traitlets import TraitError

import ftkit
from ftkit.train.callbacks import Callback
import ftkit.ui.run
import ftkit.ui
from ftkit.ui import TrainingDashboard, fit_live, fit_live_async
from conftest import Pace, drive, mlp

ASSETS = Path(__file__).parent / "assets"


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


def test_fit_live_async_serves_the_controls_and_returns_the_history(train_loader):
    """``await fit_live_async(...)``: the same controls, fit in a worker thread while the caller awaits."""
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(every_ms=0)
    drive([(lambda: dash.progress.value >= 8, lambda: setattr(dash.slider, "value", 0.02)),
           (lambda: dash.control.applied, dash.stop)])
    history = asyncio.run(fit_live_async(model, train_loader, "cross_entropy",
                                         ftkit.make_optimizer("sgd", model, lr=0.1), 50, dashboard=dash,
                                         callbacks=[Pace()]))
    lrs = [r["lr"] for r in history.steps]
    k = lrs.index(0.02)
    assert k >= 8 and set(lrs[:k]) == {0.1} and set(lrs[k:]) == {0.02}
    assert len(lrs) < 50 * len(train_loader) and history.stop_reason.startswith("stopped by request")


def test_live_plot_draws_loss_and_every_fit_metric(train_loader, monkeypatch):
    """fit_live's LivePlot plots ('loss', *metric names): a custom metric such as NER's f1 gets its curve."""
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))

    def f1(outputs, targets):   # stands in for ftkit.nlp.ner.entity_f1's metric of the same name
        return (outputs.argmax(-1) == targets).float().mean()
    model = mlp(2, 32, 3)
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                       metrics=["accuracy", f1], progress=False)
    [fig] = shown
    curves = {t.name: list(t.y) for t in fig.data}
    assert set(curves) == {"loss (step)", "train_loss", "val_loss", "lr", "events", "events (lr)", "train_accuracy",
                           "train_f1"}
    assert curves["train_f1"] == pytest.approx(history["train_f1"]) and len(curves["train_f1"]) == 2


def test_sync_fit_live_on_ipykernel_7_warns_and_still_trains(train_loader, monkeypatch):
    """ipykernel 7 has no ``do_one_iteration``: a blocking cell cannot serve widgets, so fit_live says so."""
    dash = TrainingDashboard()                                         # built outside a kernel: no plotly widget
    monkeypatch.setattr(ftkit.ui.run, "ipython_kernel", lambda: object())   # a kernel without do_one_iteration
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: type("H", (), {"update": lambda s, o: None})())
    model = mlp(2, 32, 3)
    with pytest.warns(UserWarning, match=r"ipykernel >= 7\) handles widget messages only while a cell awaits.*"
                                         r"history = await fit_live_async"):
        history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1,
                           dashboard=dash)
    assert len(history.steps) == len(train_loader) and history.stop_reason is None and "finished" in dash.readout.value


@pytest.mark.notebook
def test_papermill_kernel_without_frontend_trains_to_the_end(tmp_path):
    """dashboard="auto" (the default) under papermill: the probe gets no answer from a widget front-end, so the
    run draws the static plot, finishes on its own, and the saved notebook keeps the figure."""
    import nbformat
    import papermill as pm
    out = tmp_path / "dashboard_training.ipynb"
    pm.execute_notebook(str(ASSETS / "dashboard_training.ipynb"), str(out), kernel_name="python3", cwd=str(tmp_path),
                        parameters={"epochs": 2, "n": 320, "output_dir": str(tmp_path)}, progress_bar=False)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["steps"]) == 2 * 16 and history["stop_reason"] is None   # 256 train images / 16 per batch
    assert history["epochs"][-1]["val_accuracy"] > 0.8                          # chance is 1/3
    outputs = nbformat.read(out, 4).cells[-1].outputs
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)   # one line
    assert text.count("ftkit ui: no widget front-end answered within 2.0 s") == 1 and "→ static plot" in text


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


def test_figure_marks_events_on_loss_and_lr_panels_with_smoothing_and_log_toggle(train_loader):
    from ftkit.metrics import ema
    from ftkit.plots import training_figure
    model = mlp(2, 32, 3)
    control = ftkit.train.callbacks.ParamControl(source="slider")

    class MoveAt(Callback):
        def on_batch_end(self, state):
            if state.step == 5:
                control.set(lr=0.01)
    history = ftkit.fit(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1,
                        callbacks=[MoveAt(), control], progress=False)
    fig = training_figure(history, ("loss",), smooth=0.9, log_loss=True)
    traces = {t.name: t for t in fig.data}
    for name in ("events", "events (lr)"):
        assert list(traces[name].x) == [5] and list(traces[name].text) == ["lr 0.1 → 0.01 (slider)"]
    assert list(traces["events (lr)"].y) == [0.01] and traces["events"].y[0] == history.steps[5]["loss"]
    assert list(traces["lr"].y) == [0.1] * 5 + [0.01] * (len(train_loader) - 5)
    assert list(traces["loss (EMA 0.9)"].y) == pytest.approx(ema([r["loss"] for r in history.steps], 0.9))
    assert traces["loss (EMA 0.9)"].y[0] == pytest.approx(history.steps[0]["loss"])   # debiased: starts at x_1
    assert fig.layout.yaxis.type == "log" and [b.label for b in fig.layout.updatemenus[0].buttons] == ["linear", "log"]
    with pytest.raises(ValueError, match=r"smoothing beta must be in \[0, 1\), got 1"):
        ema([1.0], 1)


def test_compare_runs_overlays_runs_with_their_parameters_in_the_legend(train_loader):
    from ftkit.plots import compare_runs
    runs = {}
    for lr in (0.3, 0.01):
        model = mlp(2, 32, 3)
        runs[f"sgd {lr}"] = (ftkit.fit(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=lr),
                                       2, metrics=["accuracy"], progress=False), {"lr": lr})
    fig = compare_runs(runs, smooth=0.5)
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["sgd 0.3 (lr=0.3): loss", "sgd 0.3: train_accuracy", "sgd 0.01 (lr=0.01): loss",
                     "sgd 0.01: train_accuracy"]
    curves = {t.name: list(t.y) for t in fig.data}
    assert curves["sgd 0.3: train_accuracy"] == pytest.approx(runs["sgd 0.3"][0]["train_accuracy"])
    assert curves["sgd 0.3: train_accuracy"][-1] > curves["sgd 0.01: train_accuracy"][-1]   # the bigger lr learns faster
    # runs that agree stay visible: the first wide and pale under the later ones; train open, validation filled
    first, second = fig.data[0], fig.data[2]
    assert first.line.width > second.line.width and first.opacity < second.opacity
    assert fig.data[1].marker.symbol == "circle-open" and fig.data[1].line.dash == "dash"
    with pytest.raises(TypeError, match=r"run 'x' is a list, not a History"):
        compare_runs({"x": []})
    with pytest.raises(ValueError, match="compare_runs needs at least one run"):
        compare_runs({})


def test_probe_line_and_a_bad_dashboard_choice(train_loader, monkeypatch):
    from ftkit.ui.live import Frontend
    monkeypatch.delenv("FTKIT_LIVE_FIGURE", raising=False)
    colab = Frontend(kernel=True, anywidget="0.9.21", colab=True, widgets=True, seconds=0.0)
    assert colab.interactive and colab.figure == "static"
    assert colab.line() == ("ftkit ui: Colab renders core widgets · Colab yes → interactive dashboard, live figure: "
                            "static (plain plotly figure updated in place; no plotly widget JavaScript)")
    lab = Frontend(kernel=True, anywidget="0.11.0", colab=False, widgets=True, seconds=0.04, figure_widget=True)
    assert lab.interactive and lab.figure == "widget"
    assert lab.line() == ("ftkit ui: widgets answered in 0.04 s · Colab no → interactive dashboard, live figure: "
                          "widget (FigureWidget; plotly widget answered)")
    classic = Frontend(kernel=True, anywidget=None, colab=False, widgets=True, seconds=0.3)
    assert classic.line().endswith("live figure: static (plain plotly figure updated in place; no plotly widget "
                                   "JavaScript (anywidget missing))")
    papermill = Frontend(kernel=True, anywidget="0.11.0", colab=False, widgets=False, seconds=2.0)
    assert not papermill.interactive and papermill.line() == (
        "ftkit ui: no widget front-end answered within 2.0 s (papermill, a closed tab, or widgets off) · Colab no "
        "→ static plot")
    monkeypatch.setenv("FTKIT_LIVE_FIGURE", "static")       # forced: the classic-Notebook browser test sets it
    assert lab.figure == "static" and lab.line().endswith("static (plain plotly figure updated in place; "
                                                          "FTKIT_LIVE_FIGURE=static)")
    monkeypatch.setenv("FTKIT_LIVE_FIGURE", "Widget ")
    assert colab.figure == "widget"
    monkeypatch.setenv("FTKIT_LIVE_FIGURE", "figurewidget")
    with pytest.raises(ValueError, match=r"FTKIT_LIVE_FIGURE='figurewidget' is not a live-figure path; set it to "
                                         r"'static' \(a plain plotly figure updated through a display handle\) or "
                                         r"'widget'"):
        colab.figure
    model = mlp(2, 32, 3)
    with pytest.raises(ValueError, match=r"dashboard must be 'auto' \(the dashboard where a widget front-end "
                                         r"answers, else a plot\), True, False or a TrainingDashboard; got 'yes'"):
        fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), dashboard="yes")
