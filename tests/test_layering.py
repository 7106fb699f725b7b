"""The floor plan, read from the source: imports point down the layers (top-level bases → data → train → topics →
plots → ui), no import circle exists, counting imports inside functions and ``__getattr__``, and every module
still imports first in a fresh interpreter."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import ftkit

PACKAGE = Path(ftkit.__file__).parent
MODULES = sorted("ftkit." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
                 for p in PACKAGE.rglob("*.py"))
MODULES = [m.removesuffix(".") for m in MODULES]

# the layers, lowest first: a module may import its own unit (no circle) and units of a lower rank only
RANK = {"utils": 0, "env": 0, "core": 1, "optim": 2, "schedules": 2, "metrics": 2, "models": 2, "notebook": 2, "losses": 3, "params": 3,
        "data": 4, "train": 5, "optviz": 6, "nlp": 6, "vision": 6, "articles": 7, "plots": 8, "ui": 9,
        "sweep": 10, "export": 10, "__main__": 11}
TOP_LEVEL_LIMIT = 10


def unit(module: str) -> str:
    """'ftkit.train.loop' → 'train'; the package root 'ftkit' is its own unit above every layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ftkit"


def path_of(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    return PACKAGE / rel / "__init__.py" if (PACKAGE / rel).is_dir() else PACKAGE / rel.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """Every ftkit module ``module`` imports anywhere in its source (top level, functions, ``__getattr__``,
    ``importlib.import_module`` with a literal name)."""
    path = path_of(module)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()

    def add(target: str, names=()):
        if not (target == "ftkit" or target.startswith("ftkit.")):
            return
        for name in names:      # `from . import races` names a submodule
            if f"{target}.{name}" in MODULES:
                found.add(f"{target}.{name}")
                break
        else:
            while target not in MODULES:
                target = target.rsplit(".", 1)[0]
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [a.name for a in node.names]
            if any(f"{base}.{n}" in MODULES for n in names):
                for n in names:
                    add(base, [n])
            else:
                add(base)
        elif isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(arg.value if not arg.value.startswith(".") else package + arg.value)
    found.discard(module)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_top_level_holds_only_the_shared_bases():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))   # __main__: the CLI
    assert len(top) <= TOP_LEVEL_LIMIT, top
    assert set(top) | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} <= set(RANK)


@pytest.mark.parametrize("module", [m for m in MODULES if m != "ftkit"])
def test_imports_point_down_the_layers(module):
    """The root package's lazy ``__getattr__`` is the public API over everything; every other module imports
    its own unit or a lower layer only."""
    mine = unit(module)
    upward = sorted(t for t in GRAPH[module] if unit(t) != mine and (unit(t) == "ftkit" or RANK[unit(t)] >= RANK[mine]))
    assert not upward, f"{module} (layer {mine}) imports {upward}: move the shared piece down or the caller up"


def test_no_import_circle_counting_imports_inside_functions():
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in sorted(GRAPH[m]):
            if t != "ftkit":
                visit(t)
        stack.pop()

    for m in MODULES:
        visit(m)
    assert not cycles, "import circles: " + "; ".join(" → ".join(c) for c in cycles)


def test_the_reader_sees_the_graph_the_interpreter_sees():
    """The AST reader is not blind: it finds the imports we know are there, the lazy ones included."""
    assert "ftkit.train.step" in GRAPH["ftkit.train.distributed"]
    assert {"ftkit.core", "ftkit.utils"} <= GRAPH["ftkit.train.loop"] | GRAPH["ftkit.train.step"]
    assert "ftkit.optviz.races" in GRAPH["ftkit.optviz"]


def test_every_module_imports_first_in_a_fresh_interpreter_state():
    """Importing any module first (no other ftkit module loaded) works."""
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


def test_train_module_imports_no_widgets_or_plotly():
    code = "import sys, ftkit.train, ftkit.train.callbacks; print(json.dumps(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('plotly', 'ipywidgets'))))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
