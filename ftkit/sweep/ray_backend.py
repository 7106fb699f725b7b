"""``backend="ray"``: each trial a Ray task (CPU threads and GPUs per trial as Ray resources) on a local Ray
instance, or on the cluster at ``address`` (``ray start --head`` on one machine, ``ray start --address=...`` on
the others): the path for a sweep that outgrows one machine.

A task runs the same trial process as the local backend (``python -m ftkit.sweep.trial``). On a node that does not
see the sweep folder (no shared file system), it runs the trial in a temporary folder with a copy of the notebook
and sends the trial's files back, so ``DIR/trials/NNNN/`` is complete either way; the notebook's working directory
is then that temporary folder."""
from __future__ import annotations

import os
import shutil
import tempfile

__all__ = ["RayRunner", "run_task", "MAX_RETURN_BYTES"]

MAX_RETURN_BYTES = 200 * 2 ** 20       # the trial files a remote task sends back (an executed notebook, metrics)


def _import_ray():
    try:
        import ray
    except ImportError:
        from .space import SweepError
        raise SweepError("--backend ray needs Ray: pip install 'ftkit[sweep]' (or pip install ray)") from None
    return ray


def run_task(spec: dict, notebook_text: str) -> dict:
    """The body of a Ray task: run the trial, here or (no shared folder) in a temporary one, and return its result
    with ``files`` (name → bytes) when they were written away from the sweep folder."""
    from .trial import run_trial
    if os.path.isdir(spec["output_dir"]):             # the driver made it: this node shares the sweep folder
        return run_trial(spec)
    tmp = tempfile.mkdtemp(prefix="ftkit-sweep-trial-")
    try:
        notebook = os.path.join(tmp, "input-" + os.path.basename(spec["notebook"]))
        with open(notebook, "w") as f:
            f.write(notebook_text)
        here = {**spec, "notebook": notebook, "cwd": tmp, "output_dir": os.path.join(tmp, "trial"),
                "output": os.path.join(tmp, "trial", os.path.basename(spec["output"]))}
        result = run_trial(here)
        files, total = {}, 0
        for root, _, names in os.walk(here["output_dir"]):
            for name in names:
                path = os.path.join(root, name)
                total += os.path.getsize(path)
                if total <= MAX_RETURN_BYTES:
                    with open(path, "rb") as f:
                        files[os.path.relpath(path, here["output_dir"])] = f.read()
        result["files"] = files
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayRunner:
    """Submit trials as Ray tasks; starts a local Ray instance (this machine's CPUs) unless ``address`` names a
    cluster or Ray is already initialised in this process."""

    def __init__(self, address: str | None, threads: int, gpus: float):
        ray = self.ray = _import_ray()
        self.started = False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
            except Exception as e:
                from .space import SweepError
                raise SweepError(f"Ray did not start{' at ' + address if address else ''} ({type(e).__name__}: "
                                 f"{str(e).strip()[:300]}). On a busy machine a local raylet can time out waiting "
                                 "for its agent (ray-project/ray#65983): retry when the machine is quieter, start "
                                 "one with `ray start --head` and give --address, or use --backend local") from None
            self.started = True
        self.task = ray.remote(run_task).options(num_cpus=threads, num_gpus=gpus, max_retries=0)
        self.texts: dict = {}

    def submit(self, spec):
        if spec["notebook"] not in self.texts:
            with open(spec["notebook"]) as f:
                self.texts[spec["notebook"]] = f.read()
        return self.task.remote(spec, self.texts[spec["notebook"]])

    def done(self, ref) -> bool:
        ready, _ = self.ray.wait([ref], timeout=0)
        return bool(ready)

    def result(self, ref, spec) -> dict:
        try:
            result = self.ray.get(ref, timeout=30)
        except Exception as e:           # a cancelled task, a dead worker, a lost node
            lines = str(e).strip().splitlines() or [""]
            return {"state": "FAIL", "value": None, "seconds": None,
                    "error": f"the Ray task failed: {type(e).__name__}: {lines[-1][:300]}"}
        for name, data in (result.pop("files", None) or {}).items():
            path = os.path.join(spec["output_dir"], name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        return result

    def stop(self, refs: list) -> None:
        for ref in refs:
            self.ray.cancel(ref)            # KeyboardInterrupt in the task: its trial process is stopped
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=30)

    def close(self):
        if self.started:
            self.ray.shutdown()
