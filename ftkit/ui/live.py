"""The one place that decides between a live widget view and a static figure, and the throttled live figure.

**The capability probe** (:func:`probe_frontend`, once per kernel, printed in one line at the first use): is
there an ipykernel, is ``anywidget`` importable (plotly >= 6 ``FigureWidget`` needs it), is this Colab, and does
a widget front-end answer? The last is a real round trip: a tiny anywidget whose front-end code sends one
message back when the front-end creates it (JupyterLab, Notebook 7, VS Code, Colab with
``google.colab.output.enable_custom_widget_manager()``). Under papermill, or with no tab open, nothing answers
and after ``timeout`` seconds the answer is "no front-end" — never a hang.

**The live figure** (:class:`LiveFigure`): a plotly figure shown as a ``FigureWidget`` where a front-end can show
it, updated in place at most every ``every_ms`` from any thread; at the end :meth:`LiveFigure.finish` replaces it
by a static figure, so saved notebooks keep the plot. Without a front-end nothing live is built. :class:`LivePlot`
(a callback), the training dashboard and the gradient-descent explorer all use it, e.g.::

    live = LiveFigure(make_figure(), every_ms=200)   # live=None: decided by the probe's cached answer
    live.show()                                      # or put live.widget in a widget box
    live.update(lambda fig: fig.data[0].update(y=ys))  # throttled; force=True for the last frame
    live.finish(make_figure())                       # the static figure replaces the live one
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from dataclasses import dataclass

from ..core import Callback

__all__ = ["Frontend", "probe_frontend", "probe_frontend_sync", "last_probe", "LiveFigure", "LivePlot"]

_PING_ESM = "export default { initialize({ model }) { model.send({ ftkit_ping: 1 }); } };"
_cached: "Frontend | None" = None


def _kernel():
    """The running ipykernel, or None (plain Python, a terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return getattr(get_ipython(), "kernel", None)


def _polls(kernel) -> bool:
    """True where jupyter-ui-poll can serve widget messages from a busy cell: kernels with
    ``do_one_iteration`` (ipykernel 6, Colab). ipykernel 7 removed it; there only an awaiting cell is served."""
    return hasattr(kernel, "do_one_iteration")


@dataclass
class Frontend:
    """What the probe found. ``widgets`` is True when a front-end answered, None when it could not be asked."""
    kernel: bool
    anywidget: str | None          # its version, None when missing
    colab: bool
    widgets: bool | None
    seconds: float = 0.0

    @property
    def interactive(self) -> bool:
        return bool(self.widgets)

    def line(self) -> str:
        if not self.kernel:
            front = "no kernel (a script or a terminal)"
        elif self.widgets:
            front = f"a widget front-end answered in {self.seconds:.2f} s"
        elif self.widgets is None:
            front = "cannot ask the front-end from a blocking cell on ipykernel 7 (use `await fit_live_async`)"
        else:
            front = (f"no widget front-end answered within {self.seconds:.1f} s "
                     "(papermill, a closed tab, or widgets off)")
        hint = ""
        if self.colab and not self.widgets:
            hint = " · in Colab run `from google.colab import output; output.enable_custom_widget_manager()`"
        if self.kernel and self.anywidget is None:
            hint += " · pip install anywidget for live plotly figures"
        return (f"ftkit ui: {front} · anywidget {self.anywidget or 'missing'} · Colab {'yes' if self.colab else 'no'}"
                f" → {'interactive dashboard' if self.interactive else 'static plot'}{hint}")


def last_probe() -> "Frontend | None":
    """The cached answer of the probe in this process (None before the first probe)."""
    return _cached


def _start(timeout: float, ask: bool = True):
    """(Frontend without the answer, ping widget or None, answered Event); ``ask=False`` builds no ping."""
    kernel = _kernel()
    try:
        import anywidget
        version = getattr(anywidget, "__version__", "present")
    except ImportError:
        anywidget, version = None, None
    info = Frontend(kernel=kernel is not None, anywidget=version, colab="google.colab" in sys.modules,
                    widgets=False, seconds=timeout)
    answered = threading.Event()
    if kernel is None or anywidget is None or not ask:
        return info, None, answered

    class _Ping(anywidget.AnyWidget):
        _esm = _PING_ESM
    ping = _Ping()
    ping.on_msg(lambda widget, content, buffers: answered.set())
    return info, ping, answered


def _done(info, ping, answered, t0, verbose):
    global _cached
    if ping is not None:
        info.widgets = answered.is_set()
        info.seconds = time.perf_counter() - t0 if info.widgets else info.seconds
        ping.close()
    _cached = info
    if verbose:
        print(info.line(), flush=True)
    return info


async def probe_frontend(timeout: float = 2.0, *, refresh: bool = False, verbose: bool = True) -> Frontend:
    """Ask once per process whether a widget front-end is connected (for an awaiting cell; see the module notes)."""
    if _cached is not None and not refresh:
        return _cached
    info, ping, answered = _start(timeout)
    t0 = time.perf_counter()
    if ping is not None:
        async with contextlib.AsyncExitStack() as stack:
            poll = await stack.enter_async_context(_ui_events()) if _polls(_kernel()) else None
            while not answered.is_set() and time.perf_counter() - t0 < timeout:
                if poll is not None:
                    await poll(10)
                await asyncio.sleep(0.01)   # ipykernel 7 hands the front-end's message to us meanwhile
    return _done(info, ping, answered, t0, verbose)


def probe_frontend_sync(timeout: float = 2.0, *, verbose: bool = True) -> Frontend:
    """The probe from a blocking cell: possible where jupyter-ui-poll works (ipykernel 6, Colab); on ipykernel 7
    the answer is ``widgets=None`` (not cached: an awaiting cell can still ask)."""
    if _cached is not None:
        return _cached
    kernel = _kernel()
    if kernel is not None and not _polls(kernel):
        info = _start(0.0, ask=False)[0]
        info.widgets = None
        if verbose:
            print(info.line(), flush=True)
        return info
    info, ping, answered = _start(timeout)
    t0 = time.perf_counter()
    if ping is not None:
        with _ui_events() as poll:
            while not answered.is_set() and time.perf_counter() - t0 < timeout:
                poll(10)
                time.sleep(0.01)
    return _done(info, ping, answered, t0, verbose)


def _ui_events():
    """jupyter-ui-poll's ``ui_events`` (a sync and async context manager): serve widget messages from a busy cell."""
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        raise ImportError("the dashboard needs jupyter-ui-poll on this kernel to keep widgets live while training: "
                          "pip install jupyter-ui-poll (or ftkit[notebooks])") from None
    return ui_events()


class LiveFigure:
    """A plotly figure updated in place where a front-end shows widgets, throttled; static otherwise.

    ``live=None`` decides from the probe: live in a kernel unless the probe found no front-end. ``widget`` is
    the ``FigureWidget`` (None when not live); ``figure`` is what :meth:`update` changes (the widget, or the
    static figure so the end result is still right).
    """

    def __init__(self, figure, every_ms: int = 500, live: bool | None = None):
        self.every_ms, self.handle, self._last = every_ms, None, 0.0
        self._lock = threading.Lock()
        if live is None:
            live = _kernel() is not None and (_cached is None or _cached.widgets is not False)
        self.widget = None
        if live:
            try:
                from .figure_widget import FigureWidget   # its state follows the figure: a page reload redraws it
                self.widget = FigureWidget(figure)
            except Exception:   # no anywidget (plotly >= 6): the static figure at the end only
                self.widget = None
        self.figure = self.widget if self.widget is not None else figure

    def show(self) -> None:
        """Display the live widget in its own output (nothing without one: :meth:`finish` shows the figure)."""
        if self.widget is not None:
            from IPython.display import display
            self.handle = display(self.widget, display_id=True)

    def update(self, draw, force: bool = False) -> bool:
        """Call ``draw(figure)`` inside one batched update, at most every ``every_ms`` unless ``force``."""
        now = time.perf_counter()
        if not force and (now - self._last) * 1000 < self.every_ms:
            return False
        with self._lock:
            self._last = now
            if self.widget is not None:
                with self.widget.batch_update():
                    draw(self.widget)
            else:
                draw(self.figure)
        return True

    def finish(self, static, handle=None) -> None:
        """Replace the live view (its display ``handle``) by the static figure, or display it.

        The figure goes as its mime bundle (``raw=True``): given the figure object, IPython would call plotly's
        ``_ipython_display_``, which shows a *new* output and leaves the live view in place — the same training
        figure twice."""
        from IPython.display import display
        handle = handle or self.handle
        try:
            if handle is not None:
                handle.update(static._repr_mimebundle_(), raw=True)
            else:
                display(static)
        except Exception:
            pass


class LivePlot(Callback):
    """Loss per step (``smooth``: plus its EMA), the lr of every step with the manual changes marked, and the
    epoch metrics, in a :class:`LiveFigure` refreshed at most every ``every_ms``; one static figure at the end."""

    main_process_only = True   # draws: on the main process only when several train

    def __init__(self, every_ms: int = 500, metrics=("loss", "accuracy"), title: str = "training",
                 smooth: float = 0.0, live: bool | None = None):
        self.every_ms, self.metrics, self.title, self.smooth, self.live = every_ms, tuple(metrics), title, smooth, live
        self.view = None

    @property
    def fig(self):
        return self.view.widget if self.view is not None else None

    def _figure(self, history):
        from ..plots.training import training_figure
        return training_figure(history, self.metrics, title=self.title, smooth=self.smooth)

    def on_fit_start(self, state):
        self.view = LiveFigure(self._figure(state.history), self.every_ms, self.live)
        self.view.show()

    def refresh(self, state, force=False):
        if self.view is None or self.view.widget is None:
            return
        from ..plots.training import update_training_figure
        self.view.update(lambda fig: update_training_figure(fig, state.history, self.metrics, smooth=self.smooth),
                         force)

    def on_batch_end(self, state):
        self.refresh(state)

    def on_epoch_end(self, state):
        self.refresh(state, force=True)

    def on_fit_end(self, state):
        if self.view is not None:
            self.view.finish(self._figure(state.history))
