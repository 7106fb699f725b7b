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
import numbers
import os
import types
from dataclasses import dataclass, field

from .utils import check_int, check_writable, did_you_mean, normalize_name, parse_device, whole_number
from .env import input_cells

__all__ = ["setup", "ParameterError", "Int", "Float", "Bool", "Str", "Choice", "Dashboard", "ListOf", "Path", "OutputDir", "Device",
           "choose_preset", "PRESETS", "FromPreset", "Claims"]

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
        return whole_number(self.min, self.max) + (" or None" if self.optional else "")

    def _check(self, name, value):
        whole = _whole(value)               # an integral float (3.0) is taken as 3 here, unlike check_int
        try:
            return check_int(name, whole, self.min, maximum=self.max)
        except ValueError:
            self.fail(name, value)


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
        if isinstance(value, (bool, _np_bool())) or not isinstance(value, numbers.Real):
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
        if not isinstance(value, (bool, _np_bool())):
            self.fail(name, value)
        return bool(value)


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
        for option in self.options:   # 1 == True in Python: a bool matches only a bool, a number only a number
            if value == option and isinstance(value, bool) == isinstance(option, bool):
                return option
        if isinstance(value, str) and normalize_name(value) in self.options:
            return normalize_name(value)          # "one-cycle" → "one_cycle", "Adam" → "adam"
        if isinstance(value, str):
            self.fail(name, value, did_you_mean(normalize_name(value), [str(o) for o in self.options]))
        self.fail(name, value)


class Dashboard(Choice):
    """The ``dashboard`` parameter of a training notebook: ``"auto"`` (the interactive dashboard where a widget
    front-end answers, else a static plot), ``True`` or ``False`` — what ``ftkit.ui.fit_live_async`` takes."""

    def __init__(self, *, help: str = ""):
        super().__init__("auto", True, False, help=help)


class ListOf(Spec):
    """A list (or tuple) whose items each pass ``item``; a lone string is refused with the list to write."""

    def __init__(self, item: Spec, *, min_len: int = 1, unique: bool | None = None, optional: bool = False,
                 help: str = ""):
        super().__init__(optional=optional, help=help)
        self.item, self.min_len = item, min_len
        self.unique = isinstance(item, Choice) if unique is None else unique   # a choice twice is a typo

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
        items = [self.item.check(f"{name}[{i}]", v) for i, v in enumerate(value)]
        twice = [v for i, v in enumerate(items) if v in items[:i]]
        if self.unique and twice:
            self.fail(name, value, f" without repeats ({twice[0]!r} is there twice: it would run twice)")
        return items


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
        try:
            check_writable(os.path.abspath(os.fspath(value)), f"parameter {name}={value!r}: the folder cannot be written; "
                           "the notebook",
                           f"{name}='outputs/run1'")
        except PermissionError as e:
            raise ParameterError(str(e)) from None
        return os.fspath(value)


@dataclass
class Device(Spec):
    """``"auto"`` (cuda → mps → cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``."""

    def describe(self):
        return "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'" + (" or None" if self.optional else "")

    def _check(self, name, value):
        try:
            return parse_device(value)
        except ValueError as e:
            self.fail(name, value, str(e).partition("'mps'")[2])   # the hint after the list ('gpu' → 'cuda')


def _np_bool() -> type:
    import numpy as np
    return np.bool_


def _whole(value) -> int | None:
    """``value`` as an int when it is a whole number (an int, a numpy integer, an integral float); bools are not."""
    if isinstance(value, (bool, _np_bool())):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(float(value))
    return None


# --------------------------------------------------------------------------- presets
class FromPreset(int):
    """A whole number the preset chose, not the user (``from_preset`` is True). A loader that finds less data than
    a preset size asks for uses what there is and says so; a size the user set is checked as given."""
    from_preset = True

    def __repr__(self):
        return int.__repr__(self)


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
    from .env import check_versions
    check_versions()    # an older preinstalled package (a Colab runtime) stops here, before any data loads
    presets = presets or {}
    spec = {"preset": Choice(*PRESETS, help="'auto' picks 'gpu' where CUDA is there"), **spec}
    candidates = _parameter_cell_names(namespace)
    if candidates is None:    # not in a kernel (or no parameters cell in its history): every variable there
        candidates = [n for n, v in namespace.items() if _looks_like_parameter(n, v)]
    unknown = sorted(n for n in candidates if n not in spec and not n.startswith("_"))
    if unknown:
        name = unknown[0]
        raise ParameterError(f"unknown parameter {name!r}" + did_you_mean(name, list(spec))
                             + f". This notebook's parameters: {', '.join(spec)}")
    missing = [n for n in spec if n not in namespace]
    if missing:
        raise ParameterError(f"parameter {missing[0]!r} is not set: the parameters cell must define it")
    # the values set by hand are checked first: a mistake stops before the preset's choice loads torch (1–2 s)
    by_hand = {n: kind.check(n, namespace[n]) for n, kind in spec.items() if n != "preset" and namespace[n] is not None}
    preset, why = choose_preset(namespace["preset"])
    if preset == "gpu" and "device" in spec:   # a notebook that trains on a device: its GPU preset needs one
        import torch
        if not torch.cuda.is_available():
            raise ParameterError("parameter preset='gpu': the full experiment needs a CUDA GPU, and none is here; "
                                 "use preset='auto' or 'cpu' (then set any knob you want larger yourself)")
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
        checked[name] = by_hand[name] if name in by_hand else kind.check(name, value)
        if name in filled and type(checked[name]) is int:
            checked[name] = FromPreset(checked[name])
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
    cells = input_cells(namespace)
    if len(cells) < 2:
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

    The claims are about full runs: give the trainings they rest on, ``Claims(history)`` or
    ``Claims({"full": h1, "lora": h2})``, and if one was stopped early (the dashboard's Stop, the kernel's ■) every
    claim is printed with its value as *not checked* and :meth:`verify` says once why, instead of failing::

        Claims not checked: stopped by request at epoch 1, step 2. Run the training to its end to check them.
    """

    def __init__(self, *trainings):
        self.rows: list[dict] = []
        stopped, seen = [], set()
        for runs in trainings:     # a History (anything with ``stop_reason``; None: no run) or a dict name → History
            for name, h in (runs.items() if isinstance(runs, dict) else [(None, runs)]):
                if getattr(h, "stop_reason", None) and id(h) not in seen:   # one History given twice: said once
                    seen.add(id(h))
                    stopped.append(f"{name}: {h.stop_reason}" if name else h.stop_reason)
        self.stopped: str | None = "; ".join(stopped) or None

    def check(self, claim: str, value, *, above=None, below=None) -> bool:
        if above is None and below is None:
            raise ValueError(f"claim {claim!r}: give the margin it must clear (above= and/or below=)")
        value = float(value)
        ok = (above is None or value > above) and (below is None or value < below)
        bound = " and ".join(f"{op} {b:.4g}" for op, b in ((">", above), ("<", below)) if b is not None)
        self.rows.append({"claim": claim, "value": value, "must be": bound, "holds": ok})
        verdict = "not checked" if self.stopped else "holds " if ok else "FAILS "
        print(f"{verdict} {claim}: {value:.4g} (must be {bound})")
        return ok

    def verify(self) -> list[dict]:
        if self.stopped:
            print(f"Claims not checked: {self.stopped}. Run the training to its end to check them.")
            return self.rows
        failed = [f"{r['claim']}: got {r['value']:.4g}, must be {r['must be']}" for r in self.rows if not r["holds"]]
        if failed:
            raise AssertionError("claims that do not hold on this run: " + "; ".join(failed))
        return self.rows
