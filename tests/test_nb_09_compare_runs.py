"""notebooks/09_compare_runs.ipynb under papermill, pointed at a finished sweep of the tiny notebook (its own default
sweep of notebook 06 takes minutes): the view's table, curves, figures and best line, read from its metrics.json."""
import pytest

from conftest import ROOT

pytestmark = [pytest.mark.notebook, pytest.mark.multiprocess]

TINY = ROOT / "tests" / "assets" / "tiny_sweep.ipynb"


def test_compare_runs_notebook_on_a_finished_sweep(run_notebook, tmp_path):
    from ftkit.sweep import sweep
    out = tmp_path / "sweep"
    table = sweep(TINY, ["lr=0.05,0.1", "steps=5,10"], metric="loss", out=out, workers=2, progress=False)
    m = run_notebook("09_compare_runs.ipynb", sweep_dir=str(out))
    assert m["ran_here"] is False and m["metric"] == "loss"
    assert (m["trials"], m["complete"], m["failed"], m["curves"]) == (4, 4, 0, 4)
    assert m["figures"] == ["curves", "parallel"]
    assert m["best_value"] == table.loss.min() and (m["best"]["lr"], m["best"]["steps"]) == (0.1, 10)
    assert m["command"].endswith("best.ipynb -p lr 0.1 -p steps 10")
    assert [r["loss"] for r in m["runs"]] == sorted(table.loss)
