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


def execute_notebook(name: str, out_dir: Path, **parameters) -> dict:
    """Run ``notebooks/<name>`` with papermill and return the metrics JSON it wrote to ``output_dir``."""
    import papermill as pm
    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS / name), str(out_dir / name), cwd=str(NOTEBOOKS), kernel_name="python3",
                        parameters={**parameters, "output_dir": str(out_dir)}, progress_bar=False)
    with open(out_dir / "metrics.json") as f:
        return json.load(f)


@pytest.fixture
def run_notebook(tmp_path):
    def run(name, **parameters):
        return execute_notebook(name, tmp_path, **parameters)
    return run
