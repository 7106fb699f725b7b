"""The one place that decides between a live widget view and a static figure, and the throttled live figure.

**The capability probe** (:func:`probe_frontend`, once per kernel, one grey line at the first use) asks two things
by real round trips, both at once:

- *do core widgets render?* A hidden core widget (an ``ipywidgets.HTML``) counts its views (``_view_count``):
  the front-end sends the count back when it shows it. Core widgets are what the dashboard's slider and buttons
  are; Colab renders them natively (ipywidgets 7), JupyterLab, Notebook 6/7 and VS Code too.
- *does third-party widget JavaScript load?* A tiny ``anywidget`` whose front-end code sends one message when it
  is created (plotly >= 6 ``FigureWidget`` is such a widget; in Colab it needs the custom widget manager).

Under papermill, or with no tab open, nothing answers and after ``timeout`` seconds the answer is "no front-end"
— never a hang. In Colab the core widgets count as present even if the count does not come back.

**The live figure** (:class:`LiveFigure`) takes one of two paths, written in the probe's line:

- ``widget``: a plotly ``FigureWidget`` changed in place (needs the third-party widget JavaScript);
- ``static``: a plain plotly figure shown through an IPython display handle (``display(fig, display_id=True)``)
  and replaced in place (``handle.update``) — no widget JavaScript at all, so it works wherever plotly figures
  show (Colab, classic Notebook). Each replacement sends the whole figure, so it is paced by what it costs: at
  most one every ``every_ms`` and never more than 1/40 of the time (``SEND_SHARE``), so that with the rest of the
  dashboard the training's overhead stays under 5 %.

``FTKIT_LIVE_FIGURE=static`` or ``=widget`` in the environment forces the path. At the end
:meth:`LiveFigure.finish` puts a static figure in place, so saved notebooks keep the plot. :class:`LivePlot` (a
callback), the training dashboard and the gradient-descent explorer all use it, e.g.::

    live = LiveFigure(make_figure(), every_ms=200)   # live=None: decided by the probe's cached answer
    live.show()                                      # or put live.widget in a widget box (widget path)
    live.update(lambda fig: fig.data[0].update(y=ys))  # throttled; force=True for the last frame
    live.flush()                                     # static path, from the cell's thread: send what changed
    live.finish(make_figure())                       # the static figure replaces the live one
"""
from __future__ import annotations

import asyncio
import contextlib
import html
import os
import threading
import time
from dataclasses import dataclass

from ..core import Callback
from ..env import can_poll, in_colab, ipython_kernel, ui_events

__all__ = ["Frontend", "probe_frontend", "probe_frontend_sync", "last_probe", "live_figure_path", "LiveFigure",
           "LivePlot", "LIVE_FIGURE_ENV", "replace_output"]

LIVE_FIGURE_ENV = "FTKIT_LIVE_FIGURE"
PATHS = ("static", "widget")
SEND_SHARE = 0.025   # the static path's sends take at most this share of the time: room under 5 % for the rest
_PING_ESM = "export default { initialize({ model }) { model.send({ ftkit_ping: 1 }); } };"
_cached: "Frontend | None" = None


def live_figure_path() -> str | None:
    """``FTKIT_LIVE_FIGURE`` ('static' or 'widget'), None when unset; anything else is refused by name."""
    value = os.environ.get(LIVE_FIGURE_ENV, "").strip().lower()
    if not value:
        return None
    if value not in PATHS:
        raise ValueError(f"{LIVE_FIGURE_ENV}={os.environ[LIVE_FIGURE_ENV]!r} is not a live-figure path; set it to "
                         "'static' (a plain plotly figure updated through a display handle) or 'widget' (a plotly "
                         "FigureWidget), or unset it to let the probe decide")
    return value


@dataclass
class Frontend:
    """What the probe found. ``widgets``: core widgets render (True), do not (False), or could not be asked (None).
    ``figure_widget``: third-party widget JavaScript (anywidget, plotly's FigureWidget) answered."""
    kernel: bool
    anywidget: str | None          # its version, None when missing
    colab: bool
    widgets: bool | None
    seconds: float = 0.0
    figure_widget: bool = False

    @property
    def interactive(self) -> bool:
        return bool(self.widgets)

    @property
    def figure(self) -> str:
        """The live figure's path: the environment's choice, else 'widget' where its JavaScript answered."""
        return live_figure_path() or ("widget" if self.figure_widget else "static")

    def line(self) -> str:
        if not self.kernel:
            front = "no kernel (a script or a terminal)"
        elif self.widgets is None:
            front = "cannot ask the front-end from a blocking cell on ipykernel 7 (use `await fit_live_async`)"
        elif self.widgets:
            front = (f"widgets answered in {self.seconds:.2f} s" if not self.colab or self.seconds
                     else "Colab renders core widgets")
        else:
            front = (f"no widget front-end answered within {self.seconds:.1f} s "
                     "(papermill, a closed tab, or widgets off)")
        if not self.interactive:
            return f"ftkit ui: {front} · Colab {'yes' if self.colab else 'no'} → static plot"
        forced = live_figure_path()
        how = ("FigureWidget" if self.figure == "widget" else "plain plotly figure updated in place")
        why = (f"{LIVE_FIGURE_ENV}={forced}" if forced else
               "plotly widget answered" if self.figure_widget else
               "no plotly widget JavaScript" + ("" if self.anywidget else " (anywidget missing)"))
        return (f"ftkit ui: {front} · Colab {'yes' if self.colab else 'no'} → interactive dashboard, live figure: "
                f"{self.figure} ({how}; {why})")

    def show(self) -> None:
        """The line, grey in a notebook (plain text elsewhere and in saved notebooks)."""
        if not self.kernel:
            print(self.line(), flush=True)
            return
        from IPython.display import display
        display({"text/plain": self.line(),
                 "text/html": f"<span style='color:#888;font-size:smaller'>{html.escape(self.line())}</span>"},
                raw=True)


def last_probe() -> "Frontend | None":
    """The cached answer of the probe in this process (None before the first probe)."""
    return _cached


class _Pings:
    """Both questions at once: a hidden core widget that counts its views, an anywidget that sends one message."""

    def __init__(self, timeout: float, ask: bool = True):
        kernel = ipython_kernel()
        try:
            import anywidget
            version = getattr(anywidget, "__version__", "present")
        except ImportError:
            anywidget, version = None, None
        self.info = Frontend(kernel=kernel is not None, anywidget=version, colab=in_colab(), widgets=False,
                             seconds=timeout)
        self.core, self.third = threading.Event(), threading.Event()
        self.core_ping = self.ping = self.handle = None
        self.t0 = time.perf_counter()
        if kernel is None or not ask:
            return
        import ipywidgets
        from IPython.display import display
        self.core_ping = ipywidgets.HTML(layout=ipywidgets.Layout(display="none"))
        self.core_ping.observe(lambda change: self._answer(self.core) if (change["new"] or 0) > 0 else None,
                               "_view_count")
        self.core_ping._view_count = 0            # from now on the front-end reports each view it shows
        self.handle = display(self.core_ping, display_id=True)
        if anywidget is not None:
            class _Ping(anywidget.AnyWidget):
                _esm = _PING_ESM
            self.ping = _Ping()
            self.ping.on_msg(lambda widget, content, buffers: self._answer(self.third))

    def _answer(self, event):
        self.seconds = min(getattr(self, "seconds", float("inf")), time.perf_counter() - self.t0)
        event.set()

    def waiting(self, timeout: float) -> bool:
        if self.core_ping is None:
            return False
        if self.core.is_set() and (self.ping is None or self.third.is_set()):
            return False
        return time.perf_counter() - self.t0 < timeout

    def done(self, verbose: bool) -> Frontend:
        global _cached
        info = self.info
        if self.core_ping is not None:
            info.figure_widget = self.third.is_set()
            info.widgets = self.core.is_set() or info.figure_widget or info.colab
            if self.core.is_set() or info.figure_widget:
                info.seconds = self.seconds     # the first answer
            elif info.colab:
                info.seconds = 0.0
            for w in (self.core_ping, self.ping):
                if w is not None:
                    w.close()
            with contextlib.suppress(Exception):   # the hidden widget's output: nothing left in the notebook
                self.handle.update({"text/plain": ""}, raw=True)
        _cached = info
        if verbose:
            info.show()
        return info


async def probe_frontend(timeout: float = 2.0, *, refresh: bool = False, verbose: bool = True) -> Frontend:
    """Ask once per process whether a widget front-end is connected (for an awaiting cell; see the module notes)."""
    if _cached is not None and not refresh:
        return _cached
    pings = _Pings(timeout)
    if pings.core_ping is not None:
        async with contextlib.AsyncExitStack() as stack:
            poll = await stack.enter_async_context(ui_events()) if can_poll(ipython_kernel()) else None
            while pings.waiting(timeout):
                if poll is not None:
                    await poll(10)
                await asyncio.sleep(0.01)   # ipykernel 7 hands the front-end's messages to us meanwhile
    return pings.done(verbose)


def probe_frontend_sync(timeout: float = 2.0, *, verbose: bool = True) -> Frontend:
    """The probe from a blocking cell: possible where jupyter-ui-poll works (ipykernel 6, Colab); on ipykernel 7
    the answer is ``widgets=None`` (not cached: an awaiting cell can still ask)."""
    if _cached is not None:
        return _cached
    kernel = ipython_kernel()
    if kernel is not None and not can_poll(kernel):
        info = _Pings(0.0, ask=False).info
        info.widgets = None
        if verbose:
            info.show()
        return info
    pings = _Pings(timeout)
    if pings.core_ping is not None:
        with ui_events() as poll:
            while pings.waiting(timeout):
                poll(10)
                time.sleep(0.01)
    return pings.done(verbose)


def _bundle(figure) -> dict:
    from ..plots.training import figure_bundle
    return figure_bundle(figure)


def replace_output(handle, bundle: dict) -> None:
    """``handle.update(bundle)``. JupyterLab hands a same-type update to the renderer already there, and plotly's
    renderer for its own JSON type keeps the old figure: there the output goes through plain text first, so a
    fresh renderer draws the new figure. An HTML bundle (Colab's, classic Notebook's) is replaced directly."""
    if "text/html" not in bundle:
        handle.update({"text/plain": ""}, raw=True)
    handle.update(bundle, raw=True)


class LiveFigure:
    """A plotly figure updated in place where a front-end shows it, throttled; static otherwise.

    ``live=None`` decides from the probe: live in a kernel unless the probe found no front-end. ``path``
    ('widget' or 'static', None: ``FTKIT_LIVE_FIGURE``, else the probe's answer, else 'widget') picks how (see the
    module notes). ``widget`` is the ``FigureWidget`` (widget path only, else None); ``figure`` is what
    :meth:`update` changes (the widget, or the plain figure); ``path`` is None when nothing is live.
    """

    def __init__(self, figure, every_ms: int = 500, live: bool | None = None, path: str | None = None):
        self.every_ms, self.handle, self._last = every_ms, None, 0.0
        self._lock = threading.Lock()
        self._owner = threading.get_ident()        # the cell's thread: the only one that displays
        self._dirty, self._gap, self.pushes = False, every_ms / 1000, 0
        if live is None:
            live = ipython_kernel() is not None and (_cached is None or _cached.widgets is not False)
        self.widget, self.path = None, None
        if live:
            self.path = path or live_figure_path() or (_cached.figure if _cached is not None else "widget")
            if self.path not in PATHS:
                raise ValueError(f"path must be 'static' or 'widget', got {self.path!r}")
        if self.path == "widget":
            try:
                from .figure_widget import FigureWidget   # its state follows the figure: a page reload redraws it
                self.widget = FigureWidget(figure)
            except Exception:   # no anywidget (plotly >= 6): the plain figure updated through its display handle
                self.path = "static"
        self.figure = self.widget if self.widget is not None else figure

    def show(self) -> None:
        """Display the live view in its own output: the widget, or (static path) the figure with a display id."""
        from IPython.display import display
        if self.widget is not None:
            self.handle = display(self.widget, display_id=True)
        elif self.path == "static":
            with self._lock:
                self.handle = display(_bundle(self.figure), raw=True, display_id=True)

    def update(self, draw, force: bool = False) -> bool:
        """Call ``draw(figure)`` inside one batched update, at most every ``every_ms`` unless ``force``. On the
        static path the page gets the new figure now when called from the cell's thread, else at the next
        :meth:`flush`."""
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
                self._dirty = self.handle is not None
        if self._dirty and threading.get_ident() == self._owner:
            self.flush(force)
        return True

    def flush(self, force: bool = False) -> bool:
        """Static path, from the cell's thread: replace the shown figure if it changed, paced so that sending it
        takes at most ``SEND_SHARE`` of the time (a bigger figure is sent less often). True when something was sent."""
        now = time.perf_counter()
        if not self._dirty or self.handle is None or (not force and now < self._next_push()):
            return False
        with self._lock:
            bundle, self._dirty = _bundle(self.figure), False
        with contextlib.suppress(Exception):
            replace_output(self.handle, bundle)
        self._pushed_at = time.perf_counter()
        self._gap = max(self.every_ms / 1000, (self._pushed_at - now) / SEND_SHARE)
        self.pushes += 1
        return True

    def _next_push(self) -> float:
        return getattr(self, "_pushed_at", float("-inf")) + self._gap

    def finish(self, static, handle=None) -> None:
        """Replace the live view (its display ``handle``) by the static figure, or display it.

        The figure goes as its mime bundle (``raw=True``): given the figure object, IPython would call plotly's
        ``_ipython_display_``, which shows a *new* output and leaves the live view in place — the same training
        figure twice."""
        from IPython.display import display
        handle = handle or self.handle
        self._dirty = False
        try:
            if handle is not None:
                replace_output(handle, _bundle(static))
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
        if self.view is None or self.view.path is None:
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
