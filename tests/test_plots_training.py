"""The training figure's legibility: event labels off the loss curve, the LR axis over a narrow range, whole-epoch
ticks, a one-epoch run's metrics written beside their point, no empty metrics panel; the dashboard's finer LR
slider and its box for an exact value."""
from __future__ import annotations

import pytest

import ftkit
from ftkit.core import History
from ftkit.plots.training import compare_runs, training_figure, update_training_figure
from ftkit.ui import TrainingDashboard


def history(epochs=2, steps_per_epoch=5, lrs=None, metrics=True, events=()):
    steps, rows, k = [], [], 0
    for e in range(1, epochs + 1):
        for _ in range(steps_per_epoch):
            k += 1
            steps.append({"epoch": e, "step": k, "loss": 1.0 / k, "lr": lrs[k - 1] if lrs else 0.1})
        rows.append({"epoch": e, "train_loss": 1.0 / k, **({"val_accuracy": 0.5 + 0.1 * e} if metrics else {})})
    return History(steps, rows, events=list(events))


def test_event_labels_sit_on_the_lr_panel_not_across_the_loss_curve():
    event = {"step": 3, "epoch": 1, "name": "lr", "old": 0.1, "new": 0.01, "source": "slider"}
    fig = training_figure(history(events=[event]), ("loss", "accuracy"))
    traces = {t.name: t for t in fig.data}
    assert traces["events"].mode == "markers" and list(traces["events"].hovertext) == ["lr 0.1 → 0.01 (slider)"]
    assert traces["events (lr)"].mode == "markers+text"


def test_lr_axis_is_linear_with_few_ticks_over_a_narrow_range_and_log_over_decades():
    narrow = training_figure(history(lrs=[2e-4 + 1e-6 * k for k in range(10)], metrics=False), ("loss",))
    assert narrow.layout.yaxis2.type == "linear" and narrow.layout.yaxis2.nticks == 4     # no panel: lr is y2
    assert narrow.layout.yaxis2.tickformat == ".3~g"
    wide = training_figure(history(lrs=[10 ** (-k / 3) for k in range(10)]), ("loss", "accuracy"))
    assert wide.layout.yaxis3.type == "log" and wide.layout.yaxis3.nticks is None
    fig = training_figure(History(), ("loss", "accuracy"))                                 # live: starts empty
    update_training_figure(fig, history(lrs=[10 ** (-k / 3) for k in range(10)]), ("loss", "accuracy"))
    assert fig.layout.yaxis3.type == "log"


def test_epoch_axis_has_whole_epochs_only():
    fig = training_figure(history(epochs=2), ("loss", "accuracy"))
    assert (fig.layout.xaxis2.tickmode, fig.layout.xaxis2.tick0, fig.layout.xaxis2.dtick) == ("linear", 1, 1)
    assert training_figure(history(epochs=30, steps_per_epoch=1), ("loss", "accuracy")).layout.xaxis2.dtick == 3
    runs = compare_runs({"a": history(epochs=2), "b": history(epochs=3)})
    assert (runs.layout.xaxis2.tick0, runs.layout.xaxis2.dtick) == (1, 1)


def test_one_epoch_metrics_are_written_and_no_metric_means_no_panel():
    one = training_figure(history(epochs=1), ("loss", "accuracy"))
    point = {t.name: t for t in one.data}["val_accuracy"]
    assert point.mode == "markers+text" and list(point.text) == ["0.6"] and list(point.y) == [0.6]
    live = training_figure(History(), ("loss", "accuracy"))
    update_training_figure(live, history(epochs=2), ("loss", "accuracy"))    # a second epoch: a line again
    line = {t.name: t for t in live.data}["val_accuracy"]
    assert line.mode == "lines+markers" and line.text is None and list(line.y) == [0.6, 0.7]
    bare = training_figure(history(epochs=1, metrics=False), ("loss",))
    assert bare.layout.meta["ftkit_metrics_panel"] is False and "xaxis3" not in bare.layout.to_plotly_json()
    assert [a.text for a in bare.layout.annotations] == ["loss", "learning rate"]   # no "epoch metrics" title
    update_training_figure(bare, history(epochs=2, metrics=False), ("loss",))       # updates work without it
    assert len({t.name: t for t in bare.data}["loss (step)"].y) == 10


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
