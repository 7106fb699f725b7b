"""ftkit.sweep: --param parsing, the notebook's own checks before any trial, a 2×2 grid of a tiny notebook whose
final loss has a closed form, a failing trial, Ctrl-C, a resume after a kill, two sweeps on one folder, the Ray
backend against the local one, and the view."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("optuna", reason='ftkit.sweep needs its extra: pip install "ftkit[sweep]"')

from ftkit.sweep import SweepError, parse_param, read_metric, sweep
from ftkit.sweep.cli import main
from ftkit.sweep.space import Param, grid, parse_value, split_values
from ftkit.sweep.study import lock_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "assets" / "tiny_sweep.ipynb"
A = (1.0, 10.0)         # the tiny notebook's default curvature


def final_loss(lr, steps, a=A):
    """GD on ½Σ aᵢwᵢ² from w = 1: ½ Σ aᵢ (1 − lr·aᵢ)^(2·steps)."""
    return 0.5 * sum(ai * (1 - lr * ai) ** (2 * steps) for ai in a)


# --------------------------------------------------------------------------- parsing (no kernel)
def test_values_are_read_as_notebook_parameters():
    assert [parse_value(s) for s in ("3", "1e-3", "True", "None", "adamw", '["mse", "ce"]', "['a']")] == \
        [3, 1e-3, True, None, "adamw", ["mse", "ce"], ["a"]]
    assert split_values('[1,2],[3],"a,b"') == ["[1,2]", "[3]", '"a,b"']
    p = parse_param('losses=["mse"],["mse","cross_entropy"]')
    assert p.values == (["mse"], ["mse", "cross_entropy"]) and p.structured and not p.fixed
    assert parse_param("epochs=3").fixed
    r = parse_param("lr=log:1e-4..1e-2")
    assert (r.kind, r.low, r.high) == ("log", 1e-4, 1e-2) and r.endpoints() == [1e-4, 1e-2]
    assert parse_param("n=int:1..8").distribution().high == 8
    assert grid([Param("a", (1, 2)), Param("b", ("x",)), Param("c", (3, 4))]) == \
        [{"a": 1, "c": 3}, {"a": 1, "c": 4}, {"a": 2, "c": 3}, {"a": 2, "c": 4}]


@pytest.mark.parametrize("text, message", [
    ("lr", "write NAME=VALUE"),
    ("lr=", "no value after '='"),
    ("lr=log:1e-2..1e-4", "LOW must be below HIGH"),
    ("lr=log:0..1", "a log range needs LOW > 0"),
    ("lr=log:1e-4", "a range is log:LOW..HIGH"),
    ("n=int:1..2.5", "not a whole number"),
    ("lr=0.1,0.1", "given twice"),
    ("losses=[1,2", "unbalanced brackets"),
])
def test_bad_param_text_is_refused_with_how_to_fix(text, message):
    with pytest.raises(SweepError, match=message):
        parse_param(text)


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    out = str(tmp_path / "s")
    with pytest.raises(SystemExit) as e:
        main([str(TINY), "--param", "lr=0.1", "--out", out])
    assert e.value.code == 2 and "the following arguments are required: --metric" in capsys.readouterr().err
    assert main([str(TINY), "--metric", "loss", "--out", out]) == 2
    assert "give at least one --param" in capsys.readouterr().err
    assert main([str(TINY), "-p", "lr=log:1e-3..1e-1", "--metric", "loss", "--out", out]) == 2
    assert "a range, which a grid cannot enumerate" in capsys.readouterr().err
    assert main([str(TINY), "-p", "lr=0.1", "-p", "lr=0.2", "--metric", "loss", "--out", out]) == 2
    assert "--param lr is given twice" in capsys.readouterr().err
    assert main([str(TINY), "-p", "lr=0.1", "--metric", "loss", "--address", "x:6379", "--out", out]) == 2
    assert "add --backend ray" in capsys.readouterr().err
    assert main(["nope.ipynb", "-p", "lr=0.1", "--metric", "loss", "--out", out]) == 2
    assert "notebook " in capsys.readouterr().err
    assert not os.path.exists(out)


def test_bad_parameter_is_refused_before_the_first_trial(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(SweepError, match=r"has no parameter 'lrr'; did you mean 'lr'\?"):
        sweep(TINY, ["lrr=0.1"], metric="loss", out=out)
    # the notebook's own setup cell refuses a value: the same words papermill would have shown
    with pytest.raises(SweepError, match=r"refuses lr=-1: parameter lr=-1.0: expected a number > 0"):
        sweep(TINY, ["lr=0.1,-1"], metric="loss", out=out)
    with pytest.raises(SweepError, match=r"curvature='1.0'.*write curvature=\['1.0'\]"):
        sweep(TINY, ["curvature='1.0'"], metric="loss", out=out)
    with pytest.raises(SweepError, match="the sweep sets output_dir itself"):
        sweep(TINY, ["output_dir=x"], metric="loss", out=out)
    assert not out.exists()                                         # no study, no trial, no kernel


def test_metric_contract():
    d = Path(__file__).parent / "assets"
    with pytest.raises(ValueError, match="wrote no metrics.json"):
        read_metric(d / "nowhere", "loss")


def test_metric_contract_errors(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"loss": float("nan"), "acc": 0.5, "name": "x",
                                                       "nested": {"f1": 0.7}}))
    assert read_metric(tmp_path, "acc") == 0.5 and read_metric(tmp_path, "nested.f1") == 0.7
    with pytest.raises(ValueError, match=r"no key 'los'; its numbers: loss, acc"):
        read_metric(tmp_path, "los")
    with pytest.raises(ValueError, match=r"'name' is 'x', not a number"):
        read_metric(tmp_path, "name")
    with pytest.raises(ValueError, match=r"'loss' is nan \(not finite\)"):
        read_metric(tmp_path, "loss")


# --------------------------------------------------------------------------- trials (kernels)
@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    table = sweep(TINY, ["lr=0.05,0.1", "steps=5,10", "curvature=[1.0, 10.0]"], metric="loss", out=out, workers=2,
                  progress=False)
    return out, table


@pytest.mark.multiprocess
@pytest.mark.notebook
def test_grid_2x2_runs_every_point_once_with_the_notebooks_numbers(grid_sweep):
    out, table = grid_sweep
    assert list(table.state) == ["COMPLETE"] * 4
    assert [(r.lr, r.steps) for r in table.itertuples()] == [(0.05, 5), (0.05, 10), (0.1, 5), (0.1, 10)]
    for r in table.itertuples():
        assert r.loss == pytest.approx(final_loss(r.lr, r.steps), rel=1e-12)
        assert (out / r.notebook).is_file() and (out / r.notebook).parent.name == f"{r.number:04d}"
    assert set(table.curvature) == {"[1.0, 10.0]"}                    # fixed, listed in every row
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == ["number", "state", "lr", "steps", "curvature", "loss", "seconds", "notebook", "error"]
    assert csv.loss.tolist() == pytest.approx(table.loss.tolist()) and (csv.seconds > 0).all()

    # the view: sorted by the metric, one curve per run from history.json, the best as a papermill line
    from ftkit.plots.style import figure_problems
    from ftkit.sweep import view
    v = view(out, show=False)
    assert v.table.loss.tolist() == sorted(table.loss.tolist())
    assert v.best["lr"] == 0.1 and v.best["steps"] == 10
    assert v.command.endswith("best.ipynb -p lr 0.1 -p steps 10 -y 'curvature: [1.0, 10.0]'")
    assert len(v.curves) == 4
    xs, ys = v.curves["#3 lr=0.1, steps=10"]
    assert xs == list(range(1, 11)) and ys[-1] == pytest.approx(final_loss(0.1, 10), rel=1e-12)
    assert set(v.figures) == {"curves", "parallel"} and any("importances" in n for n in v.notes)
    for fig in v.figures.values():
        assert figure_problems(fig) == []


@pytest.mark.multiprocess
@pytest.mark.notebook
def test_a_failing_trial_is_recorded_with_its_last_line_and_the_sweep_goes_on(tmp_path):
    params = {"lr": [0.3, 0.1], "die": [False, True], "steps": 20}
    table = sweep(TINY, params, metric="loss", out=tmp_path, workers=2, progress=False)
    assert list(table.state) == ["FAIL", "FAIL", "COMPLETE", "FAIL"]
    dead = "DeadKernelError: the notebook's kernel died (out of memory, a crash in native code, or killed)"
    assert table.error[1] == table.error[3] == dead
    # lr=0.3 on a=10: the loss grows 4× a step, ½·10·4⁶ ≈ 2.05e4 > 1000 × 5.5 first at step 6
    assert table.error[0] == ("FloatingPointError: loss 2.05e+04 at step 6 is over 1000x its start: lr=0.3 is "
                              "past the stability edge 2/max(a)=0.2")
    assert table.loss[2] == pytest.approx(final_loss(0.1, 20), rel=1e-12) and table.loss[[0, 1, 3]].isna().all()
    # the same call again: every trial is finished (a failure is a result), nothing reruns
    again = sweep(TINY, params, metric="loss", out=tmp_path, workers=2, progress=False)
    assert again.equals(table)


@pytest.mark.multiprocess
@pytest.mark.notebook
def test_a_trial_past_its_timeout_is_stopped_with_its_kernel_and_recorded_failed(tmp_path, monkeypatch):
    with pytest.raises(SweepError, match=r"trial_timeout=0: seconds a trial may run, a number > 0 \(or None"):
        sweep(TINY, {"lr": 0.1}, metric="loss", out=tmp_path / "s", trial_timeout=0)
    gate = tmp_path / "gate"
    Path(f"{gate}-0.1").touch()                       # the trial waits on the gate: it would never end
    monkeypatch.setenv("TINY_SWEEP_GATE", str(gate))
    table = sweep(TINY, {"lr": 0.1, "steps": 5}, metric="loss", out=tmp_path / "s", progress=False, trial_timeout=8)
    assert list(table.state) == ["FAIL"] and 8 <= table.seconds[0] < 30, table.T
    assert table.error[0] == ("timed out: the trial ran past trial_timeout=8 s and was stopped (raise "
                              "--trial-timeout, or make the trial smaller)")
    Path(f"{gate}-0.1").unlink()                      # a kernel left running would now finish and write metrics.json
    time.sleep(3)
    assert not (tmp_path / "s" / "trials" / "0000" / "metrics.json").exists()


def _cli(out, *params, env=None):
    options = [p for p in params if p.startswith("--")]
    params = [p for p in params if not p.startswith("--")]
    return subprocess.Popen([sys.executable, "-m", "ftkit", "sweep", str(TINY), *sum((["-p", p] for p in params), []),
                             *options,
                             "--metric", "loss", "--no-progress", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a background job (CI, nohup, &) starts with SIGINT ignored, and a Python started so
                            # never turns Ctrl-C into KeyboardInterrupt: give the sweep a terminal's default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait(condition, timeout=120):
    end = time.time() + timeout
    while not condition():
        assert time.time() < end, "timed out"
        time.sleep(0.2)


def _rows(out):
    path = out / "results.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["state"])


@pytest.mark.multiprocess
@pytest.mark.notebook
@pytest.mark.timeout(600)
def test_ctrl_c_stops_the_running_trial_and_leaves_the_study_consistent(tmp_path):
    import psutil
    gate = tmp_path / "gate"
    Path(f"{gate}-0.1").touch()                       # the lr=0.1 trial waits until the test lets it go
    out = tmp_path / "s"
    proc = _cli(out, "lr=0.05,0.1", "steps=5", env={**os.environ, "TINY_SWEEP_GATE": str(gate)})
    _wait(lambda: (_rows(out).state == "COMPLETE").sum() == 1 and (out / "trials" / "0001" / "log.txt").exists())
    time.sleep(3)                                     # its kernel is up and waiting at the gate
    from ftkit.sweep import view                      # the view reads a sweep that is still running
    running = view(out, show=False)
    assert running.table.state.tolist() == ["COMPLETE", "RUNNING"] and len(running.curves) == 1
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children                                   # the trial process and its kernel
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Run the same command to resume" in err
    rows = _rows(out)
    assert rows.state.tolist() == ["COMPLETE", "FAIL"]
    assert rows.error[1] == "stopped (Ctrl-C) before it finished; rerun"
    _wait(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), timeout=30)
    import optuna
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]     # nothing left RUNNING


@pytest.mark.multiprocess
@pytest.mark.notebook
@pytest.mark.timeout(600)        # two sweep processes; seconds on a quiet machine, minutes on a loaded one
def test_resume_after_a_kill_keeps_finished_trials_and_reruns_the_unfinished(tmp_path):
    import psutil
    gate = tmp_path / "gate"
    Path(f"{gate}-0.1").touch()
    out = tmp_path / "s"
    params = ("lr=0.05,0.1,0.15", "steps=5")
    proc = _cli(out, *params, env={**os.environ, "TINY_SWEEP_GATE": str(gate)})
    _wait(lambda: (_rows(out).state == "COMPLETE").sum() == 1 and (out / "trials" / "0001" / "log.txt").exists())
    first = (out / "trials" / "0000" / "result.json").read_text()
    for p in [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]:
        os.kill(p, signal.SIGKILL)                    # everything dies at once, as in a crash
    proc.communicate()
    Path(f"{gate}-0.1").unlink()
    done = _cli(out, *params, "--workers=2")      # not part of the sweep's identity: a resume may use more
    _, err = done.communicate(timeout=540)
    assert done.returncode == 0, err
    rows = _rows(out)
    assert rows.state.tolist() == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert rows.error[1] == "unfinished when the sweep stopped; rerun"
    assert rows.lr.tolist()[2:] == [0.1, 0.15]        # the unfinished point ran again, then the one never started
    assert rows.loss[[0, 2, 3]].tolist() == pytest.approx([final_loss(lr, 5) for lr in (0.05, 0.1, 0.15)], rel=1e-12)
    assert (out / "trials" / "0000" / "result.json").read_text() == first      # the finished trial was kept


def test_two_sweeps_on_one_folder_cannot_both_run(tmp_path, capsys):
    held = lock_folder(str(tmp_path))
    try:
        assert main([str(TINY), "-p", "lr=0.1", "--metric", "loss", "--out", str(tmp_path)]) == 2
        assert f"another sweep is running in '{tmp_path}' (pid {os.getpid()}" in capsys.readouterr().err
    finally:
        held.close()
    assert not (tmp_path / "study.db").exists()


@pytest.mark.multiprocess
@pytest.mark.notebook
def test_a_different_sweep_in_the_same_folder_is_refused(grid_sweep, capsys):
    out, _ = grid_sweep
    assert main([str(TINY), "-p", "lr=0.05,0.1", "-p", "steps=5,10", "--metric", "seconds", "--out", str(out)]) == 2
    assert "holds a sweep with metric='loss', not 'seconds'" in capsys.readouterr().err


@pytest.mark.multiprocess
@pytest.mark.notebook
def test_random_sampler_draws_inside_the_ranges(tmp_path):
    table = sweep(TINY, ["lr=log:0.01..0.15", "steps=int:2..6"], metric="loss", out=tmp_path, sampler="random",
                  trials=2, workers=2, progress=False)
    assert list(table.state) == ["COMPLETE"] * 2
    for r in table.itertuples():
        assert 0.01 <= r.lr <= 0.15 and 2 <= r.steps <= 6 and isinstance(r.steps, int)
        assert r.loss == pytest.approx(final_loss(r.lr, r.steps), rel=1e-12)


@pytest.mark.multiprocess
@pytest.mark.notebook
def test_ray_backend_gives_the_same_table_as_the_local_one(grid_sweep, tmp_path):
    ray = pytest.importorskip("ray")
    _, local = grid_sweep
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:      # a loaded machine can time the raylet out at start-up (ray-project/ray#65983)
        ray.shutdown()
        pytest.skip(f"Ray could not start a local instance here: {type(e).__name__}: {str(e)[:200]}")
    try:
        table = sweep(TINY, ["lr=0.05,0.1", "steps=5,10", "curvature=[1.0, 10.0]"], metric="loss", out=tmp_path,
                      workers=2, backend="ray", progress=False)
    finally:
        ray.shutdown()
    same = ["number", "state", "lr", "steps", "curvature", "loss", "notebook", "error"]
    pd.testing.assert_frame_equal(table[same], local[same])


@pytest.mark.multiprocess
@pytest.mark.notebook
def test_a_ray_task_on_a_node_without_the_sweep_folder_sends_the_trial_files_back(tmp_path):
    """What a Ray task does on a cluster node that does not see DIR (no shared file system), run here without Ray:
    the trial runs in a temporary folder from the notebook's text, and its files come back with the result."""
    from ftkit.sweep.ray_backend import run_task
    away = tmp_path / "not-on-this-node" / "trials" / "0000"
    spec = {"notebook": "/elsewhere/tiny_sweep.ipynb", "output": str(away / "tiny_sweep.ipynb"),
            "output_dir": str(away), "parameters": {"lr": 0.1, "steps": 3}, "cwd": "/elsewhere", "metric": "loss",
            "threads": 1, "kernel": None, "number": 0}
    result = run_task(spec, TINY.read_text())
    assert result["state"] == "COMPLETE", result
    assert result["value"] == pytest.approx(final_loss(0.1, 3), rel=1e-12)
    assert {"tiny_sweep.ipynb", "metrics.json", "history.json", "result.json"} <= set(result["files"])
    assert json.loads(result["files"]["metrics.json"])["loss"] == result["value"]
    assert not away.parent.exists()                   # nothing was written where this node cannot write
