"""mypy over ftkit/ with the configuration in pyproject.toml ([tool.mypy], lenient to start): no errors, and the
check does catch one."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                 reason="mypy is not installed (pip install -e '.[dev]')"),
              # one worker runs both: two mypy runs writing the same .mypy_cache at once crashed one of them
              # ("INTERNAL ERROR", exit 2; seen once in CI), and the second run reads the first one's cache
              pytest.mark.xdist_group("mypy")]


def mypy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.timeout(900)
def test_mypy_finds_no_error_in_ftkit():
    run = mypy()                                     # files and options from pyproject.toml
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Success: no issues found" in run.stdout


@pytest.mark.timeout(900)
def test_mypy_catches_a_wrong_call(tmp_path):
    bad = tmp_path / "bad_use.py"
    bad.write_text("from ftkit.env import require\nrequire()\n"
                   "from ftkit.nlp.ner_scores import get_entities\nget_entities(['O'], mode='strict')\n")
    run = mypy(str(bad))
    assert run.returncode == 1
    assert 'Missing positional argument "module" in call to "require"' in run.stdout
    assert 'Unexpected keyword argument "mode" for "get_entities"' in run.stdout
