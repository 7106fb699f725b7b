"""What every notebook's first cells use: a preset chosen from the device, and one check of the ``parameters`` cell.

The cell after ``parameters`` calls :func:`setup` with the notebook's parameter spec and its presets::

    P = setup(globals(), {
        "epochs": Int(min=1), "lr": Float(min=0, open_min=True), "optimizer": Choice(*OPTIMIZERS),
        "modes": ListOf(Choice("full", "head", "lora")), "output_dir": OutputDir(),
    }, presets={"cpu": dict(epochs=2), "gpu": dict(epochs=10)}, minutes={"cpu": 4, "gpu": 6})

Rules (what a reader of any notebook can count on):

- ``preset = "auto"`` picks ``"gpu"`` where CUDA is there, else ``"cpu"``; the cell prints the preset, why, and the
  expected minutes. A parameter left at ``None`` in the ``parameters`` cell takes the preset's value; any value the
  user sets (in the cell, or ``papermill -p``) wins.
- Every parameter is checked before any data loads: an unknown name (a typo), a wrong type (a string where a list
  or number belongs), a value out of range or not among the choices stops the notebook with one message that names
  the parameter and what it accepts (papermill issues #818, #869 ask for exactly this).
- The checked values are written back into the notebook's namespace, so later cells use the plain names.
"""
from __future__ import annotations

import ast
import difflib
import os
import types
from dataclasses import dataclass, field

__all__ = ["setup", "ParameterError", "Int", "Float", "Bool", "Str", "Choice", "ListOf", "Path", "OutputDir", "Device",
           "choose_preset", "PRESETS", "Claims"]

PRESETS = ("auto", "cpu", "gpu")
# names a kernel defines by itself; never parameters
_KERNEL_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open", "display"}


class ParameterError(ValueError):
    """A notebook parameter that cannot work; raised before any data loads."""


# --------------------------------------------------------------------------- the kinds of parameter
@dataclass
class Spec:
    optional: bool = False          # None is a valid final value (e.g. subset=None: every example)
    help: str = ""

    def check(self, name: str, value):
        if value is None:
            if self.optional:
                return None
            raise ParameterError(f"parameter {name} is None: {self.describe()} is needed (set it, or choose a preset)")
        return self._check(name, value)

    def fail(self, name, value, extra: str = ""):
        raise ParameterError(f"parameter {name}={value!r}: expected {self.describe()}{extra}"
                             + (f" ({self.help})" if self.help else ""))

    def describe(self) -> str:
        raise NotImplementedError

    def _check(self, name, value):
        raise NotImplementedError


@dataclass
class Int(Spec):
    min: int | None = None
    max: int | None = None

    def describe(self):
        return "a whole number" + _bounds(self.min, self.max) + (" or None" if self.optional else "")

    def _check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.fail(name, value)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            self.fail(name, value)
        return value


@dataclass
class Float(Spec):
    min: float | None = None
    max: float | None = None
    open_min: bool = False          # min itself excluded (a learning rate > 0)

    def describe(self):
        low = "" if self.min is None else f" {'>' if self.open_min else '>='} {self.min:g}"
        high = "" if self.max is None else f" <= {self.max:g}"
        joint = " and" if low and high else ""
        return "a number" + low + joint + high + (" or None" if self.optional else "")

    def _check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, value)
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(name, value)
        if self.min is not None and (value < self.min or (self.open_min and value == self.min)):
            self.fail(name, value)
        if self.max is not None and value > self.max:
            self.fail(name, value)
        return value


@dataclass
class Bool(Spec):
    def describe(self):
        return "True or False" + (" or None" if self.optional else "")

    def _check(self, name, value):
        if not isinstance(value, bool):
            self.fail(name, value)
        return value


@dataclass
class Str(Spec):
    def describe(self):
        return "a string" + (" or None" if self.optional else "")

    def _check(self, name, value):
        if not isinstance(value, str) or not value:
            self.fail(name, value)
        return value


class Choice(Spec):
    """One of ``options`` (case-sensitive after normalising ``-`` to ``_``); a near miss gets "did you mean"."""

    def __init__(self, *options, optional: bool = False, help: str = ""):
        super().__init__(optional=optional, help=help)
        self.options = tuple(options)

    def describe(self):
        return "one of " + ", ".join(repr(o) for o in self.options) + (" or None" if self.optional else "")

    def _check(self, name, value):
        if value in self.options:
            return value
        if isinstance(value, str):
            near = difflib.get_close_matches(value, [str(o) for o in self.options], n=1)
            self.fail(name, value, f"; did you mean {near[0]!r}?" if near else "")
        self.fail(name, value)


class ListOf(Spec):
    """A list (or tuple) whose items each pass ``item``; a lone string is refused with the list to write."""

    def __init__(self, item: Spec, *, min_len: int = 1, optional: bool = False, help: str = ""):
        super().__init__(optional=optional, help=help)
        self.item, self.min_len = item, min_len

    def describe(self):
        return f"a list of {self.item.describe()}" + (" or None" if self.optional else "")

    def _check(self, name, value):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            if isinstance(value, str) and value.strip()[:1] in "[(":   # papermill -p passes text, not a list
                hint = (f"; papermill's -p passes text: give a list with -y, e.g. papermill ... -y "
                        f"'{name}: {value.strip()}'")
            else:
                hint = f"; write {name}=[{value!r}]" if isinstance(value, (str, int, float)) else ""
            self.fail(name, value, hint)
        if len(value) < self.min_len:
            self.fail(name, value, f" with at least {self.min_len} item(s)")
        return [self.item.check(f"{name}[{i}]", v) for i, v in enumerate(value)]


@dataclass
class Path(Spec):
    """A path (string). Relative paths are read from the working directory, which the message names."""
    must_exist: bool = False

    def describe(self):
        return "a path" + (" that exists" if self.must_exist else "") + (" or None" if self.optional else "")

    def _check(self, name, value):
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            self.fail(name, value)
        if self.must_exist and not os.path.exists(value):
            self.fail(name, value, f"; nothing is there (working directory {os.getcwd()!r})")
        return os.fspath(value)


@dataclass
class OutputDir(Spec):
    """A folder the notebook writes to: created, and proven writable now — not after the training."""

    def describe(self):
        return "a writable folder path"

    def _check(self, name, value):
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
            self.fail(name, value)
        path = os.path.abspath(os.fspath(value))
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, f".ftkit-write-test-{os.getpid()}")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise ParameterError(f"parameter {name}={value!r}: the folder {path!r} cannot be written "
                                 f"({type(e).__name__}: {e.strerror or e}); give a folder you can write to, "
                                 "e.g. output_dir='outputs/run1'. Nothing has been trained yet") from None
        return os.fspath(value)


@dataclass
class Device(Spec):
    """``"auto"`` (cuda → mps → cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``."""

    def describe(self):
        return "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'" + (" or None" if self.optional else "")

    def _check(self, name, value):
        text = str(value) if type(value).__name__ == "device" else value   # a torch.device passes as its name
        if not isinstance(text, str):
            self.fail(name, value)
        base, _, index = text.partition(":")
        if base not in ("auto", "cpu", "cuda", "mps") or (index and not (base == "cuda" and index.isdigit())):
            near = difflib.get_close_matches(text, ["auto", "cpu", "cuda", "mps"], n=1)
            self.fail(name, value, f"; did you mean {near[0]!r}?" if near else "")
        return text


def _bounds(low, high) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


# --------------------------------------------------------------------------- presets
def choose_preset(preset: str = "auto") -> tuple[str, str]:
    """(preset, why): ``"auto"`` becomes ``"gpu"`` where CUDA is there, else ``"cpu"``."""
    Choice(*PRESETS).check("preset", preset)
    if preset != "auto":
        return preset, "set by you"
    import torch
    if torch.cuda.is_available():
        return "gpu", f"found {torch.cuda.get_device_name(0)}"
    return "cpu", "no CUDA GPU found"


@dataclass
class Setup:
    """What :func:`setup` decided: the preset, why, every checked parameter, and the result to expect."""
    preset: str
    why: str
    params: dict = field(default_factory=dict)
    from_preset: tuple = ()
    expected: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.params[name]

    def expect(self, got: str = "") -> str:
        """One line for the result cell: what this run got beside what each preset is expected to give."""
        mine = self.expected.get(self.preset)
        lines = [f"got {got}" if got else ""]
        if mine:
            lines.append(f"expected with preset {self.preset!r}: {mine}")
        lines += [f"preset {p!r}: {e}" for p, e in self.expected.items() if p != self.preset]
        return "; ".join(x for x in lines if x)


def _minutes(value) -> str:
    return f"about {value:g} min" if isinstance(value, (int, float)) else f"about {value}"


def setup(namespace: dict, spec: dict[str, Spec], *, presets: dict[str, dict] | None = None,
          minutes: dict[str, float | str] | None = None, expected: dict[str, str] | None = None,
          quiet: bool = False) -> Setup:
    """Check the notebook's parameters in ``namespace`` (its ``globals()``) against ``spec``, fill the ones left
    at ``None`` from the chosen preset, write the results back, and print the preset line.

    ``minutes``: the expected run time per preset (a number, or a text such as ``"12 min on a T4 (not run)"``);
    ``expected``: the result each preset should give, for :meth:`Setup.expect`.
    """
    presets = presets or {}
    spec = {"preset": Choice(*PRESETS, help="'auto' picks 'gpu' where CUDA is there"), **spec}
    candidates = _parameter_cell_names(namespace)
    if candidates is None:    # not in a kernel (or no parameters cell in its history): every variable there
        candidates = [n for n, v in namespace.items() if _looks_like_parameter(n, v)]
    unknown = sorted(n for n in candidates if n not in spec and not n.startswith("_"))
    if unknown:
        name = unknown[0]
        near = difflib.get_close_matches(name, list(spec), n=1)
        raise ParameterError(f"unknown parameter {name!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                             + f". This notebook's parameters: {', '.join(spec)}")
    missing = [n for n in spec if n not in namespace]
    if missing:
        raise ParameterError(f"parameter {missing[0]!r} is not set: the parameters cell must define it")
    preset, why = choose_preset(namespace["preset"])
    values = presets.get(preset, {})
    for name in values:
        if name not in spec:
            raise ParameterError(f"preset {preset!r} sets {name!r}, which is not a parameter")  # a notebook bug
    filled = tuple(n for n in spec if namespace[n] is None and n in values)
    checked = {"preset": preset}
    for name, kind in spec.items():
        if name == "preset":
            continue
        value = values[name] if name in filled else namespace[name]
        checked[name] = kind.check(name, value)
    namespace.update(checked)
    result = Setup(preset, why, checked, filled, dict(expected or {}))
    if not quiet:
        others = [p for p in presets if p != preset]
        eta = _minutes(minutes[preset]) if minutes and preset in minutes else ""
        print(f"preset {preset!r} ({why})" + (f": {eta}" if eta else "")
              + (f"; preset={others[0]!r} runs " + ("the full experiment" if others[0] == "gpu" else "the small one")
                 + (f" ({_minutes(minutes[others[0]])})" if minutes and others[0] in minutes else "")
                 if others else "")
              + (f". From the preset: " + ", ".join(f"{n}={checked[n]!r}" for n in filled) if filled else ""))
        if result.expected.get(preset):
            print(f"expected result: {result.expected[preset]}")
    return result


def _parameter_cell_names(namespace: dict) -> list[str] | None:
    """In a kernel: the names the parameters cell (and papermill's injected cell after it) assigned, read from the
    kernel's input history back to the cell that sets ``preset``. Variables later cells made on an earlier *Run
    All* are then no "unknown parameter". ``None`` outside a kernel or when no such cell is in the history."""
    cells = namespace.get("In") or namespace.get("_ih")
    if not isinstance(cells, list) or len(cells) < 2:
        return None
    names: list[str] = []
    for source in reversed(cells[:-1]):                  # the last entry is the running setup cell itself
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, TypeError):
            continue
        assigned = [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)]
        names += assigned
        if "preset" in assigned:
            return names
    return None


def _looks_like_parameter(name: str, value) -> bool:
    if name.startswith("_") or name in _KERNEL_NAMES or name.isupper():   # parameters are snake_case; CONSTANTS
        return False
    return not isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)) \
        and not callable(value)


class Claims:
    """The claims a notebook makes about its own run, each printed beside the value it measured and the margin that
    value must clear; :meth:`verify` raises one ``AssertionError`` naming every claim that failed (all are printed
    first, so a reader sees the whole picture)::

        claims = Claims()
        claims.check("held-out loss fell (nats)", before - after, above=0.3)
        claims.check("same logits after reload", diff, below=1e-5)
        claims.verify()
    """

    def __init__(self):
        self.rows: list[dict] = []

    def check(self, claim: str, value, *, above=None, below=None) -> bool:
        if above is None and below is None:
            raise ValueError(f"claim {claim!r}: give the margin it must clear (above= and/or below=)")
        value = float(value)
        ok = (above is None or value > above) and (below is None or value < below)
        bound = " and ".join(f"{op} {b:.4g}" for op, b in ((">", above), ("<", below)) if b is not None)
        self.rows.append({"claim": claim, "value": value, "must be": bound, "holds": ok})
        print(f"{'holds ' if ok else 'FAILS '} {claim}: {value:.4g} (must be {bound})")
        return ok

    def verify(self) -> list[dict]:
        failed = [f"{r['claim']}: got {r['value']:.4g}, must be {r['must be']}" for r in self.rows if not r["holds"]]
        if failed:
            raise AssertionError("claims that do not hold on this run: " + "; ".join(failed))
        return self.rows
