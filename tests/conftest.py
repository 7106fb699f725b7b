"""Shared test helpers: deterministic CPU torch and a papermill runner for the notebooks."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ftkit.data import FILES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DATA = FILES          # the texts ftkit ships (ftkit/data/files)

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    import ftkit
    ftkit.seed_everything(0)


PLOTLY = "application/vnd.plotly.v1+json"


def notebook_problems(path, allow_stderr: tuple[str, ...] = ()) -> list[str]:
    """What a user would see go wrong in an executed notebook, as sentences ([] when nothing): any stderr output
    (a warning block, a progress bar on stderr) and every problem of every plotly figure it shows
    (:func:`ftkit.plots.style.figure_problems`: NaN/inf, unnamed legend entries, categorical heatmaps without
    explicit ranges, annotations outside their axes). Reusable for any notebook: ``notebook_problems(out_path)``.
    ``allow_stderr``: warning names a test provokes on purpose with its small parameters (e.g. a tiny max_length
    makes ``TruncationWarning`` fire): a stderr block naming only those is not a problem."""
    import nbformat
    from ftkit.plots.style import figure_problems
    nb = nbformat.read(str(path), as_version=4)
    problems, figures = [], 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"cell {i} ({cell.source.strip().splitlines()[0][:60] if cell.source.strip() else 'empty'!r})"
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines = [ln for ln in out.get("text", "").splitlines() if ln.strip() and not ln.startswith("  ")]
                if allow_stderr and lines and _only_allowed(lines, allow_stderr):
                    continue
                problems.append(f"{where} wrote to stderr: {out.get('text', '')[:300]!r}")
            data = out.get("data", {})
            if PLOTLY in data:
                figures += 1
                problems += [f"{where}: {p}" for p in figure_problems(data[PLOTLY])]
    return problems


def _only_allowed(lines: list[str], allow: tuple[str, ...]) -> bool:
    """Every line is an allowed warning's ``file:line: Name: message``; IPython 7 (Colab's) writes the message on
    the line after a header that ends with ``Name:``, which belongs to it."""
    message_next = False
    for line in lines:
        if message_next:
            message_next = False
        elif any(a in line for a in allow):
            message_next = line.rstrip().endswith(":")
        else:
            return False
    return True


def execute_notebook(name: str, out_dir: Path, check: bool = True, *, cwd: Path = ROOT, allow_stderr=(),
                     **parameters) -> dict:
    """Run ``notebooks/<name>`` with papermill from ``cwd`` (the repository root, as a user running
    ``papermill notebooks/...`` would) and return the metrics JSON it wrote to ``output_dir``; with ``check`` (the
    default) fail on anything :func:`notebook_problems` finds in the executed notebook."""
    import papermill as pm
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS / name), str(out_dir / name), cwd=str(cwd), kernel_name="python3",
                        parameters={**parameters, "output_dir": str(out_dir)}, progress_bar=False)
    if check:
        problems = notebook_problems(out_dir / name, tuple(allow_stderr))
        assert not problems, f"{name}: " + "\n".join(problems)
    with open(out_dir / "metrics.json") as f:
        return json.load(f)


@pytest.fixture
def run_notebook(tmp_path):
    def run(name, *, check: bool = True, cwd: Path = ROOT, allow_stderr=(), **parameters):
        return execute_notebook(name, tmp_path, check, cwd=cwd, allow_stderr=allow_stderr, **parameters)
    return run


def setup_cell_error(name: str, tmp_path: Path, **parameters):
    """Run ``notebooks/<name>`` by papermill with a bad parameter; return the PapermillExecutionError after checking
    that it came from the setup cell (the one calling ``setup(globals(), ...)``) and that nothing ran after it."""
    import nbformat
    import papermill as pm
    out = tmp_path / name
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(NOTEBOOKS / name), str(out), cwd=str(ROOT), kernel_name="python3",
                            parameters={"output_dir": str(tmp_path / "out"), **parameters}, progress_bar=False)
    err = info.value
    assert err.ename == "ParameterError", (err.ename, err.evalue)
    assert "setup(globals()" in err.source, err.source[:200]
    executed = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                and c.get("execution_count") is not None]
    assert "setup(globals()" in executed[-1].source      # the setup cell was the last one to run
    return err


# parameters the notebook tests run with, shared by every test that needs the executed notebook (the site export)
TEST_PARAMETERS = {
    "02_gradient_descent.ipynb": dict(steps=60, grid=30, theory_steps=200, settle_steps=200, sweep_points=6,
                                      explorer_grid=20, basin_grid=6, basin_steps=150, noise_steps=600,
                                      explorer_basin_grid=4),
}


@pytest.fixture(scope="session")
def executed_notebook(tmp_path_factory):
    """``executed_notebook(name, **parameters) -> (executed .ipynb path, metrics)``: each notebook runs once per
    session and parameter set, whichever test asks first (pytest-xdist workers share the folder, under a lock), so
    a test of what is built from an executed notebook (the static site) does not train again."""
    import hashlib
    import shutil

    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "executed-notebooks"
    root.mkdir(parents=True, exist_ok=True)

    def run(name: str, **parameters):
        parameters = {**TEST_PARAMETERS.get(name, {}), **parameters}
        key = hashlib.sha1(json.dumps([name, parameters], sort_keys=True, default=str).encode()).hexdigest()[:10]
        out = root / f"{Path(name).stem}-{key}"
        with FileLock(str(out) + ".lock"):
            if not (out / "done").exists():
                shutil.rmtree(out, ignore_errors=True)
                execute_notebook(name, out, **parameters)
                (out / "done").write_text("ok")
        with open(out / "metrics.json") as f:
            return out / name, json.load(f)
    return run
