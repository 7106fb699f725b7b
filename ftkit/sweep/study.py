"""``sweep(...)``: run a notebook over a grid or a search of its parameters, every trial a papermill run in its own
kernel, the search and its records in an Optuna study stored in SQLite in the sweep folder.

The folder ``out``::

    study.db        the Optuna study (SQLite): every trial, its parameters, state, value and error
    results.csv     one row per trial (number, state, every parameter, the metric, seconds, notebook, error),
                    rewritten after every trial
    trials/NNNN/    trial NNNN's executed notebook, metrics.json (and history.json), log.txt, result.json
    .lock           held while a sweep runs in the folder: a second sweep there is refused

Run the same call again and it resumes: finished trials are kept, trials left unfinished by a kill or Ctrl-C are
marked failed (``rerun``) and run again."""
from __future__ import annotations

import fcntl
import math
import os
import signal
import time

from .check import check_parameters
from .space import Param, SweepError, check_space, decode, encode, grid, parse_param
from .trial import finish_trial, start_trial, stop_processes

__all__ = ["sweep", "results_table", "lock_folder", "locate_notebook", "require_optuna", "SAMPLERS", "BACKENDS",
           "STUDY_DB", "RESULTS_CSV"]

SAMPLERS = ("grid", "random", "tpe")
BACKENDS = ("local", "ray")
STUDY_DB, RESULTS_CSV, LOCK = "study.db", "results.csv", ".lock"


# --------------------------------------------------------------------------- the folder
def lock_folder(out: str):
    """Hold ``out/.lock`` (an OS lock, released when this process ends, even by a kill); ``SweepError`` when
    another sweep holds it."""
    os.makedirs(out, exist_ok=True)
    f = open(os.path.join(out, LOCK), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise SweepError(f"another sweep is running in {out!r} ({holder}); wait for it to finish, stop it, or give "
                         "another --out. Two sweeps never write one folder at once") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
    f.flush()
    return f


def _as_params(params) -> list[Param]:
    """``["lr=1e-3,3e-3", ...]`` (the command line's form) or ``{"lr": [1e-3, 3e-3], "epochs": 2,
    "wd": "log:1e-5..1e-2"}`` (a list is a choice: to fix a list value, wrap it, ``{"losses": [["mse"]]}``)."""
    if isinstance(params, dict):
        out = []
        for name, v in params.items():
            if isinstance(v, Param):
                out.append(v)
            elif isinstance(v, str) and v.split(":", 1)[0] in ("log", "lin", "int", "intlog") and ":" in v:
                out.append(parse_param(f"{name}={v}"))
            else:
                values = tuple(v) if isinstance(v, (list, tuple)) else (v,)
                if not values:
                    raise SweepError(f"parameter {name}: an empty list of values")
                out.append(Param(name, values))
        return out
    return [p if isinstance(p, Param) else parse_param(p) for p in params]


def require_optuna():
    """Optuna, or a ``SweepError`` saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise SweepError("sweeps keep their study in Optuna, which is not installed: pip install 'ftkit[sweep]' "
                         "(or pip install optuna)") from None
    return optuna


def locate_notebook(name) -> str:
    """``name`` as a path, else in ``notebooks/`` of the working directory or of its parent (a notebook of the kit
    from the repository root or from ``notebooks/``); ``SweepError`` naming where it looked."""
    name = os.fspath(name)
    tried = [name, os.path.join("notebooks", name), os.path.join("..", "notebooks", name)]
    for path in tried:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise SweepError(f"notebook {name!r} not found in {', '.join(map(repr, tried))} (working directory "
                     f"{os.getcwd()!r}): give its path, or clone the repository (its notebooks/ folder) and run there")


def _open_study(out: str, identity: dict, direction: str, sampler: str, seed: int):
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"grid": lambda: optuna.samplers.RandomSampler(seed=seed),    # grid points are enqueued in order
                "random": lambda: optuna.samplers.RandomSampler(seed=seed),
                "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constant_liar=True)}
    study = optuna.create_study(study_name="sweep", storage=f"sqlite:///{os.path.join(out, STUDY_DB)}",
                                load_if_exists=True, direction="minimize" if direction == "min" else "maximize",
                                sampler=samplers[sampler]())
    old = study.user_attrs.get("sweep")
    if old is None:
        study.set_user_attr("sweep", identity)
    elif old != identity:
        diff = next(k for k in identity if old.get(k) != identity[k])
        raise SweepError(f"{out!r} holds a sweep with {diff}={old.get(diff)!r}, not {identity[diff]!r}: run the "
                         "same command to resume it, or give another --out for a new sweep")
    return study


def _mark_unfinished(study, out: str) -> int:
    """Trials a kill left RUNNING (or enqueued and never started): FAIL, with ``rerun`` so they run again."""
    import optuna
    from optuna.trial import TrialState
    storage = optuna.storages.RDBStorage(f"sqlite:///{os.path.join(out, STUDY_DB)}")
    study_id, n = storage.get_study_id_from_name(study.study_name), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "rerun", True)
        storage.set_trial_user_attr(trial_id, "error", "unfinished when the sweep stopped; rerun")
        if t.state == TrialState.WAITING:
            storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        n += 1
    return n


def _finished(study) -> list:
    from optuna.trial import TrialState
    return [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and not t.user_attrs.get("rerun"))]


# --------------------------------------------------------------------------- the table
def results_table(study, params: list[Param], metric: str):
    """One row per trial, as results.csv holds it."""
    import json

    import pandas as pd
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name}
        for p in params:
            v = decode(p, t.params[p.name]) if p.name in t.params else (p.values[0] if p.fixed else None)
            row[p.name] = json.dumps(v) if isinstance(v, (list, dict)) else v
        row[metric] = t.value if t.state.name == "COMPLETE" else None
        row["seconds"] = t.user_attrs.get("seconds")
        row["notebook"] = t.user_attrs.get("notebook")
        row["error"] = t.user_attrs.get("error")
        rows.append(row)
    return pd.DataFrame(rows, columns=["number", "state", *(p.name for p in params), metric, "seconds", "notebook",
                                       "error"])


def _write_results(study, params, metric, out):
    table = results_table(study, params, metric)
    tmp = os.path.join(out, RESULTS_CSV + ".tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, os.path.join(out, RESULTS_CSV))
    return table


# --------------------------------------------------------------------------- the run
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def sweep(notebook, params, *, metric: str, out, direction: str = "min", trials: int | None = None,
          sampler: str = "grid", workers: int = 1, backend: str = "local", address: str | None = None,
          threads: int | None = None, gpus_per_trial: float = 0, cwd=None, kernel: str | None = None,
          seed: int = 0, progress: bool = True, trial_timeout: float | None = None):
    """Run ``notebook`` once per trial with papermill and return the runs table (what ``out/results.csv`` holds).

    ``params``: ``["lr=1e-3,3e-3", "epochs=2", "wd=log:1e-5..1e-2"]`` or a dict (see :func:`_as_params`); one value
    is fixed, several are a grid axis (``sampler="grid"``) or a choice (``"random"``, ``"tpe"``), ranges need
    random/TPE. ``metric``: a key of each trial's ``metrics.json``; ``direction``: ``"min"`` or ``"max"``.
    ``trials``: how many trials the sweep holds when done (random/TPE; default 10; for a grid, a cap on its
    points). ``workers``: trials at once; each gets ``threads`` CPU threads (default: cores // workers).
    ``backend="ray"`` runs each trial as a Ray task (``gpus_per_trial`` GPUs each) on a local Ray instance or the
    cluster at ``address``. ``cwd``: the working directory of every trial's kernel (default: this one), as
    ``papermill --cwd``. ``trial_timeout``: seconds a trial may run (kernel start included); one that runs longer
    is stopped, its kernel with it, and recorded as failed ("timed out"). Checks everything, and every value
    against the notebook's own parameter checks, before the first trial; a trial that fails is recorded as failed
    with its error's last line, and the sweep goes on."""
    if direction not in ("min", "max"):
        raise SweepError(f"direction {direction!r}: choose 'min' or 'max'")
    if sampler not in SAMPLERS:
        raise SweepError(f"sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if backend not in BACKENDS:
        raise SweepError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if address and backend != "ray":
        raise SweepError("--address names a Ray cluster: add --backend ray")
    for name, value, low in (("workers", workers, 1), ("trials", trials, 1), ("threads", threads, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise SweepError(f"{name}={value!r}: a whole number >= {low}")
    if trial_timeout is not None and (isinstance(trial_timeout, bool) or not isinstance(trial_timeout, (int, float))
                                      or not trial_timeout > 0):
        raise SweepError(f"trial_timeout={trial_timeout!r}: seconds a trial may run, a number > 0 (or None: no limit)")
    if not isinstance(metric, str) or not metric:
        raise SweepError("metric: name a key of the notebook's metrics.json, e.g. metric='val_loss'")
    params = _as_params(params)
    check_space(params, sampler)
    if not params:
        raise SweepError("no --param given: name at least one parameter to sweep")
    if sampler == "grid" and all(p.fixed for p in params) and trials is None:
        trials = 1
    require_optuna()
    notebook = os.path.abspath(os.fspath(notebook))
    cwd = os.path.abspath(os.fspath(cwd or os.getcwd()))
    check_parameters(notebook, params, cwd)              # the notebook's own checks, before any trial
    out = os.path.abspath(os.fspath(out))
    lock = lock_folder(out)
    try:
        identity = {"notebook": notebook, "metric": metric, "direction": direction, "sampler": sampler,
                    "params": [p.describe() for p in params]}
        study = _open_study(out, identity, direction, sampler, seed)
        _mark_unfinished(study, out)
        if backend == "ray":
            from . import ray_backend
            runner = ray_backend.RayRunner(address, threads or max(1, _cores() // workers), gpus_per_trial)
        else:
            runner = _LocalRunner()
        threads = threads or max(1, _cores() // workers)
        try:
            return _run(study, notebook, params, metric, direction, sampler, trials, workers, threads, cwd,
                        kernel, out, runner, progress, trial_timeout)
        finally:
            runner.close()
    finally:
        lock.close()


class _LocalRunner:
    """Each trial a local process (``python -m ftkit.sweep.trial``) whose kernel is its child."""

    def submit(self, spec):
        return start_trial(spec)

    def done(self, handle) -> bool:
        return handle.poll() is not None

    def result(self, handle, spec) -> dict:
        return finish_trial(spec, handle.returncode)

    def stop(self, handles: list) -> None:
        stop_processes(handles)

    def close(self):
        pass


def _todo(study, params, sampler, trials):
    """What is left: the grid points not finished yet (in order), or the number of trials to draw."""
    finished = _finished(study)
    if sampler == "grid":
        done = [{p.name: decode(p, t.params.get(p.name)) for p in params if not p.fixed} for t in finished]
        points = [g for g in grid(params) if g not in done]
        if trials is not None:
            points = points[:max(0, trials - len(finished))]
        return points, len(finished)
    return [None] * max(0, (trials or 10) - len(finished)), len(finished)


def _run(study, notebook, params, metric, direction, sampler, trials, workers, threads, cwd, kernel, out, runner,
         progress, timeout):
    from optuna.trial import TrialState
    from tqdm.auto import tqdm
    todo, n_done = _todo(study, params, sampler, trials)
    distributions = {p.name: p.distribution() for p in params if not p.fixed}
    fixed = {p.name: p.values[0] for p in params if p.fixed}
    running: dict = {}            # trial number -> (optuna trial, handle, spec)
    failed = sum(t.state == TrialState.FAIL for t in _finished(study))
    bar = tqdm(total=n_done + len(todo), initial=n_done, desc="trials", unit="trial", disable=not progress)

    def show():
        try:
            best = f"{study.best_value:.4g} (#{study.best_trial.number})"
        except ValueError:
            best = "-"
        bar.set_postfix_str(f"running {len(running)}, failed {failed}, best {metric} {best}", refresh=True)

    def launch(point):
        if point is not None:
            study.enqueue_trial({p.name: encode(p, point[p.name]) for p in params if not p.fixed})
        trial = study.ask(distributions)
        values = {**fixed, **{p.name: decode(p, trial.params[p.name]) for p in params if not p.fixed}}
        trial_dir = os.path.join(out, "trials", f"{trial.number:04d}")
        os.makedirs(trial_dir, exist_ok=True)     # a Ray task that sees this folder writes into it
        spec = {"notebook": notebook, "output": os.path.join(trial_dir, os.path.basename(notebook)),
                "output_dir": trial_dir, "parameters": values, "cwd": cwd, "metric": metric, "threads": threads,
                "kernel": kernel, "number": trial.number, "timeout": timeout}
        trial.set_user_attr("notebook", os.path.relpath(spec["output"], out))
        running[trial.number] = (trial, runner.submit(spec), spec)

    def record(number, result):
        nonlocal failed
        trial, _, _ = running.pop(number)
        trial.set_user_attr("seconds", result.get("seconds"))
        if result["state"] == "COMPLETE" and result.get("value") is not None and math.isfinite(result["value"]):
            study.tell(trial, result["value"])
        else:
            trial.set_user_attr("error", result.get("error") or "failed")
            if result.get("interrupted"):
                trial.set_user_attr("rerun", True)
            else:
                failed += 1
            study.tell(trial, state=TrialState.FAIL)
        _write_results(study, params, metric, out)

    _write_results(study, params, metric, out)
    show()
    try:
        while todo or running:
            while todo and len(running) < workers:
                launch(todo.pop(0))
                show()
            for number, (trial, handle, spec) in list(running.items()):
                if runner.done(handle):
                    record(number, runner.result(handle, spec))
                    bar.update(1)
                    show()
            time.sleep(0.1)
    except KeyboardInterrupt:
        try:                                   # a second Ctrl-C must not cut the clean-up short
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:                     # not the main thread: no signal handlers there
            old = None
        try:
            runner.stop([h for _, h, _ in running.values()])
            for number, (trial, handle, spec) in list(running.items()):
                result = runner.result(handle, spec)
                if result["state"] != "COMPLETE":
                    result.update(interrupted=True, error="stopped (Ctrl-C) before it finished; rerun")
                record(number, result)
            bar.close()
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        raise
    bar.close()
    return _write_results(study, params, metric, out)
