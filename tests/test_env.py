"""ftkit.env: a missing optional package names the extra that installs it, a too-old one names the upgrade, and
every optional import in ftkit goes through ``require``."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

from ftkit.env import EXTRAS, FLOORS, MissingExtraError, OldPackageError, check_versions, require

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_floors_are_pyprojects_floors():
    project = pyproject()
    reqs = list(project["dependencies"]) + [r for reqs in project["optional-dependencies"].values() for r in reqs]
    floors = {}
    for r in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(\s*;.*)?", r.strip())
        if m and m[1] in FLOORS:
            floors[m[1]] = m[2]
    assert floors == FLOORS


def test_extras_named_by_require_exist_in_pyproject():
    extras = pyproject()["optional-dependencies"]
    for module, (package, extra) in EXTRAS.items():
        assert extra in extras, (module, extra)
        if extra != "colab" or package == "jupyter-ui-poll":
            names = {re.split(r"[<>=;\[ ]", r)[0] for r in extras[extra]}
            assert package in names or any(n == "ftkit" for n in names), (module, extra, names)


def test_a_missing_extra_is_one_line_naming_the_install(monkeypatch):
    from ftkit.nlp.hf import load_tokenizer
    monkeypatch.setitem(sys.modules, "transformers", None)      # as if transformers were not installed
    with pytest.raises(MissingExtraError) as e:
        load_tokenizer("some/model")
    assert str(e.value) == 'transformers is not installed: pip install "ftkit[nlp]"'
    assert isinstance(e.value, ModuleNotFoundError) and "\n" not in str(e.value)


def test_a_missing_tensorboard_names_its_extra_before_training(monkeypatch, tmp_path):
    from ftkit.train.loggers import TensorBoardLogger
    logger = TensorBoardLogger(str(tmp_path / "tb"))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(MissingExtraError, match=r'^tensorboard is not installed: pip install "ftkit\[tensorboard\]"$'):
        logger.on_fit_start(None)


def test_require_returns_the_module_and_names_unknown_packages():
    assert require("json").dumps([1]) == "[1]"
    with pytest.raises(MissingExtraError, match="needs no_such_pkg_ftkit, which is not installed: pip install "
                                                "no_such_pkg_ftkit$"):
        require("no_such_pkg_ftkit", purpose="the test")


def test_an_old_package_is_one_line_with_the_pip_install_that_fixes_it(monkeypatch):
    import ftkit.env as deps
    versions = {"plotly": "5.18.0", "ipywidgets": "7.7.1", "torch": "2.11.0+cu128", "peft": None}
    monkeypatch.setattr(deps, "version_of", lambda name: versions.get(name))
    floors = {"plotly": "5.24", "ipywidgets": "7.7", "torch": "2.6", "peft": "0.18"}
    with pytest.raises(OldPackageError) as e:
        check_versions(floors=floors, notebook=True)
    assert str(e.value) == ('plotly 5.18.0 is installed, ftkit needs plotly >= 5.24: %pip install -U "plotly>=5.24" '
                            "then restart the session (Colab: Runtime > Restart session)")
    versions["plotly"] = "5.24.1"
    check_versions(floors=floors)                 # all new enough (peft not installed: require speaks for it)
    versions["torch"] = "2.5.1"
    with pytest.raises(OldPackageError, match=r'torch 2.5.1 is installed, ftkit needs torch >= 2.6: pip install -U '
                                              r'"torch>=2.6"$'):
        check_versions(floors=floors, notebook=False)


def test_this_environment_meets_the_floors():
    check_versions()


def test_notebook_setup_checks_versions_before_the_parameters(monkeypatch):
    import ftkit.env as deps
    from ftkit.notebook import setup
    monkeypatch.setattr(deps, "version_of", lambda name: "0.1" if name == "plotly" else None)
    with pytest.raises(OldPackageError, match="plotly 0.1 is installed"):
        setup({"preset": "cpu"}, {}, quiet=True)


def _unguarded_imports(tree: ast.AST):
    """(line, package) of each import of an optional package inside a function that no earlier
    ``require(...)`` call of that function covers."""
    skip = ("jupyter_ui_poll", "bitsandbytes", "papermill", "optuna")   # checked by find_spec / their own message
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        required = {}
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "require"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                required.setdefault(node.args[0].value, node.lineno)
        for node in ast.walk(fn):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                tensorboard = name.startswith("torch.utils.tensorboard")
                top = "tensorboard" if tensorboard else name.split(".")[0]
                if top in EXTRAS and top not in skip:
                    key = "torch.utils.tensorboard" if tensorboard else top
                    if required.get(key, node.lineno + 1) > node.lineno:
                        yield node.lineno, top


def test_every_optional_import_in_ftkit_goes_through_require():
    unguarded = [f"{path.relative_to(ROOT)}:{line} imports {top}"
                 for path in sorted((ROOT / "ftkit").rglob("*.py"))
                 for line, top in _unguarded_imports(ast.parse(path.read_text()))]
    assert not unguarded, unguarded
    assert "ftkit/nlp/hf.py" in {str(p.relative_to(ROOT)) for p in (ROOT / "ftkit").rglob("*.py")
                                 if "require(" in p.read_text()}
