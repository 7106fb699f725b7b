"""The floor plan, read from the source: imports point down the layers (top-level bases → data → train → topics →
plots → ui), no import circle exists, counting imports inside functions and ``__getattr__``, and every module
still imports first in a fresh interpreter."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ftkit

from conftest import fresh_interpreter

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
    assert fresh_interpreter(code) == {}


def test_train_module_imports_no_widgets_or_plotly():
    assert fresh_interpreter("import sys, ftkit.train, ftkit.train.callbacks; print(json.dumps(sorted(m for m in "
                             "sys.modules if m.split('.')[0] in ('plotly', 'ipywidgets'))))") == []


def test_the_package_root_and_the_notebook_tools_start_without_torch():
    """``import ftkit`` loads every name on first use: the checks a notebook's setup cell runs and a sweep's trial
    process (which only runs a kernel) never import torch (1.7 s each, twice per trial); the first name that needs it
    loads it."""
    assert fresh_interpreter(
        "import sys, ftkit, ftkit.notebook, ftkit.sweep, ftkit.sweep.worker; before = 'torch' in sys.modules; "
        "ftkit.notebook.Int(min=1); ftkit.make_optimizer; print(json.dumps([before, 'torch' in sys.modules]))"
    ) == [False, True]


PACKAGES = sorted(p.parent for p in PACKAGE.rglob("__init__.py"))


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.relative_to(PACKAGE.parent).as_posix())
def test_every_package_init_has_one_shape(folder):
    """One ``__init__`` style (ftkit.nlp and ftkit.vision are the model): a docstring saying what the package holds,
    names imported by name (never ``import *``, so a reader sees where each comes from), and a literal ``__all__``
    of strings (the root may add its lazy map's keys, ``*_LAZY``) whose every name is imported or defined there, a
    key of its lazy map, or a submodule of the package (loaded on first use by ``__getattr__``)."""
    tree = ast.parse((folder / "__init__.py").read_text())
    assert ast.get_docstring(tree), "the package says what it holds"
    stars = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)]
    assert not stars, f"import * from {stars}: import the names"
    [value] = [n.value for n in tree.body if isinstance(n, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
    assert isinstance(value, ast.List), "__all__ is a list written out"
    defined, lazy = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
                lazy = {k.value for k in node.value.keys}
    names = []
    for element in value.elts:
        if isinstance(element, ast.Starred):
            assert folder == PACKAGE and ast.unparse(element) == "*_LAZY", ast.unparse(element)
            names += sorted(lazy)
        else:
            assert isinstance(element, ast.Constant) and isinstance(element.value, str), ast.unparse(element)
            names.append(element.value)
    submodules = {p.stem for p in folder.glob("*.py")} | {p.parent.name for p in folder.glob("*/__init__.py")}
    getattr_names = {c.value for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"
                     for c in ast.walk(n) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    unknown = [n for n in names if n not in defined | lazy | submodules | getattr_names]
    assert not unknown, f"__all__ names {unknown}, which the __init__ neither imports, defines nor loads lazily"
    assert len(names) == len(set(names)), "a name twice in __all__"
