"""The view of a sweep folder, finished or still running: the runs sorted by the metric, every run's learning
curve overlaid, parallel coordinates and parameter importances where they say something, and the best run's
parameters as the papermill line that reproduces it.

Learning curves come from each trial's ``history.json`` (:meth:`ftkit.History.to_json`: the epoch rows), else
from a list of numbers in its ``metrics.json`` whose name holds ``curve`` (e.g. notebook 06's ``val_ce_curve``);
a notebook that writes neither has no curves to show, and the view says so."""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field

from .space import SweepError, parse_param
from .study import STUDY_DB, require_optuna, results_table

__all__ = ["SweepView", "load_sweep", "view", "compare_runs", "best_parameters", "read_curve", "MIN_IMPORTANCE_RUNS"]

MIN_IMPORTANCE_RUNS = 8      # fewer finished runs: importances would be noise, so none is drawn


def _load_study(out: str):
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = os.path.join(out, STUDY_DB)
    if not os.path.isfile(path):
        raise SweepError(f"{out!r} holds no sweep ({STUDY_DB} is missing): give the --out folder of a sweep")
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{path}")
    if "sweep" not in study.user_attrs:
        raise SweepError(f"{path!r} is an Optuna study but not an ftkit sweep (no 'sweep' record)")
    return study


def read_curve(trial_dir: str, column: str | None = None, metric: str | None = None):
    """(x name, y name, xs, ys) of one run, or None. ``column``: the history column to draw (default: the metric's
    own column if the history has it, else val_loss, loss, train_loss)."""
    hist = os.path.join(trial_dir, "history.json")
    if os.path.isfile(hist):
        with open(hist) as f:
            data = json.load(f)
        rows = (data.get("epochs") or data.get("steps") or []) if isinstance(data, dict) else []
        names = [column] if column else [metric, "val_loss", "loss", "train_loss"]
        name = next((n for n in names if n and any(n in r for r in rows)), None)
        if name:
            pts = [(r.get("epoch", r.get("step", i)), r[name]) for i, r in enumerate(rows) if r.get(name) is not None]
            xname = "epoch" if "epoch" in rows[0] else "step" if "step" in rows[0] else "row"
            return xname, name, [p[0] for p in pts], [p[1] for p in pts]
    path = os.path.join(trial_dir, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            data = json.load(f)
        data = data if isinstance(data, dict) else {}
        keys = [column] if column else [k for k in data if "curve" in k]
        for k in keys:
            v = data.get(k)
            if isinstance(v, list) and len(v) >= 2 and all(isinstance(x, (int, float)) for x in v):
                return "evaluation", k, list(range(1, len(v) + 1)), v
    return None


def best_parameters(table, metric: str, direction: str) -> dict | None:
    done = table[table.state == "COMPLETE"]
    if done.empty:
        return None
    row = done.sort_values(metric, ascending=direction == "min").iloc[0]
    return row


def _p_line(notebook: str, values: dict) -> str:
    """``papermill NOTEBOOK best.ipynb -p lr 0.003 ...`` (lists as ``-y``, since -p passes text)."""
    rel = os.path.relpath(notebook) if not os.path.relpath(notebook).startswith("..") else notebook
    parts = ["papermill", shlex.quote(rel), "best.ipynb"]
    for k, v in values.items():
        if isinstance(v, str) and v[:1] in "[{":
            parts += ["-y", shlex.quote(f"{k}: {v}")]
        else:
            parts += ["-p", k, shlex.quote(str(v))]
    return " ".join(parts)


@dataclass
class SweepView:
    """What :func:`view` found: ``table`` (sorted by the metric), ``curves``, ``figures`` (name → plotly figure),
    ``best`` (the best run's parameters), ``command`` (the papermill line), ``notes`` (what is not shown, and why)."""
    out: str
    metric: str
    direction: str
    notebook: str
    params: list
    table: object
    curves: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    best: dict | None = None
    command: str | None = None
    notes: list = field(default_factory=list)

    def show(self):
        from IPython.display import display
        counts = self.table.state.value_counts().to_dict()
        print(f"{self.out}: {len(self.table)} trials ({', '.join(f'{v} {k.lower()}' for k, v in counts.items())}); "
              f"sorted by {self.metric} ({'lowest' if self.direction == 'min' else 'highest'} first)")
        display(self.table)
        for fig in self.figures.values():
            fig.show()
        for note in self.notes:
            print(note)
        if self.command:
            print(f"best {self.metric} {self.best[self.metric]:.6g} (trial {self.best['number']}); reproduce it:\n"
                  f"  {self.command}")


def load_sweep(out, *, curve: str | None = None) -> SweepView:
    """Read the sweep in ``out`` (finished or running) into a :class:`SweepView`, figures made, nothing shown."""
    from ..plots.sweep import importance_figure, parallel_figure, sweep_curves_figure
    out = os.path.abspath(os.fspath(out))
    study = _load_study(out)
    ident = study.user_attrs["sweep"]
    params = [parse_param(d) for d in ident["params"]]
    metric, direction = ident["metric"], ident["direction"]
    table = results_table(study, params, metric)
    table = table.sort_values([metric, "number"], ascending=[direction == "min", True], na_position="last")
    table = table.reset_index(drop=True)
    v = SweepView(out, metric, direction, ident["notebook"], params, table)
    swept = [p.name for p in params if not p.fixed]

    def label(row):
        return f"#{row['number']} " + ", ".join(f"{n}={row[n]}" for n in swept)

    best = best_parameters(table, metric, direction)
    names = {}
    for _, row in table.iterrows():
        if row["notebook"] is None or row["state"] == "FAIL" and (row["error"] or "").startswith("unfinished"):
            continue
        got = read_curve(os.path.join(out, os.path.dirname(row["notebook"])), curve, metric)
        if got:
            names[got[:2]] = names.get(got[:2], 0) + 1
            v.curves[label(row)] = (got[2], got[3])
    if v.curves:
        (xname, yname), _ = max(names.items(), key=lambda kv: kv[1])
        ys = [y for _, c in v.curves.values() for y in c if isinstance(y, (int, float)) and y > 0]
        log_y = bool(ys) and len(ys) == sum(len(c) for _, c in v.curves.values()) and max(ys) / min(ys) > 100
        v.figures["curves"] = sweep_curves_figure(v.curves, y_title=yname, x_title=xname, log_y=log_y,
                                                  best=label(best) if best is not None else None)
    else:
        v.notes.append("no learning curves: the trials wrote no history.json (ftkit.History.to_json) and no "
                       "'…curve' list in metrics.json")
    done = table[table.state == "COMPLETE"]
    rows = done.to_dict("records")
    if len(swept) >= 2 and len(rows) >= 2:
        v.figures["parallel"] = parallel_figure(rows, swept, metric, direction=direction)
    elif swept:
        v.notes.append("no parallel coordinates: they need two swept parameters and two finished runs")
    if len(swept) >= 2 and len(rows) >= MIN_IMPORTANCE_RUNS:
        imp = _importances(study)
        if imp:
            v.figures["importance"] = importance_figure(imp[1], method=imp[0], metric=metric)
    elif len(swept) >= 2:
        v.notes.append(f"no parameter importances: {len(rows)} finished runs; they mean something from "
                       f"{MIN_IMPORTANCE_RUNS} on")
    if best is not None:
        values = {p.name: getattr(best[p.name], "item", lambda: best[p.name])() for p in params}
        v.best = {"number": int(best["number"]), metric: float(best[metric]), **values}
        v.command = _p_line(v.notebook, values)
    return v


def _importances(study):
    """(method, name → importance) from Optuna: fANOVA where scikit-learn is there, else PED-ANOVA."""
    import optuna
    try:
        import sklearn  # noqa: F401
        evaluator, method = optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        evaluator, method = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"
    try:
        return method, optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError):
        return None


def view(out, *, curve: str | None = None, show: bool = True) -> SweepView:
    """Show the sweep in ``out``: the runs table sorted by the metric, the curves, the figures, the best line."""
    v = load_sweep(out, curve=curve)
    if show:
        v.show()
    return v


compare_runs = view
