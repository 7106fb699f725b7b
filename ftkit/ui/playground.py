"""A text box (and sliders) that re-run a function on what the reader types: tag or classify your own sentence
(notebooks 04, 05), sample from a trained language model (06).

Core ipywidgets only (``Textarea``, ``FloatSlider``, ``IntSlider``, ``Button``, ``Output``), so it renders in
Jupyter, VS Code and Colab with ipywidgets 7 or 8 and no third-party JavaScript. Where no widget front-end
answered (papermill, a script) the result for the default text is shown as plain output instead, so an executed
notebook still shows what the box would show.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["playground"]


def _show(result):
    from IPython.display import display
    if isinstance(result, str):
        print(result)
    else:
        display(result)


def playground(run: Callable, text: str, *, sliders: dict | None = None, label: str = "text", rows: int = 2,
               show: str = "auto"):
    """Show a text box holding ``text`` (and one slider per entry of ``sliders``) whose result is
    ``run(text, **slider_values)``: a string (printed) or anything IPython displays (HTML, a DataFrame, a figure).

    ``sliders``: ``name -> (min, max, step, value)``; integer bounds give an ``IntSlider``, floats a
    ``FloatSlider``. ``show``: ``"auto"`` shows the widget where a widget front-end answered this process's probe
    (``ftkit.ui.last_probe``) and the plain result where none did (papermill); before any probe, both;
    ``"widget"`` or ``"static"`` force one. Returns the widget (``None`` when only the static result is shown).
    Bad slider specs raise before anything is shown."""
    sliders = dict(sliders or {})
    for name, spec in sliders.items():
        if not (isinstance(spec, tuple) and len(spec) == 4 and spec[0] <= spec[3] <= spec[1] and spec[2] > 0):
            raise ValueError(f"slider {name!r}: give (min, max, step, value) with min <= value <= max and step > 0, "
                             f"got {spec!r}")
    if show not in ("auto", "widget", "static"):
        raise ValueError(f"show must be 'auto', 'widget' or 'static', got {show!r}")
    defaults = {name: spec[3] for name, spec in sliders.items()}
    if show == "auto":
        from .live import last_probe
        probe = last_probe()
        want_widget, want_static = (True, True) if probe is None else (probe.interactive, not probe.interactive)
    else:
        want_widget, want_static = show == "widget", show == "static"
    if want_static:
        _show(run(text, **defaults))
    if not want_widget:
        return None

    import ipywidgets as widgets
    from IPython.display import display
    box = widgets.Textarea(value=text, description=label, rows=rows, continuous_update=False,
                           layout=widgets.Layout(width="95%"))
    controls = {}
    for name, (low, high, step, value) in sliders.items():
        kind = widgets.IntSlider if all(isinstance(v, int) for v in (low, high, step, value)) else widgets.FloatSlider
        controls[name] = kind(value=value, min=low, max=high, step=step, description=name, continuous_update=False)
    button = widgets.Button(description="Run")
    out = widgets.Output()

    def refresh(*_):
        out.clear_output(wait=True)
        with out:
            try:
                _show(run(box.value, **{k: c.value for k, c in controls.items()}))
            except Exception as e:             # a reader's text must not kill the box: say what went wrong
                print(f"{type(e).__name__}: {e}")

    box.observe(refresh, names="value")
    for c in controls.values():
        c.observe(refresh, names="value")
    button.on_click(refresh)
    refresh()
    ui = widgets.VBox([box, widgets.HBox([*controls.values(), button]), out])
    display(ui)
    return ui
