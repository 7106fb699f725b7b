"""The live figure's two paths (FigureWidget; a plain plotly figure replaced through its display handle), the
pacing of the static path (its sends take at most 1/40 of the time), the probe's core-widget round trip and
the kernel module, driven from Python with a fake kernel and fake display handles."""
from __future__ import annotations

import threading
import time

import pytest

import ftkit
import ftkit.env
import ftkit.ui.dashboard
import ftkit.ui.live
import ftkit.ui.run
from ftkit.plots.training import training_figure
from ftkit.ui import fit_live, LivePlot, TrainingDashboard
from ftkit.ui.live import LiveFigure

from conftest import mlp, Pace


PLOTLY = "application/vnd.plotly.v1+json"


class Handle:
    """A display handle that records what was sent, from which thread, and can take time to send it."""

    def __init__(self, log, obj, cost=0.0):
        self.log, self.cost = log, cost
        self.sent = [(obj, threading.get_ident())]
        log.append(self)

    def update(self, obj, raw=False):
        time.sleep(self.cost)
        self.sent.append((obj, threading.get_ident()))


@pytest.fixture
def fake_kernel(monkeypatch):
    """A kernel that polls (ipykernel 6 / Colab) with no front-end: ``display`` returns recording handles."""
    import contextlib
    import IPython.display
    handles = []

    class Kernel:
        def do_one_iteration(self):
            pass
    kernel = Kernel()
    for module in (ftkit.ui.live, ftkit.ui.dashboard, ftkit.ui.run):
        monkeypatch.setattr(module, "ipython_kernel", lambda: kernel)
    monkeypatch.setattr(ftkit.ui.run, "ui_events", lambda: contextlib.nullcontext(lambda n: None))
    monkeypatch.setattr(IPython.display, "display",
                        lambda obj, raw=False, display_id=None, **kw: Handle(handles, obj) if display_id else None)
    monkeypatch.delenv("FTKIT_LIVE_FIGURE", raising=False)
    return handles


def test_static_path_updates_the_figure_in_place_from_the_cells_thread_only(fake_kernel, monkeypatch,
                                                                           train_loader):
    """FTKIT_LIVE_FIGURE unset, probe said 'static' (Colab without plotly's widget JS): the controls are core
    widgets, the plot a plain figure whose display handle gets the new figure while training runs — every send
    from the cell's thread — and the final figure holds every step."""
    monkeypatch.setattr(ftkit.ui.live, "_cached", None)
    monkeypatch.setenv("FTKIT_LIVE_FIGURE", "static")
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(every_ms=0)
    cell = threading.get_ident()
    stopper = threading.Thread(target=lambda: (time.sleep(0.15), dash.pause(), time.sleep(0.1), dash.resume()))
    stopper.start()
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 3,
                       dashboard=dash, callbacks=[Pace(0.006)])
    stopper.join()
    assert dash.view.path == "static" and dash.view.widget is None and dash.figure_box.children == ()
    controls, figure = fake_kernel     # fit_live showed the controls, then the figure below them
    sends = [sent for sent in figure.sent[1:] if PLOTLY in sent[0]]   # (JupyterLab's plain-text step between)
    assert len(sends) >= 2 and {thread for _, thread in figure.sent} == {cell}   # live, and only from the cell
    final = sends[-1][0][PLOTLY]
    steps = {t["name"]: t for t in final["data"]}["loss (step)"]
    assert len(steps["x"]) == len(history.steps) == 3 * 16
    mid = sends[0][0][PLOTLY]
    assert len({t["name"]: t for t in mid["data"]}["loss (step)"]["x"]) < 48   # an update made while training


def test_static_path_sends_take_at_most_a_fortieth_of_the_time():
    """Display updates that cost 20 ms each (two per figure here: the plain-text step JupyterLab needs, then the
    figure) are made at most every 1.6 s, however often the training asks."""
    log = []
    view = LiveFigure(training_figure(ftkit.History()), every_ms=0, live=True, path="static")
    view.handle = Handle(log, None, cost=0.02)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        view.update(lambda fig: fig.update_layout(title_text=f"{time.perf_counter():.3f}"))
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    sent = sum(PLOTLY in obj for obj, _ in view.handle.sent[1:])
    assert 1 <= sent <= 2, sent                               # unpaced it would be ~40 sends
    spent = 0.02 * (len(view.handle.sent) - 1)                # every update costs 20 ms
    assert spent <= 0.025 * elapsed + 0.04                    # sending: ≤ 2.5 % of the time (+ the first send)
    assert view.pushes == sent


def test_widget_path_and_forcing_the_path_from_the_environment(monkeypatch):
    monkeypatch.setattr(ftkit.ui.live, "ipython_kernel", lambda: object())
    monkeypatch.setattr(ftkit.ui.live, "_cached", None)
    monkeypatch.delenv("FTKIT_LIVE_FIGURE", raising=False)
    figure = training_figure(ftkit.History())
    assert LiveFigure(figure).path == "widget" and LiveFigure(figure).widget is not None   # not probed: as before
    monkeypatch.setenv("FTKIT_LIVE_FIGURE", "static")
    view = LiveFigure(figure)
    assert view.path == "static" and view.widget is None and view.figure is figure
    assert LiveFigure(figure, live=False).path is None                                    # papermill: nothing live
    monkeypatch.setenv("FTKIT_LIVE_FIGURE", "fast")
    with pytest.raises(ValueError, match=r"FTKIT_LIVE_FIGURE='fast' is not a live-figure path"):
        LiveFigure(figure)


def test_probe_counts_a_core_widget_view_and_cleans_up(monkeypatch):
    """The core-widget question: a hidden ipywidgets.HTML with ``_view_count = 0``; a front-end that shows it sends
    the count back (here a thread plays the front-end). No anywidget answer: the static figure path."""
    import contextlib
    import IPython.display
    handles = []

    class Kernel:
        def do_one_iteration(self):
            pass
    monkeypatch.setattr(ftkit.ui.live, "ipython_kernel", lambda: Kernel())
    monkeypatch.setattr(ftkit.ui.live, "ui_events", lambda: contextlib.nullcontext(lambda n: None))
    monkeypatch.setattr(ftkit.ui.live, "in_colab", lambda: False)
    monkeypatch.setattr(ftkit.ui.live, "_cached", None)
    monkeypatch.delenv("FTKIT_LIVE_FIGURE", raising=False)
    shown = []

    def display(obj, raw=False, display_id=None, **kw):
        shown.append(obj)
        if display_id:
            handles.append(Handle([], obj))
            threading.Timer(0.05, lambda: setattr(obj, "_view_count", 1)).start()   # the front-end shows it
            return handles[-1]
    monkeypatch.setattr(IPython.display, "display", display)
    found = ftkit.ui.live.probe_frontend_sync(timeout=1.0)
    assert found.widgets and 0.04 < found.seconds < 1.0 and found.figure == "static"
    assert shown[0]._view_count == 1 and shown[0].comm is None                # closed after the answer
    assert handles[0].sent[-1][0] == {"text/plain": ""}                        # its output emptied
    assert "live figure: static" in shown[-1]["text/plain"]                    # the one grey line
    assert "color:#888" in shown[-1]["text/html"]
    monkeypatch.setattr(ftkit.ui.live, "_cached", None)
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: Handle([], obj) if kw.get("display_id") else None)
    silent = ftkit.ui.live.probe_frontend_sync(timeout=0.2, verbose=False)     # nobody answers: no dashboard
    assert silent.widgets is False and silent.seconds == 0.2
    monkeypatch.setattr(ftkit.ui.live, "in_colab", lambda: True)
    monkeypatch.setattr(ftkit.ui.live, "_cached", None)
    colab = ftkit.ui.live.probe_frontend_sync(timeout=0.2, verbose=False)      # Colab renders core widgets
    assert colab.widgets and colab.figure == "static" and colab.colab


def test_kernel_module_reads_cells_and_colab(monkeypatch):
    assert ftkit.env.ipython_kernel() is None                                 # pytest: no kernel
    assert ftkit.env.input_cells({"In": ["", "a = 1", "b = 2"]}) == ["", "a = 1", "b = 2"]
    assert ftkit.env.input_cells({}) == [] and ftkit.env.input_cells() == []
    assert ftkit.env.in_colab() is False
    assert ftkit.env.can_poll(type("K6", (), {"do_one_iteration": None})()) and not ftkit.env.can_poll(object())


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
