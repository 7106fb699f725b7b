"""Every notebook 01–08 under papermill on Colab's package versions (the Python 3.13 venv that ``.ci/colab-env``
builds: plotly 5.24.1, ipywidgets 7.7.1, ipykernel 6.17.1, transformers 5.15, …), with exactly the parameters and
checks of the notebook tests (``tests/test_nb_*.py`` and conftest's ``execute_notebook``/``notebook_problems``: no
stderr, no broken figure, the notebook's claims): those tests run again, by pytest inside that venv.

Skipped, with the command that builds it, when the env is not built (``.ci/run`` builds it before pytest)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.notebook, pytest.mark.colab]   # its own CI step: pytest -m colab

ROOT = Path(__file__).resolve().parents[1]
# 09 compares sweeps: it needs ftkit[sweep] (Optuna, Ray), which the Colab cell of 01-08 does not install
NOTEBOOK_TESTS = sorted(p.name for p in (ROOT / "tests").glob("test_nb_0*.py") if not p.name.startswith("test_nb_09"))
# what the env must hold (Colab's versions, from tests/assets/colab-pins.txt)
STACK = ["python", "plotly", "ipywidgets", "widgetsnbextension", "ipykernel", "ipython", "jupyter_client",
         "notebook", "anywidget", "transformers", "tokenizers", "accelerate", "peft", "datasets", "numpy", "pandas",
         "torch"]


def colab_env() -> Path | None:
    """The built Colab env's folder, or None (``bash .ci/colab-env --path`` knows where it is kept)."""
    found = subprocess.run(["bash", str(ROOT / ".ci" / "colab-env"), "--path"], capture_output=True, text=True)
    return Path(found.stdout.strip()) if found.returncode == 0 else None


def colab_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "tests" / "assets" / "colab-pins.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("-", "_")] = version.strip()
    return pins


@pytest.fixture(scope="module")
def colab_python():
    env = colab_env()
    if env is None:
        pytest.skip("Colab's stack is not built here: run `bash .ci/colab-env` (a Python 3.13 venv, ~1.5 min cold)")
    return env / "bin" / "python"


def env_vars() -> dict:
    # ftkit from this checkout (whichever checkout built the cached env); nothing of the outer venv leaks in
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_the_env_holds_colabs_versions(colab_python):
    out = subprocess.run([str(colab_python), "-c", "import sys, importlib.metadata as m; print(sys.version.split()[0]);"
                          + "print(*[m.version(n) for n in sys.argv[1:]])", *STACK[1:]],
                         capture_output=True, text=True, env=env_vars(), check=True).stdout.split()
    have = dict(zip(STACK, out))
    pins = colab_pins()
    assert have["python"].startswith("3.13."), have["python"]
    for name in STACK[1:-1]:
        assert have[name] == pins[name], f"{name}: {have[name]} here, Colab has {pins[name]}"
    assert have["torch"].split("+")[0] == "2.11.0", have["torch"]     # Colab: 2.11.0+cpu (the CPU runtime)


@pytest.mark.timeout(1200)   # one notebook test, run by a second pytest (its own limit: pyproject's 300 s)
@pytest.mark.parametrize("test_file", NOTEBOOK_TESTS)
def test_notebook_on_colabs_versions(colab_python, test_file):
    run = subprocess.run([str(colab_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          f"tests/{test_file}"], cwd=ROOT, capture_output=True, text=True, env=env_vars())
    assert run.returncode == 0, f"{test_file} on Colab's versions:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert " passed" in run.stdout.strip().splitlines()[-1], run.stdout[-500:]
