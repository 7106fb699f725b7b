"""``fit_live`` / ``fit_live_async``: :func:`ftkit.fit` with a live view — the interactive dashboard where a
widget front-end is connected, a live (or, without a front-end, static) plot otherwise.

``dashboard="auto"`` (the notebooks' default) asks the capability probe (:mod:`ftkit.ui.live`) once per kernel:
the dashboard in JupyterLab, Notebook 7, VS Code or Colab with its custom widget manager; the plot under
papermill or with no front-end — never a wait on a UI that is not there.

**Keeping the kernel responsive.** Widget messages (a slider move, a click) are handled by the kernel's main
thread, which is busy while a cell runs. So ``fit`` runs in a worker thread and the *cell* waits for it while
the kernel keeps serving widget messages; the cell still blocks like a plain ``fit`` ("Run all" works, later
cells see the trained model) and returns the History:

- ``history = await fit_live_async(...)`` (recommended in notebooks): the cell awaits; ipykernel >= 7
  dispatches widget messages to an awaiting cell by itself, and on ipykernel 6 (Colab) ``jupyter_ui_poll``
  serves them. ``fit_live(...)`` (no ``await``) serves them through ``jupyter_ui_poll`` too, which works only
  on ipykernel 6: ipykernel 7 removed ``kernel.do_one_iteration``, so there it warns and the controls answer
  after the cell. A bare background thread would return at once (later cells would race the training).
- Only the main thread displays; the worker changes widget traits (comm messages, safe from any thread) at most
  every ``every_ms``. Interrupting the kernel (■) asks for a stop and still returns the History.

With no kernel at all (a script, pytest) ``fit`` runs in the calling thread (``fit_live_async`` in a worker
thread) and the controls still work from other threads.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import warnings

from ..core import History
from ..train import fit
from .dashboard import TrainingDashboard, _metric_names
from .live import LivePlot, _kernel, _polls, _ui_events, probe_frontend, probe_frontend_sync

__all__ = ["fit_live", "fit_live_async", "DASHBOARD_CHOICES"]

DASHBOARD_CHOICES = ("auto", True, False, "a TrainingDashboard")


def _check_choice(dashboard):
    if dashboard in ("auto", True, False) or isinstance(dashboard, TrainingDashboard):
        return
    raise ValueError(f"dashboard must be 'auto' (the dashboard where a widget front-end answers, else a plot), "
                     f"True, False or a TrainingDashboard; got {dashboard!r}")


def _plot_metrics(metrics) -> tuple[str, ...]:
    """('loss', *names of fit's ``metrics``): what a LivePlot draws, e.g. ('loss', 'f1') for NER."""
    from ..metrics import make_metric
    metrics = [metrics] if isinstance(metrics, str) or callable(metrics) else list(metrics or ())
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


def _setup(model, train_loader, loss, optimizer, epochs, dashboard, callbacks, fit_kwargs):
    """(dashboard, a zero-argument fit call) for the dashboard path of both entry points."""
    dash = dashboard if isinstance(dashboard, TrainingDashboard) else TrainingDashboard()
    dash.train_loader = train_loader   # what its LR finder trains on
    fit_kwargs.setdefault("progress", False)
    return dash, functools.partial(fit, model, train_loader, loss, optimizer, epochs, callbacks=[dash, *callbacks],
                                   **fit_kwargs)


def _plot(model, train_loader, loss, optimizer, epochs, callbacks, fit_kwargs, live):
    plot = LivePlot(metrics=_plot_metrics(fit_kwargs.get("metrics", ())), live=live)
    return fit(model, train_loader, loss, optimizer, epochs, callbacks=[plot, *callbacks], **fit_kwargs)


def _finish(dash, handle, history):
    from ..plots.training import training_figure
    dash.view.finish(training_figure(history, _metric_names(history), title=dash.title), handle)
    return history


def fit_live(model, train_loader, loss, optimizer, epochs: int = 1, *, dashboard="auto", callbacks=(),
             **fit_kwargs) -> History:
    """:func:`fit` with a live view; returns its History once training ends (also after Stop).

    ``dashboard="auto"``: the dashboard where the probe finds a widget front-end (possible from a blocking cell
    only on ipykernel 6 / Colab; on ipykernel 7 use ``await fit_live_async``), else a :class:`LivePlot`.
    ``False``: the plot. ``True`` or a :class:`TrainingDashboard`: the dashboard, with its own progress bar (so
    ``progress`` defaults to False). At the end the live view is replaced by a static figure.
    """
    _check_choice(dashboard)
    kernel = _kernel()
    if dashboard == "auto":
        found = probe_frontend_sync()
        if not found.interactive:
            return _plot(model, train_loader, loss, optimizer, epochs, callbacks, fit_kwargs,
                         live=None if found.widgets is None else False)
    elif not dashboard:
        return _plot(model, train_loader, loss, optimizer, epochs, callbacks, fit_kwargs, live=None)
    dash, run = _setup(model, train_loader, loss, optimizer, epochs, dashboard, callbacks, fit_kwargs)
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


async def fit_live_async(model, train_loader, loss, optimizer, epochs: int = 1, *, dashboard="auto", callbacks=(),
                         **fit_kwargs) -> History:
    """``history = await fit_live_async(...)``: :func:`fit_live` whose controls stay live in every kernel.

    ``dashboard="auto"`` (default): the probe decides (the dashboard with a widget front-end, else the plot —
    static under papermill). The cell awaits a worker thread running ``fit``; meanwhile the kernel handles widget
    messages (ipykernel >= 7 does so for an awaiting cell; on ipykernel 6 / Colab jupyter-ui-poll serves them).
    After the tab closed no message comes and the await simply ends with the training.
    """
    _check_choice(dashboard)
    kernel = _kernel()
    if dashboard == "auto":
        found = await probe_frontend() if kernel is not None else probe_frontend_sync()
        dashboard = found.interactive
        if not dashboard:
            return _plot(model, train_loader, loss, optimizer, epochs, callbacks, fit_kwargs, live=False)
    if not dashboard:
        return _plot(model, train_loader, loss, optimizer, epochs, callbacks, fit_kwargs, live=None)
    dash, run = _setup(model, train_loader, loss, optimizer, epochs, dashboard, callbacks, fit_kwargs)
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
