"""A training dashboard — log-scale LR slider, Stop button, live loss/metric plot, epoch/step readout — wired
to a running :func:`ftkit.fit` through :class:`~ftkit.callbacks.ParamControl`.

**Keeping the kernel responsive.** Widget messages (a slider move, a click) are handled by the kernel's main
thread, which is busy while a cell runs. So ``fit`` runs in a worker thread and the *cell* waits for it while
the kernel keeps serving widget messages; the cell still blocks like a plain ``fit`` ("Run all" works, later
cells see the trained model) and returns the History. How the waiting cell gets served depends on the kernel:

- ``history = await fit_live_async(...)`` (recommended in notebooks): the cell awaits; ipykernel >= 7
  dispatches widget messages to an awaiting cell by itself, and on ipykernel 6 (Colab) ``jupyter_ui_poll``
  serves them. ``fit_live(...)`` (no ``await``) serves them through ``jupyter_ui_poll`` too, which works only
  on ipykernel 6: ipykernel 7 removed ``kernel.do_one_iteration``, so there it warns and the controls answer
  after the cell. A bare background thread would return at once (later cells would race the training).
- Only the main thread displays; the worker changes widget traits (comm messages, safe from any thread) at most
  every ``every_ms``. Interrupting the kernel (■) asks for a stop and still returns the History.

**Without a frontend** nothing waits on the UI: under papermill, or after the browser tab closed, no message
comes and the cell ends with the training; with no kernel at all (a script, pytest) ``fit`` runs in the
calling thread (``fit_live_async`` in a worker thread) and the controls still work from other threads.

**The learning-rate rule.** The slider follows the schedule until you move it. A move is applied before the
next batch to every param group, and from that step on the scheduler stops driving the lr
(``state.lr_override``): the history's step rows show the schedule's values up to the move and yours after it.
Values outside the slider's range are clamped to its ends; a non-finite value is refused. Moves made while no
training runs apply at the first step of the next ``fit`` that uses this dashboard.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import math
import threading
import time
import warnings

import ipywidgets as widgets
from traitlets import TraitError, validate

from .callbacks import LivePlot, ParamControl
from .core import Callback, History
from .train import fit
from .utils import check_number

__all__ = ["TrainingDashboard", "fit_live", "fit_live_async"]


class _LRSlider(widgets.FloatLogSlider):
    """A FloatLogSlider that clamps to its range (as ipywidgets does) and refuses NaN/inf with a clear error."""

    @validate("value")
    def _validate_value(self, proposal):
        value = proposal["value"]
        if not math.isfinite(value):
            raise TraitError(f"the lr slider needs a finite number, got {value!r}; "
                             f"pick a value in [{self.base ** self.min:.3g}, {self.base ** self.max:.3g}]")
        return min(max(value, self.base ** self.min), self.base ** self.max)


def _metric_names(history: History) -> tuple[str, ...]:
    """('loss', then every epoch metric seen so far): ``train_accuracy``/``val_f1`` → 'accuracy', 'f1'."""
    names = {key.split("_", 1)[1] for row in history.epochs for key in row
             if key.startswith(("train_", "val_")) and key.split("_", 1)[1] != "loss"}
    return ("loss", *sorted(names))


class TrainingDashboard(Callback):
    """LR slider + Stop button + live plot + readout, as one callback for :func:`fit` (see the module notes).

    ``lr_range``: the slider's ends (log scale; widened to the decade holding the optimizer's lr if outside).
    ``every_ms``: at most one readout/plot/slider refresh per interval from the training thread.
    ``dash.widget`` is the box to display; ``dash.control`` the :class:`ParamControl` it drives.
    """

    def __init__(self, lr_range: tuple[float, float] = (1e-6, 1.0), every_ms: int = 500, title: str = "training"):
        lo, hi = (check_number(f"lr_range[{i}]", v, positive=True) for i, v in enumerate(lr_range))
        if lo >= hi:
            raise ValueError(f"lr_range must be (low, high) with low < high, got {lr_range!r}")
        self.every_ms, self.title = int(check_number("every_ms", every_ms)), title
        self.control = ParamControl()
        self._manual = False                # the slider was moved by hand: it no longer follows the schedule
        self._local = threading.local()     # marks the dashboard's own slider updates (not a user move)
        self._last = 0.0
        self.slider = _LRSlider(value=lo, base=10, min=math.log10(lo), max=math.log10(hi), step=0.01,
                                description="lr", continuous_update=False, readout_format=".2e",
                                layout=widgets.Layout(width="420px"))
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger",
                                          tooltip="end training after the current batch")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="200px"))
        self.readout = widgets.HTML("waiting for training to start")
        self.epoch_table = widgets.HTML()
        self.fig = self._figure_widget(History())
        self.widget = widgets.VBox([widgets.HBox([self.slider, self.stop_button, self.progress]), self.readout,
                                    *([self.fig] if self.fig is not None else []), self.epoch_table])
        for w, name in ((self.widget, "dashboard"), (self.slider, "lr"), (self.stop_button, "stop"),
                        (self.readout, "readout")):
            w.add_class(f"ftkit-{name}")  # stable hooks for CSS and browser tests
        self.slider.observe(self._on_slider, "value")
        self.stop_button.on_click(lambda _button: self.stop())

    def _figure_widget(self, history):
        """A plotly FigureWidget in a kernel (needs ``anywidget`` with plotly >= 6), else None: only the end figure."""
        from .plots.training import training_figure
        if _kernel() is None:
            return None  # nothing can display it (a script, pytest): skip plotly's widget import
        try:
            import plotly.graph_objects as go
            return go.FigureWidget(training_figure(history, _metric_names(history), title=self.title))
        except Exception:
            return None

    # ------------------------------------------------------------------ user actions (any thread)
    def _on_slider(self, change):
        if getattr(self._local, "syncing", False):
            return  # the dashboard showing the schedule's lr, not a user move
        self._manual = True
        self.control.set(lr=float(change["new"]))

    def stop(self):
        """What the Stop button does: end training after the current batch (pressing twice is harmless)."""
        self.control.stop()
        self.stop_button.disabled, self.stop_button.description = True, "Stopping…"

    def _show_lr(self, lr: float):
        self._local.syncing = True
        try:
            self.slider.value = min(max(lr, self.slider.base ** self.slider.min), self.slider.base ** self.slider.max)
        finally:
            self._local.syncing = False

    # ------------------------------------------------------------------ training events (training thread)
    def on_fit_start(self, state):
        lr = state.optimizer.param_groups[0]["lr"]
        if lr > 0:  # keep the optimizer's lr reachable: widen the range to the decade holding it if needed
            self.slider.min = min(self.slider.min, math.floor(math.log10(lr)))
            self.slider.max = max(self.slider.max, math.ceil(math.log10(lr)))
        if not self._manual:
            self._show_lr(lr)
        self.progress.max = max(1, (state.batches_per_epoch or 0) * state.epochs)
        self.slider.disabled = False
        self.stop_button.disabled, self.stop_button.description = self.control.stop_requested, "Stop"
        self._t0 = time.perf_counter()
        self.readout.value = f"starting: {state.epochs} epochs × {state.batches_per_epoch or '?'} batches"

    def on_batch_start(self, state):
        self.control.on_batch_start(state)

    def on_batch_end(self, state):
        self.refresh(state)

    def on_epoch_end(self, state):
        self.refresh(state, force=True)

    def on_fit_end(self, state):
        self.refresh(state, force=True, status=state.stop_reason or "finished")
        self.slider.disabled = self.stop_button.disabled = True
        self.control, self._manual = ParamControl(), False  # a later fit starts clean

    def refresh(self, state, force: bool = False, status: str | None = None):
        """Readout, progress bar, slider position and plot; throttled to one update per ``every_ms``."""
        now = time.perf_counter()
        if not force and (now - self._last) * 1000 < self.every_ms:
            return
        self._last = now
        lr = state.optimizer.param_groups[0]["lr"]
        if not (self._manual or state.lr_override):
            self._show_lr(lr)
        batches = len(state.history.steps)
        self.progress.value = min(batches, self.progress.max)
        manual = [f"{a['lr']:.3g} at step {a['step']}" for a in self.control.applied if "lr" in a]
        status = status or ("stop requested: finishing the batch" if self.control.stop_requested else "training")
        self.readout.value = (
            f"<b>epoch {state.epoch}/{state.epochs}</b> · batch {state.batch_idx + 1}/{state.batches_per_epoch or '?'}"
            f" · step {state.step} · loss {state.loss:.4g} · lr {lr:.3g} "
            f"({'set by hand: ' + ', '.join(manual) if manual else 'schedule'})"
            f" · {batches / max(now - self._t0, 1e-9):.1f} batches/s<br>{html.escape(status)}")
        self.epoch_table.value = "<br>".join(
            " · ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            for row in state.history.epochs[-5:])
        if self.fig is not None:
            from .plots.training import update_training_figure
            with self.fig.batch_update():
                update_training_figure(self.fig, state.history, _metric_names(state.history))


def _kernel():
    """The running ipykernel, or None (plain Python, a terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return getattr(get_ipython(), "kernel", None)


def _plot_metrics(metrics) -> tuple[str, ...]:
    """('loss', *names of fit's ``metrics``): what a LivePlot draws, e.g. ('loss', 'f1') for NER."""
    from .metrics import make_metric
    return ("loss", *dict.fromkeys(make_metric(m)[0] for m in metrics))


class _Run:
    """``fit`` in a worker thread; ``result()`` returns its History or re-raises its error."""

    def __init__(self, run):
        self._out: dict = {}
        self.thread = threading.Thread(target=self._work, args=(run,), name="ftkit-fit", daemon=True)
        self.thread.start()

    def _work(self, run):
        try:
            self._out["history"] = run()
        except BaseException as e:  # re-raised in the cell by result()
            self._out["error"] = e

    def result(self) -> History:
        if "error" in self._out:
            raise self._out["error"]
        return self._out["history"]


def _polls(kernel) -> bool:
    """True where jupyter-ui-poll can serve widget messages from a busy cell: kernels with
    ``do_one_iteration`` (ipykernel 6, Colab). ipykernel 7 removed it; there only an awaiting cell is served."""
    return hasattr(kernel, "do_one_iteration")


def _setup(model, train_loader, loss, optimizer, epochs, dashboard, callbacks, fit_kwargs):
    """(dashboard, a zero-argument fit call) for the dashboard path of both entry points."""
    dash = dashboard if isinstance(dashboard, TrainingDashboard) else TrainingDashboard()
    fit_kwargs.setdefault("progress", False)
    return dash, functools.partial(fit, model, train_loader, loss, optimizer, epochs, callbacks=[dash, *callbacks],
                                   **fit_kwargs)


def _finish(dash, handle, history):
    from .plots.training import training_figure
    handle.update(training_figure(history, _metric_names(history), title=dash.title))
    return history


def fit_live(model, train_loader, loss, optimizer, epochs: int = 1, *, dashboard: bool | TrainingDashboard = False,
             callbacks=(), **fit_kwargs) -> History:
    """:func:`fit` with a live view; returns its History once training ends (also after Stop).

    ``dashboard=False``: a :class:`LivePlot` of the loss and of fit's ``metrics``. ``True`` (or a
    :class:`TrainingDashboard` you built): the interactive dashboard, with its own progress bar (so ``progress``
    defaults to False); its controls stay live in a busy cell only where jupyter-ui-poll works (ipykernel 6,
    Colab): with ipykernel >= 7 write ``history = await fit_live_async(...)``. At the end the dashboard is
    replaced by a static figure, so saved notebooks keep the plot.
    """
    if not dashboard:
        live = LivePlot(metrics=_plot_metrics(fit_kwargs.get("metrics", ())))
        return fit(model, train_loader, loss, optimizer, epochs, callbacks=[live, *callbacks], **fit_kwargs)
    dash, run = _setup(model, train_loader, loss, optimizer, epochs, dashboard, callbacks, fit_kwargs)
    kernel = _kernel()
    if kernel is None:
        return run()
    if not _polls(kernel):
        warnings.warn("this kernel (ipykernel >= 7) handles widget messages only while a cell awaits: the slider "
                      "and Stop button answer after the cell ends. Write `history = await fit_live_async(...)` "
                      "to steer the training live.", stacklevel=2)
    from IPython.display import display
    handle = display(dash.widget, display_id=True)
    worker = _Run(run)
    with contextlib.ExitStack() as stack:
        poll = stack.enter_context(_ui_events()) if _polls(kernel) else None
        while worker.thread.is_alive():
            try:
                if poll is not None:
                    poll(10)               # handle up to 10 queued widget messages
                worker.thread.join(0.02)
            except KeyboardInterrupt:      # the kernel's ■: stop after this batch, keep the History
                dash.stop()
    return _finish(dash, handle, worker.result())


async def fit_live_async(model, train_loader, loss, optimizer, epochs: int = 1, *,
                         dashboard: bool | TrainingDashboard = True, callbacks=(), **fit_kwargs) -> History:
    """``history = await fit_live_async(...)``: :func:`fit_live` whose controls stay live in every kernel.

    The cell awaits a worker thread running ``fit``; meanwhile the kernel handles widget messages (ipykernel >= 7
    does so for an awaiting cell; on ipykernel 6 / Colab jupyter-ui-poll serves them). Under papermill or
    after the tab closed no message comes and the await simply ends with the training.
    """
    if not dashboard:
        return fit_live(model, train_loader, loss, optimizer, epochs, callbacks=callbacks, **fit_kwargs)
    dash, run = _setup(model, train_loader, loss, optimizer, epochs, dashboard, callbacks, fit_kwargs)
    kernel = _kernel()
    handle = None
    if kernel is not None:
        from IPython.display import display
        handle = display(dash.widget, display_id=True)
    worker = _Run(run)
    async with contextlib.AsyncExitStack() as stack:
        poll = await stack.enter_async_context(_ui_events()) if kernel is not None and _polls(kernel) else None
        while worker.thread.is_alive():
            try:
                if poll is not None:
                    await poll(10)
                await asyncio.sleep(0.02)  # the kernel dispatches widget messages meanwhile
            except (KeyboardInterrupt, asyncio.CancelledError):
                dash.stop()
    history = worker.result()
    return _finish(dash, handle, history) if handle is not None else history


def _ui_events():
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        raise ImportError("the dashboard needs jupyter-ui-poll on this kernel to keep widgets live while training: "
                          "pip install jupyter-ui-poll (or ftkit[notebooks])") from None
    return ui_events()
