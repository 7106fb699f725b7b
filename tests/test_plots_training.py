"""ftkit.plots.training: the training figure's legibility (event labels off the loss curve, the LR axis, whole-epoch
ticks, one-epoch metrics, no empty panel), event markers, smoothing and the runs-compared figure."""


from __future__ import annotations

import pytest

import ftkit
from ftkit.core import History
from ftkit.plots.training import compare_runs, training_figure, update_training_figure
from ftkit.train.callbacks import Callback

from conftest import mlp


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
