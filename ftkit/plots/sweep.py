"""A sweep's figures: every run's learning curve overlaid (the best one bold), the runs as parallel coordinates
(one axis per swept parameter, the metric last; text choices as numbered ticks), and parameter importances."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from .style import INFO, json_safe, style

__all__ = ["sweep_curves_figure", "parallel_figure", "importance_figure"]


def sweep_curves_figure(curves: dict, *, y_title: str, x_title: str = "epoch", best: str | None = None,
                        log_y: bool = False, title: str | None = None):
    """``curves``: label → (xs, ys), one line per run; ``best``: the label drawn bold, on top."""
    fig = go.Figure()
    order = [k for k in curves if k != best] + ([best] if best in curves else [])
    for label in order:
        xs, ys = curves[label]
        bold = label == best
        fig.add_trace(go.Scatter(x=list(xs), y=json_safe(ys), mode="lines", name=label + (" (best)" if bold else ""),
                                 line=dict(width=3.5 if bold else 1.5), opacity=1.0 if bold else 0.75))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear")
    return style(fig, height=420, title=title or f"{y_title} of every run ({len(curves)} runs)")


def _axis(name: str, values: list) -> dict:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        positive = all(v > 0 for v in values)
        spread = positive and max(values) / min(values) >= 20
        if spread:       # a log-scale parameter (a learning rate): log10 values, ticks in the original units
            logs = [math.log10(v) for v in values]
            ticks = sorted(set(values))
            return dict(label=f"{name} (log)", values=logs, tickvals=[math.log10(t) for t in ticks],
                        ticktext=[f"{t:g}" for t in ticks])
        return dict(label=name, values=[float(v) for v in values])
    choices = list(dict.fromkeys(str(v) for v in values))
    return dict(label=name, values=[choices.index(str(v)) for v in values], tickvals=list(range(len(choices))),
                ticktext=choices)


def parallel_figure(rows: list[dict], params: list[str], metric: str, *, direction: str = "min",
                    title: str | None = None):
    """``rows``: the finished runs (dicts with every name in ``params`` and ``metric``); a line per run, coloured by
    the metric (dark = better)."""
    values = [r[metric] for r in rows]
    dims = [_axis(p, [r[p] for r in rows]) for p in params] + [dict(label=metric, values=values)]
    fig = go.Figure(go.Parcoords(
        name="runs", line=dict(color=values, colorscale="Viridis", reversescale=direction == "min", showscale=True,
                  colorbar=dict(title=dict(text=metric))), dimensions=dims))
    return style(fig, height=380, title=title or f"{len(rows)} runs: parameters → {metric} "
                 f"({'lower' if direction == 'min' else 'higher'} is better, darker)")


def importance_figure(importances: dict, *, method: str, metric: str, title: str | None = None):
    """One bar per parameter: its share of the metric's variation (``method`` names how it was estimated)."""
    names = list(importances)[::-1]
    fig = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h", marker_color=INFO,
                           name="importance", showlegend=False))
    top = max(importances.values(), default=1)
    fig.update_xaxes(title_text=f"importance for {metric} ({method})", range=[0, 1.05 * top])
    return style(fig, height=120 + 40 * len(names), title=title or f"Which parameter mattered for {metric}")
