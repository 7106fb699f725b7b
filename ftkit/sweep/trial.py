"""One trial: one papermill run of the notebook in its own kernel, in its own process, and its result.

The metrics contract: the notebook writes ``output_dir/metrics.json``, a JSON object whose top level holds numbers
(other entries may be anything); ``--metric NAME`` names one top-level key (``a.b`` reaches into a nested
object). A missing key, a value that is not a number, or a NaN/inf fails the trial with a line saying so. Beside it
a notebook may write ``history.json`` (:meth:`ftkit.History.to_json`): the sweep's view draws its learning curves.

``python -m ftkit.sweep.worker SPEC.json`` runs one trial (what each worker process, local or Ray, executes) and
writes ``result.json`` beside the executed notebook: ``{"state": "COMPLETE"|"FAIL", "value", "error", "seconds"}``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

__all__ = ["read_metric", "run_notebook", "write_result", "trial_env", "start_trial", "finish_trial", "run_trial",
           "stop_process", "stop_processes", "kill_tree", "MetricError", "THREAD_VARS", "RESULT", "LOG"]

RESULT, LOG = "result.json", "log.txt"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


class MetricError(ValueError):
    """metrics.json breaks the contract (missing, no such key, not a finite number)."""


def read_metric(output_dir, metric: str) -> float:
    """The number ``metric`` names in ``output_dir/metrics.json``; ``MetricError`` saying what is wrong otherwise."""
    path = os.path.join(os.fspath(output_dir), "metrics.json")
    if not os.path.isfile(path):
        raise MetricError(f"the notebook wrote no metrics.json to its output_dir ({path})")
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as e:
        raise MetricError(f"metrics.json is not valid JSON ({e})") from None
    value = data
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = [k for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)] \
                if isinstance(data, dict) else []
            raise MetricError(f"metrics.json has no key {metric!r}; its numbers: {', '.join(keys) or 'none'}")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricError(f"metrics.json's {metric!r} is {value!r}, not a number")
    if not math.isfinite(value):
        raise MetricError(f"metrics.json's {metric!r} is {value} (not finite)")
    return float(value)


def _last_line(error: BaseException) -> str:
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if type(error).__name__ == "DeadKernelError":
        return "DeadKernelError: the notebook's kernel died (out of memory, a crash in native code, or killed)"
    if ename:            # papermill's PapermillExecutionError: the notebook's own exception
        text = f"{ename}: {evalue}"
    else:
        text = f"{type(error).__name__}: {error}"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


class _TrialTimeout(KeyboardInterrupt):
    """The trial ran past its time limit: raised like Ctrl-C's KeyboardInterrupt, so papermill stops alike."""


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    """Raise :class:`_TrialTimeout` in this (the trial process's main) thread after ``seconds`` (SIGALRM)."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum, frame):
        raise _TrialTimeout()
    before = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def run_notebook(spec: dict) -> dict:
    """Execute the trial ``spec`` describes (in this process; its kernel is a child) and return its result;
    ``spec["timeout"]`` (seconds, optional) ends it as failed when it runs longer."""
    import papermill as pm
    out_dir = spec["output_dir"]
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    result: dict = {"state": "FAIL", "value": None, "error": None}
    limit = spec.get("timeout")
    try:
        with _time_limit(limit):
            pm.execute_notebook(spec["notebook"], spec["output"],
                                parameters={**spec["parameters"], "output_dir": out_dir}, cwd=spec["cwd"],
                                kernel_name=spec.get("kernel") or None, progress_bar=False, log_output=False)
        result.update(state="COMPLETE", value=read_metric(out_dir, spec["metric"]))
    except _TrialTimeout:
        kill_tree(os.getpid(), keep_root=True)     # a kernel the stopped papermill left behind
        result["error"] = (f"timed out: the trial ran past trial_timeout={limit:g} s and was stopped "
                           "(raise --trial-timeout, or make the trial smaller)")
    except KeyboardInterrupt:
        result["error"] = "stopped (Ctrl-C)"
        result["interrupted"] = True
    except Exception as e:                                   # the trial fails; the sweep goes on
        result["error"] = _last_line(e)
    result["seconds"] = time.perf_counter() - start
    return result


def trial_env(threads: int) -> dict:
    """The environment of a trial's process and kernel: ``threads`` CPU threads for every math library."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in THREAD_VARS})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_trial(spec: dict) -> subprocess.Popen:
    """Start ``python -m ftkit.sweep.worker SPEC`` in its own session (Ctrl-C reaches it only through the sweep)."""
    path = os.path.join(spec["output_dir"], "spec.json")
    os.makedirs(spec["output_dir"], exist_ok=True)
    with open(path, "w") as f:
        json.dump(spec, f, indent=1)
    log = open(os.path.join(spec["output_dir"], LOG), "w")
    try:
        return subprocess.Popen([sys.executable, "-m", "ftkit.sweep.worker", path], stdout=log,
                                stderr=subprocess.STDOUT, env=trial_env(spec["threads"]), start_new_session=True,
                                cwd=spec["cwd"])
    finally:
        log.close()


def finish_trial(spec: dict, returncode: int | None) -> dict:
    """The trial's result.json, or a failure naming how its process ended when it wrote none."""
    path = os.path.join(spec["output_dir"], RESULT)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        how = f"was killed by signal {-returncode}" if returncode and returncode < 0 else f"exited with {returncode}"
        log = os.path.join(spec["output_dir"], LOG)
        try:
            with open(log) as f:
                last = [ln.strip() for ln in f if ln.strip()][-1:]
        except OSError:
            last = []
        return {"state": "FAIL", "value": None, "seconds": None,
                "error": f"the trial process {how} before writing its result"
                         + (f": {last[0][:300]}" if last else "") + f" (see {log})"}


def stop_processes(procs: list, grace: float = 15.0) -> None:
    """Ask trial processes to stop (one SIGINT each: papermill shuts its kernel down); kill those still running
    after ``grace`` seconds, with their kernels."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait()


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    stop_processes([proc], grace)


def kill_tree(pid: int, *, keep_root: bool = False) -> None:
    """Kill a process (unless ``keep_root``) and every process under it (a trial's kernel runs in a session of its
    own)."""
    import psutil
    try:
        parent = psutil.Process(pid)
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        if not keep_root:
            parent.kill()
    except psutil.NoSuchProcess:
        pass


def run_trial(spec: dict, stop=None) -> dict:
    """Run one trial in a fresh process and wait for it (what a Ray task does); ``stop()`` true → stop it."""
    proc = start_trial(spec)
    try:
        while proc.poll() is None:
            if stop is not None and stop():
                stop_process(proc)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:             # Ray's cancel, or Ctrl-C: the kernel goes down with the trial
        stop_process(proc)
        raise
    return finish_trial(spec, proc.returncode)


def write_result(spec: dict, result: dict) -> None:
    """result.json beside the executed notebook, written whole or not at all."""
    tmp = os.path.join(spec["output_dir"], RESULT + ".tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(spec["output_dir"], RESULT))
