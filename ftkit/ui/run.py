"""``fit_live`` / ``fit_live_async``: :func:`ftkit.fit` with a live view — the interactive dashboard where widgets
show, a live (or, without a front-end, static) plot otherwise.

``dashboard="auto"`` (the notebooks' default) asks the capability probe (:mod:`ftkit.ui.live`) once per kernel:
the dashboard wherever core widgets render (JupyterLab, Notebook 6/7, VS Code, Colab — its plot a
``FigureWidget`` where plotly's widget JavaScript loads, else a plain figure updated in place); the plot under
papermill or with no front-end — never a wait on a UI that is not there.

**One flow for both entry points** (:class:`_LiveRun`). Widget messages (a slider move, a click) are handled by
the kernel's main thread, which is busy while a cell runs. So ``fit`` runs in a worker thread and the *cell*
waits for it while the kernel keeps serving widget messages; the cell still blocks like a plain ``fit`` ("Run
all" works, later cells see the trained model) and returns the History. Between its waits the cell serves the
dashboard (:meth:`TrainingDashboard.serve`: the LR finder, the static plot's updates). The two entry points
differ only in how they wait:

- ``history = await fit_live_async(...)`` (recommended in notebooks): the cell awaits; ipykernel >= 7
  dispatches widget messages to an awaiting cell by itself, and on ipykernel 6 (Colab) ``jupyter_ui_poll``
  serves them. ``fit_live(...)`` (no ``await``) serves them through ``jupyter_ui_poll`` too, which works only
  on ipykernel 6: ipykernel 7 removed ``kernel.do_one_iteration``, so there it warns and the controls answer
  after the cell. A bare background thread would return at once (later cells would race the training).
- Only the cell's thread displays; the worker changes widget traits (comm messages, safe from any thread) at
  most every ``every_ms``. Interrupting the kernel (■) asks for a stop and still returns the History.

With no kernel at all (a script, pytest) the same flow runs, and the controls work from other threads.

``FTKIT_STOP_AFTER_STEPS=N`` in the environment presses Stop after N optimizer steps (the dashboard's Stop, or
the same request on the plot path): how a test checks that a notebook runs to its end after a Stop.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import warnings

from ..core import Callback, History
from ..env import can_poll, ipython_kernel, ui_events
from ..train import fit
from ..train.callbacks import ParamControl
from .dashboard import TrainingDashboard
from .live import LivePlot, probe_frontend, probe_frontend_sync

__all__ = ["fit_live", "fit_live_async", "DASHBOARD_CHOICES", "STOP_AFTER_ENV"]

DASHBOARD_CHOICES = ("auto", True, False, "a TrainingDashboard")
STOP_AFTER_ENV = "FTKIT_STOP_AFTER_STEPS"


def _check_choice(dashboard):
    if dashboard in ("auto", True, False) or isinstance(dashboard, TrainingDashboard):
        return
    raise ValueError(f"dashboard must be 'auto' (the dashboard where a widget front-end answers, else a plot), "
                     f"True, False or a TrainingDashboard; got {dashboard!r}")


def _stop_after() -> int | None:
    value = os.environ.get(STOP_AFTER_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{STOP_AFTER_ENV}={value!r}: set it to a whole number of optimizer steps >= 1 "
                         "(or unset it)")
    return int(value)


class _PressStop(Callback):
    """Presses Stop (``press``) once ``steps`` optimizer steps are done: the test knob ``FTKIT_STOP_AFTER_STEPS``."""

    def __init__(self, steps: int, press):
        self.steps, self.press = steps, press

    def on_batch_end(self, state):
        if state.step >= self.steps:
            self.press()


def _plot_metrics(metrics) -> tuple[str, ...]:
    """('loss', *names of fit's ``metrics``): what a LivePlot draws, e.g. ('loss', 'f1') for NER."""
    from ..metrics import make_metric
    metrics = [metrics] if isinstance(metrics, str) or callable(metrics) else list(metrics or ())
    return ("loss", *dict.fromkeys(make_metric(m)[0] for m in metrics))


class _LiveRun:
    """One live training, whichever entry point: the choice of view, the display, ``fit`` in a worker thread,
    :meth:`serve` between the cell's waits, and :meth:`result`."""

    def __init__(self, model, train_loader, loss, optimizer, epochs, dashboard, found, callbacks, fit_kwargs):
        self.kernel = ipython_kernel()
        callbacks = list(callbacks)
        stop_after = _stop_after()
        self.dash = self.handle = None
        if dashboard == "auto":
            dashboard = found.interactive
        if not dashboard:     # the plot: live where a front-end shows it, static under papermill
            live = None if found is None or found.widgets is None else found.interactive
            control = ParamControl(source="stop")
            if stop_after:
                callbacks += [control, _PressStop(stop_after, control.stop)]
            callbacks = [LivePlot(metrics=_plot_metrics(fit_kwargs.get("metrics", ())), live=live), *callbacks]
        else:
            self.dash = dashboard if isinstance(dashboard, TrainingDashboard) else TrainingDashboard()
            fit_kwargs.setdefault("progress", False)
            callbacks = [self.dash, *callbacks, *([_PressStop(stop_after, self.dash.stop)] if stop_after else [])]
            if self.kernel is not None:
                self.handle = self.dash.show(path=None if found is None else found.figure)
            self.dash.served = True
        run = functools.partial(fit, model, train_loader, loss, optimizer, epochs, callbacks=callbacks, **fit_kwargs)
        self._out: dict = {}
        self.thread = None
        if self.dash is None:     # nothing to serve: fit in the cell's thread (Ctrl-C / ■ stop it as in fit)
            self._work(run)
            return
        self.thread = threading.Thread(target=self._work, args=(run,), name="ftkit-fit", daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _work(self, run):
        try:
            self._out["history"] = run()
        except BaseException as e:  # re-raised in the cell by result()
            self._out["error"] = e

    @property
    def polls(self) -> bool:
        return self.kernel is not None and can_poll(self.kernel)

    def serve(self) -> None:
        if self.dash is not None:
            self.dash.serve()

    def interrupt(self) -> None:
        """The kernel's ■: stop after this batch, keep the History."""
        self.dash.stop()

    def result(self) -> History:
        if self.dash is not None:
            self.serve()
            self.dash.served = False
        if "error" in self._out:
            raise self._out["error"]
        history = self._out["history"]
        if self.dash is not None and self.kernel is not None:
            self.dash.finish(history, self.handle if self.dash.view.widget is not None else None)
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
    found = probe_frontend_sync() if dashboard == "auto" else None
    if dashboard is not False and dashboard != "auto" and ipython_kernel() is not None \
            and not can_poll(ipython_kernel()):
        warnings.warn("this kernel (ipykernel >= 7) handles widget messages only while a cell awaits: the slider "
                      "and Stop button answer after the cell ends. Write `history = await fit_live_async(...)` "
                      "to steer the training live.", stacklevel=2)
    live = _LiveRun(model, train_loader, loss, optimizer, epochs, dashboard, found, callbacks, fit_kwargs)
    with contextlib.ExitStack() as stack:
        poll = stack.enter_context(ui_events()) if live.dash is not None and live.polls else None
        while live.running:
            try:
                if poll is not None:
                    poll(10)               # handle up to 10 queued widget messages
                live.serve()
                live.thread.join(0.02)
            except KeyboardInterrupt:
                live.interrupt()
    return live.result()


async def fit_live_async(model, train_loader, loss, optimizer, epochs: int = 1, *, dashboard="auto", callbacks=(),
                         **fit_kwargs) -> History:
    """``history = await fit_live_async(...)``: :func:`fit_live` whose controls stay live in every kernel.

    ``dashboard="auto"`` (default): the probe decides (the dashboard with a widget front-end, else the plot —
    static under papermill). The cell awaits a worker thread running ``fit``; meanwhile the kernel handles widget
    messages (ipykernel >= 7 does so for an awaiting cell; on ipykernel 6 / Colab jupyter-ui-poll serves them).
    After the tab closed no message comes and the await simply ends with the training.
    """
    _check_choice(dashboard)
    found = None
    if dashboard == "auto":
        found = await probe_frontend() if ipython_kernel() is not None else probe_frontend_sync()
    live = _LiveRun(model, train_loader, loss, optimizer, epochs, dashboard, found, callbacks, fit_kwargs)
    async with contextlib.AsyncExitStack() as stack:
        poll = await stack.enter_async_context(ui_events()) if live.dash is not None and live.polls else None
        while live.running:
            try:
                if poll is not None:
                    await poll(10)
                live.serve()
                await asyncio.sleep(0.02)  # the kernel dispatches widget messages meanwhile
            except (KeyboardInterrupt, asyncio.CancelledError):
                live.interrupt()
    return live.result()
