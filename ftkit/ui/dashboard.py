"""The training dashboard: log-scale LR slider with a box for an exact value, Stop, Pause/Resume, LR finder,
loss smoothing, live plot (loss with the manual changes marked, the lr of every step, epoch metrics) and an
epoch/step readout — one callback for :func:`ftkit.fit`, wired through :class:`~ftkit.train.callbacks.ParamControl`.
Core ipywidgets only (ipywidgets 7 and 8: Colab renders them natively); the plot follows the live-figure path of
:mod:`ftkit.ui.live` (a ``FigureWidget``, or a plain plotly figure updated through its display handle).

**The learning-rate rule.** The slider follows the schedule until you move it (or type a value in the box). A
move is applied before the next batch to every param group, and from that step on the scheduler stops driving
the lr; each move is an event in ``history.events`` (source ``"slider"``), drawn as a marker on the loss and LR
curves and replayable with ``fit(..., replay=history)``. Values outside the slider's range are clamped to its
ends; a non-finite or non-positive value is refused with a message, and training goes on undisturbed. Moves
made while no training runs apply at the first step of the next ``fit`` that uses this dashboard; a Stop pressed
after a training ended does not carry over.

**Pause** makes the training thread wait between two steps (the kernel stays responsive; the slider and the LR
finder work meanwhile); **Resume** goes on. **Stop** ends training after the current batch; the epoch it
interrupts is recorded as a partial row (``partial=True``), so the rest of a notebook runs on the model as it is.

**LR finder**: the button asks for a find; the training waits at its next step boundary, and the cell that runs
the training (:func:`~ftkit.ui.fit_live` / ``fit_live_async``) runs :func:`ftkit.lr_find` on the model,
optimizer and train loader of the training state, which ``lr_find`` restores exactly; then the training goes on
as if nothing happened and the curve is drawn with its suggestion.
"""
from __future__ import annotations

import html
import math
import threading
import time

import ipywidgets as widgets
from traitlets import TraitError, validate

from ..core import Callback, History
from ..env import ipython_kernel
from ..plots.style import INFO, WARN
from ..plots.training import figure_bundle, lr_find_figure, training_figure, update_training_figure
from ..schedules import peak_lr
from ..train.callbacks import ParamControl
from ..train.lr_finder import lr_find
from ..utils import check_number
from .live import LiveFigure, replace_output

__all__ = ["TrainingDashboard"]

DECADES_BELOW, DECADES_ABOVE = 3, 1    # the slider's default range around the schedule's peak lr: /1000 … ·10


def _tip(text: str) -> dict:
    """A hover text for any widget: ``tooltip`` in ipywidgets 8, ``description_tooltip`` in 7 (Colab's)."""
    return {"tooltip" if "tooltip" in widgets.FloatText.class_trait_names() else "description_tooltip": text}


class _LRSlider(widgets.FloatLogSlider):
    """A FloatLogSlider that clamps to its range (as ipywidgets does) and refuses NaN/inf and values <= 0."""

    refused = None   # callable(message): where the dashboard shows a refused value

    @validate("value")
    def _validate_value(self, proposal):
        value = proposal["value"]
        if not math.isfinite(value) or value <= 0:
            message = (f"the lr slider needs a finite number > 0, got {value!r}; "
                       f"pick a value in [{self.base ** self.min:.3g}, {self.base ** self.max:.3g}]")
            if self.refused is not None:
                self.refused(message)
            raise TraitError(message)
        return min(max(value, self.base ** self.min), self.base ** self.max)


class TrainingDashboard(Callback):
    """LR slider and box, Stop, Pause/Resume, LR finder, smoothing, live plot and readout (see the module notes).

    ``lr_range``: the slider's ends (log scale; widened to the decades holding the optimizer's lr and the schedule's
    peak if outside); None (default): peak/1000 … peak·10 around the schedule's peak lr (the optimizer's lr without
    a schedule; one-cycle's ``max_lr``, not its warm-up start) at the start of each fit, so a small drag is a small
    change. ``every_ms``: at most one readout/plot/slider refresh per interval from the training thread.
    ``lr_find_steps``: steps of the LR finder. ``dash.widget`` is the box of controls; :meth:`show` displays it with
    the plot; ``dash.control`` the :class:`ParamControl` it drives; ``dash.lr_find_result`` the last LR-finder
    result.
    """

    main_process_only = True   # draws: on the main process only when several train

    def __init__(self, lr_range: tuple[float, float] | None = None, every_ms: int = 500, title: str = "training",
                 lr_find_steps: int = 100):
        self.lr_range = None
        if lr_range is not None:
            lo, hi = (check_number(f"lr_range[{i}]", v, positive=True) for i, v in enumerate(lr_range))
            if lo >= hi:
                raise ValueError(f"lr_range must be (low, high) with low < high, got {lr_range!r}")
            self.lr_range = (lo, hi)
        lo, hi = self.lr_range or (1e-6, 1.0)
        self.every_ms, self.title, self.lr_find_steps = int(check_number("every_ms", every_ms)), title, lr_find_steps
        self.control = ParamControl(source="slider")
        self.lr_find_result = None
        self.served = False                 # a fit_live cell serves the LR finder (see the module notes)
        self._manual = False                # the slider was moved by hand: it no longer follows the schedule
        self._ended = False                 # a fit ended and no other started: Stop has nothing to stop
        self._running = threading.Event()   # cleared while paused
        self._running.set()
        self._find_wanted = threading.Event()    # the button was pressed
        self._held_for_find = threading.Event()  # the training waits at a step boundary for the finder
        self._find_done = threading.Event()
        self._local = threading.local()     # marks the dashboard's own slider updates (not a user move)
        self._t0 = time.perf_counter()
        self.slider = _LRSlider(value=lo, base=10, min=math.log10(lo), max=math.log10(hi), step=0.001,
                                description="lr", continuous_update=False, readout_format=".2e",
                                layout=widgets.Layout(width="520px"))
        self.slider.refused = lambda text: self._say(text, warn=True)
        self.lr_box = widgets.FloatText(value=lo, description="", **_tip("type an exact lr, then Enter"),
                                        layout=widgets.Layout(width="110px"))
        self._paused_s = 0.0                # seconds spent paused (or in the LR finder) since the fit started
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger",
                                          tooltip="end training after the current batch")
        self.pause_button = widgets.Button(description="Pause", icon="pause",
                                           tooltip="wait between two steps; Resume goes on")
        self.lr_find_button = widgets.Button(description="LR finder", icon="search",
                                             tooltip="run the LR range test on the current model (restored after)")
        self.smooth = widgets.FloatSlider(value=0.0, min=0.0, max=0.99, step=0.01, description="EMA",
                                          **_tip("smoothing of the step loss (0: off)"),
                                          layout=widgets.Layout(width="260px"))
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="200px"))
        self.readout = widgets.HTML("waiting for training to start")
        self.message = widgets.HTML()
        self.epoch_table = widgets.HTML()
        self.lr_find_box = widgets.VBox()
        self.figure_box = widgets.VBox()    # the FigureWidget (widget path); the static path shows below the box
        self.view = None
        self._find_handle = None
        self.widget = widgets.VBox([
            widgets.HBox([self.slider, self.lr_box, self.stop_button, self.pause_button, self.lr_find_button,
                          self.progress]),
            widgets.HBox([self.smooth, self.message]), self.readout, self.figure_box, self.lr_find_box,
            self.epoch_table])
        for w, name in ((self.widget, "dashboard"), (self.slider, "lr"), (self.lr_box, "lr-box"),
                        (self.stop_button, "stop"), (self.pause_button, "pause"), (self.lr_find_button, "lr-find"),
                        (self.readout, "readout"), (self.message, "message"), (self.smooth, "smooth"),
                        (self.lr_find_box, "lr-find-plot")):
            w.add_class(f"ftkit-{name}")  # stable hooks for CSS and browser tests
        self.slider.observe(self._on_slider, "value")
        self.lr_box.observe(self._on_box, "value")
        self.smooth.observe(lambda _change: self._redraw(), "value")
        self.stop_button.on_click(lambda _button: self.stop())
        self.pause_button.on_click(lambda _button: self.resume() if self.paused else self.pause())
        self.lr_find_button.on_click(lambda _button: self.find_lr())
        self._state = None

    @property
    def fig(self):
        """The live ``FigureWidget`` (widget path), else the plain figure being updated (None before a view)."""
        return None if self.view is None else self.view.figure

    # ------------------------------------------------------------------ the view (the cell's thread)
    def _ensure_view(self, path: str | None = None):
        if self.view is None:
            figure = training_figure(History(), ("loss",), title=self.title)
            self.view = LiveFigure(figure, self.every_ms, live=ipython_kernel() is not None, path=path)
            if self.view.widget is not None:
                self.figure_box.children = (self.view.widget,)
        return self.view

    def show(self, path: str | None = None):
        """Display the controls and the live plot (``path``: 'widget' or 'static', None: the probe's answer);
        returns the controls' display handle."""
        from IPython.display import display
        self._ensure_view(path)
        handle = display(self.widget, display_id=True)
        if self.view.widget is None:
            self.view.show()
        return handle

    def serve(self) -> None:
        """Called by the cell that runs the training, between its waits: runs a requested LR finder while the
        training waits at a step boundary, and sends the static plot's changes."""
        if self._held_for_find.is_set() and not self._find_done.is_set():
            try:
                self._run_lr_find(self._state)
            finally:
                self._find_done.set()
        if self.view is not None:
            self.view.flush()

    def finish(self, history: History, handle=None) -> History:
        """The final static figure, drawn from the History, in place of the live view."""
        if self.view is not None:
            self.view.finish(training_figure(history, _metric_names(history), title=self.title), handle)
        return history

    # ------------------------------------------------------------------ user actions (any thread)
    def _say(self, text: str, warn: bool = False) -> None:
        """A line beside the controls: normal text, red only for a warning (a refused value, a failure)."""
        self.message.value = (f"<span style='color:{WARN if warn else INFO}'>{html.escape(text)}</span>"
                              if text else "")

    def _on_slider(self, change):
        self._sync_box(change["new"])
        if getattr(self._local, "syncing", False):
            return  # the dashboard showing the schedule's lr, not a user move
        self._manual = True
        self._say("")
        self.control.set(lr=float(change["new"]))

    def _on_box(self, change):
        if getattr(self._local, "boxing", False):
            return
        try:
            self.slider.value = float(change["new"])   # the same checks and clamping as a drag
        except TraitError:
            self._sync_box(self.slider.value)          # the refused value is named beside the controls
        else:
            self._sync_box(self.slider.value)          # a clamped value shows what was applied

    def _sync_box(self, value):
        self._local.boxing = True
        try:
            self.lr_box.value = float(f"{value:.4g}")
        finally:
            self._local.boxing = False

    def stop(self):
        """What the Stop button does: end training after the current batch (pressing twice is harmless). After a
        training ended it does nothing (it would otherwise stop the next fit at its first batch)."""
        if self._ended:
            self._say("no training is running: Stop ignored")
            return
        self.control.stop()
        self.stop_button.disabled, self.stop_button.description = True, "Stopping…"
        self._running.set()   # a paused training wakes up to stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self):
        """Training waits before its next step until :meth:`resume` (or Stop)."""
        self._running.clear()
        self.pause_button.description, self.pause_button.icon = "Resume", "play"

    def resume(self):
        self._running.set()
        self.pause_button.description, self.pause_button.icon = "Pause", "pause"

    def find_lr(self):
        """Ask for the LR finder: it runs at the next step boundary of the running (or paused) training."""
        if self._state is None or not self.served or self._ended:
            self._say("the LR finder needs a running or paused training started with fit_live / fit_live_async")
            return
        self._find_wanted.set()
        self.lr_find_button.disabled, self.lr_find_button.description = True, "finding…"

    def _set_range(self, low: float, high: float):
        """The slider's ends (log10), in the order ipywidgets accepts; a value pushed to an end is no user move."""
        self._local.syncing = True
        try:
            if low > self.slider.max:
                self.slider.max, self.slider.min = high, low
            else:
                self.slider.min, self.slider.max = low, high
        finally:
            self._local.syncing = False

    def _show_lr(self, lr: float):
        self._local.syncing = True
        try:
            self.slider.value = min(max(lr, self.slider.base ** self.slider.min), self.slider.base ** self.slider.max)
        finally:
            self._local.syncing = False

    # ------------------------------------------------------------------ training events (training thread)
    def on_fit_start(self, state):
        self._state, self._ended = state, False
        self._ensure_view()
        lr, peak = state.optimizer.param_groups[0]["lr"], peak_lr(state.optimizer)
        if peak > 0:
            # around the peak, not the warm-up's start: a range around one-cycle's start (max_lr/25) ended below
            # the peak, which the slider then showed clamped and a drag could not reach
            if self.lr_range is None and not self._manual:   # peak/1000 … peak·10: a drag of pixels is a few %
                self._set_range(math.log10(peak) - DECADES_BELOW, math.log10(peak) + DECADES_ABOVE)
            else:   # keep the schedule's peak reachable: widen the range to the decade holding it if needed
                self._set_range(min(self.slider.min, math.floor(math.log10(lr if lr > 0 else peak))),
                                max(self.slider.max, math.ceil(math.log10(peak))))
        if not self._manual:
            self._show_lr(lr)
        self.progress.max = max(1, (state.batches_per_epoch or 0) * state.epochs)
        self.slider.disabled = self.lr_box.disabled = self.pause_button.disabled = False
        self.lr_find_button.disabled = False
        self.stop_button.disabled, self.stop_button.description = self.control.stop_requested, "Stop"
        self._t0, self._paused_s = time.perf_counter(), 0.0
        self.readout.value = f"starting: {state.epochs} epochs × {state.batches_per_epoch or '?'} batches"

    def on_batch_start(self, state):
        t0 = time.perf_counter()
        self.control.on_batch_start(state)
        if self._find_wanted.is_set() or self.paused:
            self._hold(state)
            held = time.perf_counter() - t0      # not training time: out of the rate and the epoch's time
            self._paused_s += held
            state.extra["held_s"] = state.extra.get("held_s", 0.0) + held

    def _hold(self, state):
        self._wait_for_find()
        if self.paused:
            self.refresh(state, force=True, status=f"paused before step {state.step + 1}: press Resume")
            while not self._running.wait(0.05):
                self._wait_for_find()
            self.control.on_batch_start(state)   # moves and a Stop made during the pause apply now
            self.refresh(state, force=True)

    def _wait_for_find(self):
        """The training waits here, between two steps, while the serving cell runs the LR finder."""
        if not self._find_wanted.is_set():
            return
        self._find_done.clear()
        self._held_for_find.set()
        while not self._find_done.wait(0.05):
            if not self.served:      # nobody runs it (the serving cell ended): go on
                break
        self._held_for_find.clear()
        self._find_wanted.clear()

    def _run_lr_find(self, state):
        try:
            self._say("LR finder running…")
            result = lr_find(state.model, state.train_loader, state.loss_fn, state.optimizer, device=state.device,
                             num_steps=self.lr_find_steps)
        except Exception as e:   # the training goes on: the model and optimizer were restored
            self._say(f"LR finder failed: {e}", warn=True)
        else:
            self.lr_find_result = result
            self._say(f"LR finder: {result.advice()}")
            self._show_lr_find(lr_find_figure(result))
        finally:
            self.lr_find_button.disabled, self.lr_find_button.description = False, "LR finder"

    def _show_lr_find(self, figure):
        if self.view is None or self.view.path is None:
            return
        if self.view.widget is not None:
            from .figure_widget import FigureWidget
            self.lr_find_box.children = (FigureWidget(figure),)
            return
        from IPython.display import display
        bundle = figure_bundle(figure)
        if self._find_handle is None:
            self._find_handle = display(bundle, raw=True, display_id=True)
        else:
            replace_output(self._find_handle, bundle)

    def on_batch_end(self, state):
        self.refresh(state)

    def on_epoch_end(self, state):
        self.refresh(state, force=True)

    def on_fit_end(self, state):
        self.refresh(state, force=True, status=state.stop_reason or "finished")
        self.slider.disabled = self.lr_box.disabled = self.stop_button.disabled = self.pause_button.disabled = True
        self.stop_button.description = "Stopped" if self.control.stop_requested else "Stop"   # never "Stopping…"
        self.lr_find_button.disabled = True
        self.control, self._manual, self._ended = ParamControl(source="slider"), False, True  # a later fit starts clean
        self._find_wanted.clear()
        self.resume()

    def _redraw(self):
        if self._state is not None:
            self._draw(self._state, force=True)

    def _draw(self, state, force=False):
        if self.view is None or self.view.path is None:
            return
        self.view.update(lambda fig: update_training_figure(fig, state.history, _metric_names(state.history),
                                                            smooth=self.smooth.value), force)

    def refresh(self, state, force: bool = False, status: str | None = None):
        """Readout, progress bar, slider position and plot; throttled to one update per ``every_ms``."""
        now = time.perf_counter()
        if not force and (now - getattr(self, "_last", 0.0)) * 1000 < self.every_ms:
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
            f" · {batches / max(now - self._t0 - self._paused_s, 1e-9):.1f} batches/s<br>{html.escape(status)}")
        self.epoch_table.value = "<br>".join(
            " · ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
            for row in state.history.epochs[-5:])
        self._draw(state, force=True)


def _metric_names(history: History) -> tuple[str, ...]:
    """('loss', then every epoch metric seen so far): ``train_accuracy``/``val_f1`` → 'accuracy', 'f1'."""
    names = {key.split("_", 1)[1] for row in history.epochs for key in row
             if key.startswith(("train_", "val_")) and key.split("_", 1)[1] != "loss"}
    return ("loss", *sorted(names))
