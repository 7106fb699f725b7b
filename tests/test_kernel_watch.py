"""tests/kernel_watch.py, the watch on the notebook runs: a cell with no reply gets both sides' stacks dumped, the
run goes once more with a warning that says where it hung, and a run that hangs twice fails."""
import nbformat
import papermill as pm
import pytest

import kernel_watch


def hangs_once(tmp_path):
    """A notebook whose second cell sleeps far past the timeout on its first run only (a marker file remembers)."""
    marker = tmp_path / "ran-once"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os, time"),
        nbformat.v4.new_code_cell(f"first = not os.path.exists({str(marker)!r})\nopen({str(marker)!r}, 'w').close()\n"
                                  "if first:\n    time.sleep(60)"),
        nbformat.v4.new_code_cell("print('done')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "hang.ipynb")
    return tmp_path / "hang.ipynb"


def run(tmp_path, monkeypatch, path, dump_after, timeout):
    """kernel_watch.execute on ``path`` with short limits, its dumps under ``tmp_path``."""
    monkeypatch.setattr(kernel_watch, "DUMPS", tmp_path / "hangs")
    monkeypatch.setattr(kernel_watch, "DUMP_AFTER", dump_after)
    monkeypatch.setattr(kernel_watch, "CELL_TIMEOUT", timeout)
    kernel_watch.execute(pm.execute_notebook, path.name, str(path), str(tmp_path / "out.ipynb"),
                         kernel_name="python3", progress_bar=False)


@pytest.mark.notebook
def test_a_hung_cell_is_dumped_named_and_run_once_more(tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match="hang.ipynb hung") as seen:
        run(tmp_path, monkeypatch, hangs_once(tmp_path), 3, 6)
    report = str(seen[0].message)
    assert "cell 1 (\"first = not os.path.exists(" in report and "had no reply after 3 s" in report, report
    kernel = report.split("\nkernel ")[1].split("this process")[0]          # the kernel's main thread, innermost first
    assert "in <module>" in kernel.splitlines()[2] and "ipykernel_launcher.py" in kernel, report
    assert "nbclient" in report.split("this process")[1] or "papermill" in report.split("this process")[1], report
    assert nbformat.read(tmp_path / "out.ipynb", 4).cells[2].outputs[0]["text"] == "done\n"   # the second run's
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "hangs").iterdir()) == ["client", "kernel"]


@pytest.mark.notebook
def test_a_run_that_hangs_twice_fails_saying_where(tmp_path, monkeypatch):
    path = hangs_once(tmp_path)
    (tmp_path / "ran-once").touch()
    path.write_text(path.read_text().replace("if first:", "if True:"))
    with pytest.warns(UserWarning, match="runs once more"), \
            pytest.raises(AssertionError, match=r"hang.ipynb hung twice; the second time:\nhang.ipynb: cell 1"):
        run(tmp_path, monkeypatch, path, 2, 3)
