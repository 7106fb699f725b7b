"""Running the notebooks in tests: papermill (through kernel_watch's watch on a hung cell), the small parameters
each notebook test runs with, what a user would see go wrong in an executed notebook, and a once-per-session
make for what several tests (and pytest-xdist workers) share. conftest.py turns these into fixtures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import kernel_watch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
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
    kernel_watch.execute(pm.execute_notebook, name, str(NOTEBOOKS / name), str(out_dir / name), cwd=str(cwd),
                         kernel_name="python3", parameters={**parameters, "output_dir": str(out_dir)},
                         progress_bar=False)
    if check:
        problems = notebook_problems(out_dir / name, tuple(allow_stderr))
        assert not problems, f"{name}: " + "\n".join(problems)
    with open(out_dir / "metrics.json") as f:
        return json.load(f)


def setup_cell_error(name: str, tmp_path: Path, **parameters):
    """Run ``notebooks/<name>`` by papermill with a bad parameter; return the PapermillExecutionError after checking
    that it came from the setup cell (the one calling ``setup(globals(), ...)``) and that nothing ran after it."""
    import nbformat
    import papermill as pm
    out = tmp_path / name
    with pytest.raises(pm.PapermillExecutionError) as info:
        kernel_watch.execute(pm.execute_notebook, name, str(NOTEBOOKS / name), str(out), cwd=str(ROOT),
                             kernel_name="python3", parameters={"output_dir": str(tmp_path / "out"), **parameters},
                             progress_bar=False)
    err = info.value
    assert err.ename == "ParameterError", (err.ename, err.evalue)
    assert "setup(globals()" in err.source, err.source[:200]
    executed = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                and c.get("execution_count") is not None]
    assert "setup(globals()" in executed[-1].source      # the setup cell was the last one to run
    return err


# parameters the notebook tests run with, shared by every test that needs the executed notebook (the site export):
# with the same parameters a notebook runs once per session
TEST_PARAMETERS = {
    "02_gradient_descent.ipynb": dict(steps=60, grid=30, theory_steps=200, settle_steps=200, sweep_points=6,
                                      explorer_grid=20, basin_grid=6, basin_steps=150, noise_steps=600,
                                      explorer_basin_grid=4),
    "03_cifar10_cnn.ipynb": dict(epochs=2, batch_size=64, lr=3e-3, device="cpu", num_workers=0, throughput_batches=3,
                                 subset=600, ddp=True, ddp_device="cpu", article_images=300, article_epochs=2),
}


def make_once(folder: Path, make) -> Path:
    """``make(folder)`` unless another test (in any worker) already did; under a lock, so it runs once."""
    import shutil

    from filelock import FileLock
    with FileLock(str(folder) + ".lock"):
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            make(folder)
            (folder / ".done").write_text("ok")
    return folder
