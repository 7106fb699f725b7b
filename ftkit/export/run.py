"""One training run as one self-contained HTML file (plotly.js inside): its curves with the LR events marked and a
slider that replays it, the parameters, the final metrics, the manual changes and the environment — a file to send
by mail or chat that opens anywhere, offline. ``history.export_html(path)`` and
``python -m ftkit export RUN_FOLDER --out FILE.html`` (a folder holding ``history.json``) call it."""
from __future__ import annotations

import html
import json
import os
import platform
from pathlib import Path

from ..core import History
from .assets import plotly_js
from .page import figure_div, page_html
from .statics import clean, reveal_static

__all__ = ["export_run_html", "load_run_folder", "environment"]


def environment() -> dict:
    """Python, platform and the versions of the packages a run depends on (those installed)."""
    from importlib.metadata import PackageNotFoundError, version
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("ftkit", "torch", "transformers", "peft", "plotly", "numpy"):
        try:
            env[name] = version(name)
        except PackageNotFoundError:
            pass
    return env


def _table(rows: dict, empty: str) -> str:
    if not rows:
        return f"<p class='widget-note'>{empty}</p>"
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(clean(v), ensure_ascii=False)[:300]
    return str(v)


def _flat_numbers(metrics: dict, prefix: str = "") -> dict:
    """The numbers of a (possibly nested) metrics dict, keys joined with '.'; parameters are shown apart."""
    out = {}
    for k, v in (metrics or {}).items():
        if k == "parameters":
            continue
        if isinstance(v, dict):
            out.update(_flat_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def export_run_html(history: History, path: str | os.PathLike, *, params: dict | None = None,
                    metrics: dict | None = None, title: str = "training run",
                    plot_metrics: list[str] | None = None) -> Path:
    """Write ``history`` (a :class:`ftkit.History`) as one HTML file at ``path`` and return the path.
    ``params``: the run's settings (model, lr, epochs, …); ``metrics``: its results (a metrics.json's dict);
    ``plot_metrics``: epoch columns to draw on the right (default: every epoch column but epoch/step/time)."""
    from ..plots.training import training_figure
    if not hasattr(history, "steps") or not hasattr(history, "epochs"):
        raise TypeError(f"export_run_html takes a History (what fit returns), got {type(history).__name__}; "
                        "for a saved run use History.from_json(path) first")
    if not history.steps and not history.epochs:
        raise ValueError("this History is empty (no step was recorded): there is no run to export")
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"export_run_html writes an HTML file: name it *.html, got {os.fspath(path)!r}")
    if plot_metrics is None:
        skip = {"epoch", "step", "time", "seconds", "lr", "samples", "partial", "loss"}
        bases = (c.split("_", 1)[1] if c.startswith(("train_", "val_")) else c for c in history.columns())
        plot_metrics = ["loss"] + [c for c in dict.fromkeys(bases) if c not in skip]
    import plotly.io as pio
    fig = json.loads(pio.to_json(training_figure(history, metrics=tuple(dict.fromkeys(plot_metrics)), title=title),
                                 validate=False))
    fig["layout"]["meta"] = {**(fig["layout"].get("meta") or {}), "ftkit": "training"}
    figure = figure_div("run", reveal_static(clean(fig)))
    last = history.epochs[-1] if history.epochs else history.steps[-1]
    results = {**{k: v for k, v in last.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
               **_flat_numbers(metrics or {})}
    params = params if params is not None else (metrics or {}).get("parameters", {})
    events = [{"step": e.get("step"), "change": f"{e.get('name')}: {_fmt(e.get('old'))} → {_fmt(e.get('new'))}",
               "by": e.get("source", "")} for e in history.events]
    events_html = ("<table><tr><th>step</th><th>change</th><th>by</th></tr>" + "".join(
        f"<tr><td>{e['step']}</td><td>{html.escape(e['change'])}</td><td>{html.escape(str(e['by']))}</td></tr>"
        for e in events) + "</table>") if events else "<p class='widget-note'>no manual change during this run</p>"
    stop = f"<p>Stopped early: {html.escape(history.stop_reason)}</p>" if history.stop_reason else ""
    body = (f"<h1>{html.escape(title)}</h1><p>{len(history.steps)} steps, {len(history.epochs)} epochs. Move the "
            f"slider under the figure (or press play) to replay the run.</p>{stop}{figure}"
            f"<h2>Results</h2>{_table(results, 'no metric recorded')}"
            f"<h2>Parameters</h2>{_table(params, 'no parameters given (pass params= to record them)')}"
            f"<h2>Manual changes</h2>{events_html}"
            f"<h2>Environment</h2>{_table(environment(), '')}"
            f"<details><summary>the run as data (History.from_json reads it back)</summary>"
            f"<pre>{html.escape(history.to_json())}</pre></details>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(title, body, inline_js=plotly_js()), encoding="utf-8")
    return path


def load_run_folder(folder) -> tuple:
    """(history, params, metrics) from a run folder: ``history.json`` (required), ``metrics.json`` and
    ``params.json`` (optional) — what a notebook's ``output_dir`` or ``history.to_json`` leaves."""
    from ..core import History
    folder = Path(folder)
    source = folder / "history.json"
    if not source.is_file():
        raise FileNotFoundError(f"{os.fspath(folder)!r} is not a run folder: it has no history.json "
                                "(write one with history.to_json(folder / 'history.json'))")
    history = History.from_json(source)
    loaded = {}
    for name in ("metrics", "params"):
        f = folder / f"{name}.json"
        loaded[name] = json.loads(f.read_text()) if f.is_file() else None
    return history, loaded["params"], loaded["metrics"]

