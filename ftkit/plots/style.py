"""One figure style for every ftkit figure, in one place.

- **Legends never cover anything**: outside the plots, on the right below the top margin — away from the figure
  title, the subplot titles (top of each plot) and plotly's toolbar (top right, in the margin).
- **One tick format**: every axis writes large and small numbers as powers of ten (10⁻³, not 1m or 0.001 beside
  1µ); log axes label the decades only (no "2 5" minor labels piling up).
- **Widths follow the cell**: no figure sets a width (``autosize``); heights are set per figure.
- **Titles left-aligned** over the plots, so the toolbar (top right) never sits on them.
- **Named traces**: every trace in the legend has a name (the notebook tests check it, see
  :func:`figure_problems`).
- **Text colours**: :data:`INFO` for normal output, :data:`WARN` only for a warning (a divergence, an error).

Importing :mod:`ftkit.plots` registers the template ``"ftkit"`` and makes ``"plotly+ftkit"`` plotly's default,
so figures a notebook builds itself (``plotly.express``) get the same legend and tick style. :func:`style` applies
what a template cannot (it removes fixed widths); :func:`json_safe` turns NaN/inf into ``None`` (a gap), which
plotly draws and JSON can carry.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

__all__ = ["TEMPLATE", "INFO", "WARN", "AXIS", "style", "json_safe", "text_sides", "figure_problems"]

INFO, WARN = "#444444", "firebrick"
AXIS = dict(exponentformat="power", showexponent="all", automargin=True)
if "minorloglabels" in go.layout.XAxis()._valid_props:      # plotly >= 6.3; Colab's 5.24 has no such property
    AXIS["minorloglabels"] = "none"
LEGEND = dict(orientation="v", x=1.02, xanchor="left", y=1.0, yanchor="top", bgcolor="rgba(255,255,255,0.85)",
              font=dict(size=11))

TEMPLATE = go.layout.Template(layout=dict(
    autosize=True, legend=LEGEND, xaxis=AXIS, yaxis=AXIS,
    title=dict(x=0, xref="paper", xanchor="left", font=dict(size=15)),
    scene=dict(xaxis=dict(exponentformat="power"), yaxis=dict(exponentformat="power"),
               zaxis=dict(exponentformat="power"))))
pio.templates["ftkit"] = TEMPLATE
pio.templates.default = "plotly+ftkit"


def style(fig, *, height: int | None = None, title: str | None = None, margin: dict | None = None):
    """The ftkit look on ``fig`` (also a figure made elsewhere): template, no fixed width, power-of-ten ticks on
    every axis (subplots included). Returns ``fig``."""
    fig.update_layout(template="plotly+ftkit", width=None, autosize=True)
    if height is not None:
        fig.update_layout(height=height)
    if title is not None:
        fig.update_layout(title_text=title)
    if margin is not None:
        fig.update_layout(margin=margin)
    fig.update_xaxes(**AXIS)
    fig.update_yaxes(**AXIS)
    return fig


def json_safe(values):
    """``values`` (any shape) as nested lists with NaN/inf replaced by ``None``: plotly draws a gap, and the JSON of
    a widget message or a saved notebook stays valid (``NaN`` is not JSON; a 2-D numpy array reaches a
    ``FigureWidget`` as a list, where one NaN makes the whole message fail)."""
    a = np.asarray(values, dtype=float)
    out = a.astype(object)
    out[~np.isfinite(a)] = None
    return out.tolist()


def text_sides(xs, low=None, high=None) -> list[str]:
    """A text position per point that keeps its label inside the plot: to the right of points in the left half of
    ``[low, high]`` (default: the points' own range), to the left of the others."""
    xs = [float(x) for x in xs]
    if not xs:
        return []
    low = min(xs) if low is None else low
    high = max(xs) if high is None else high
    middle = (low + high) / 2
    return ["top right" if x <= middle else "top left" for x in xs]


def _numbers(values):
    """Flatten trace data (lists, nested lists, typed-array dicts) to floats; strings and None are skipped."""
    out = []
    stack = [values]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, (int, float)):
            out.append(float(v))
    return out


def _decode(values):
    """plotly JSON may carry arrays as ``{"dtype": "f8", "bdata": base64}``; decode them to a list."""
    if isinstance(values, dict) and "bdata" in values:
        import base64
        data = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        shape = values.get("shape")
        if shape:
            data = data.reshape([int(s) for s in str(shape).split(",")])
        return data.tolist()
    return values


def _axis_extent(figure: dict, axis: str) -> tuple[float, float] | None:
    """(low, high) the data span on a cartesian axis ('x', 'x2', 'y3', …), in the axis' own units (log10 on a log
    axis), or its explicit range; None when no trace uses it."""
    letter = axis[0]
    layout = figure.get("layout", {})
    spec = layout.get(f"{letter}axis{axis[1:]}", {})
    log = spec.get("type") == "log"
    values = []
    for trace in figure.get("data", []):
        if trace.get(f"{letter}axis", letter) != axis or trace.get("type") in ("scatter3d", "surface", "image"):
            continue
        values += _numbers(_decode(trace.get(letter, [])))
    if spec.get("range") and spec.get("autorange") in (None, False):
        values += _numbers(spec["range"]) if not log else [10 ** v for v in _numbers(spec["range"])]
    for shape in layout.get("shapes", []):     # add_vline/hline lines are data too
        if shape.get(f"{letter}ref") == axis:
            values += _numbers([shape.get(f"{letter}0"), shape.get(f"{letter}1")])
    if log:
        values = [math.log10(v) for v in values if v > 0]
    values = [v for v in values if math.isfinite(v)]
    return (min(values), max(values)) if values else None


def _title_overlaps(figure: dict) -> list[str]:
    """Annotations above the plots (paper y ≥ 1, anchored at their bottom) whose text band meets the title's band.

    The title (``yref`` container, ``y`` auto) is centred in the top margin: its band is ``t/2 ± size/2`` pixels above
    the plots; an annotation's band runs from its ``yshift`` up by its lines × 1.3 × its font size."""
    layout = figure.get("layout", {})
    title = layout.get("title") or {}
    text = title.get("text")
    if not text or title.get("y") not in (None, "auto") or title.get("yref", "container") != "container":
        return []
    template = ((layout.get("template") or {}).get("layout") or {}).get("title") or {}
    size = (title.get("font") or {}).get("size") or (template.get("font") or {}).get("size") or 17
    top = (layout.get("margin") or {}).get("t", 100)
    lo, hi = top / 2 - size / 2, top / 2 + size / 2
    out = []
    for ann in layout.get("annotations", []):
        if ann.get("yref", "paper") != "paper" or (ann.get("y") or 0) < 1 or ann.get("yanchor") != "bottom" \
                or not ann.get("text"):
            continue
        a_size = (ann.get("font") or {}).get("size") or 12
        a_lo = ann.get("yshift") or 0   # at y = 1 (the plots' top), shifted up by yshift pixels
        a_hi = a_lo + 1.3 * a_size * (ann["text"].count("<br>") + 1)
        if a_lo < hi and lo < a_hi:
            out.append(f"{text!r}: the annotation {ann['text'][:40]!r} above the plots ({a_lo:.0f}–{a_hi:.0f} px) "
                       f"overlaps the title ({lo:.0f}–{hi:.0f} px above the plots; margin t={top})")
    return out


def _lines_through_bar_labels(figure: dict) -> list[str]:
    """A horizontal line (``add_hline``) drawn across a bar's printed value: bars with ``text`` whose top lies within
    4 % of the axis range of the line (the value is printed at or just above the bar's top)."""
    layout = figure.get("layout", {})
    out = []
    for trace in figure.get("data", []):
        if trace.get("type") != "bar" or not trace.get("text") or trace.get("textposition") in ("inside", "none"):
            continue
        axis = trace.get("yaxis", "y")
        extent = _axis_extent(figure, axis)
        if extent is None:
            continue
        tops = _numbers(_decode(trace.get("y", [])))
        lines = [sh.get("y0") for sh in layout.get("shapes", []) if sh.get("yref") == axis and sh.get("y0") == sh.get("y1")
                 and sh.get("y0") is not None]
        close = 0.04 * (extent[1] - extent[0] or 1)
        for y in lines:
            hit = [v for v in tops if abs(v - y) < close]
            if hit:
                out.append(f"bar values near {hit[0]:.3g} are printed where the horizontal line at {y:.3g} crosses them")
                break
    return out


def figure_problems(figure) -> list[str]:
    """What is wrong with a plotly figure (a Figure or its JSON dict), as sentences; [] when nothing is.

    Checks: the JSON has no NaN/inf (it would not serialize); every trace shown in the legend has a name; every
    categorical heatmap (a stepped colorscale) has an explicit ``zmin``/``zmax``; every annotation placed in data
    units lies inside its axes' data span (a label placed in linear units on a log axis lands far outside); no
    annotation above the plots runs into the title; no horizontal line crosses a bar's printed value."""
    import json
    if not isinstance(figure, dict):
        figure = json.loads(pio.to_json(figure, validate=False))
    problems = []
    try:
        json.dumps(figure, allow_nan=False)
    except ValueError as e:
        problems.append(f"not valid JSON ({e}): NaN/inf in the figure")
    title = (figure.get("layout", {}).get("title") or {}).get("text") or "untitled"
    for i, trace in enumerate(figure.get("data", [])):
        kind = trace.get("type", "scatter")
        legend = trace.get("showlegend", kind not in ("heatmap", "contour", "surface", "image", "histogram2d"))
        if legend and not trace.get("name"):
            problems.append(f"{title!r}: trace {i} ({kind}) shows in the legend without a name")
        scale = trace.get("colorscale")
        stepped = isinstance(scale, list) and len(scale) > 2 and any(
            a[0] == b[0] for a, b in zip(scale, scale[1:]))
        if kind == "heatmap" and stepped and (trace.get("zmin") is None or trace.get("zmax") is None
                                              or trace.get("zauto") not in (False, None)):
            problems.append(f"{title!r}: categorical heatmap {trace.get('meta') or i} without explicit zmin/zmax")
    for ann in figure.get("layout", {}).get("annotations", []):
        for letter in "xy":
            ref = ann.get(f"{letter}ref", "paper")
            if ref == "paper" or ref.endswith("domain") or ann.get(letter) is None:
                continue
            extent = _axis_extent(figure, ref)
            value = ann[letter]
            if extent is None or isinstance(value, str):
                continue
            low, high = extent
            pad = 0.05 * (high - low) + 1e-9
            if not low - pad <= value <= high + pad:
                problems.append(f"{title!r}: annotation {ann.get('text', '')!r} at {letter}={value:g} is outside "
                                f"its axis {ref} ({low:.3g} … {high:.3g} in axis units)")
    problems += _title_overlaps(figure)
    problems += [f"{title!r}: {p}" for p in _lines_through_bar_labels(figure)]
    return problems
