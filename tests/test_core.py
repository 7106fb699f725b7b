"""ftkit.core is the base: no module imports train for a base class, and no import circle exists anywhere."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import ftkit

PACKAGE = Path(ftkit.__file__).parent
MODULES = sorted("ftkit." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
                 for p in PACKAGE.rglob("*.py"))


def test_every_module_imports_first_in_a_fresh_interpreter_state():
    """Importing any module first (no other ftkit module loaded) works: a circle would fail for one of them."""
    code = f"""
import importlib, json, sys, traceback
failed = {{}}
for name in {MODULES!r}:
    for loaded in [m for m in sys.modules if m == "ftkit" or m.startswith("ftkit.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = f"{{type(e).__name__}}: {{e}}"
print(json.dumps(failed))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {}


def test_core_depends_on_nothing_above_utils_and_nothing_imports_train_for_a_base_class():
    def ftkit_imports(path):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                yield node.module.split(".")[0], [a.name for a in node.names]

    assert {m for m, _ in ftkit_imports(PACKAGE / "core.py")} <= {"utils"}
    for path in PACKAGE.rglob("*.py"):
        for module, names in ftkit_imports(path):
            if module == "train":
                assert not {"Callback", "History", "TrainState"} & set(names), f"{path.name} imports a base from train"
