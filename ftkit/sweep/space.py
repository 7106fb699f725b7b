"""The search space of a sweep, from ``--param`` lines: fixed values, grid axes (choices) and ranges.

``NAME=V`` fixes a parameter for every trial; ``NAME=V1,V2,...`` makes a grid axis (a choice for the random and TPE
samplers); ``NAME=log:1e-4..1e-2``, ``NAME=lin:0..0.5``, ``NAME=int:1..8`` and ``NAME=intlog:8..256`` are ranges
(random and TPE only). Each value is read as a notebook parameter would be written: ``True``/``False``/``None``,
numbers, plain text, and JSON (or Python) for lists: ``losses=["mse"],["mse","cross_entropy"]`` is two choices.
"""
from __future__ import annotations

import ast
import itertools
import json
import math
import re
from dataclasses import dataclass

__all__ = ["SweepError", "Param", "parse_value", "split_values", "parse_param", "check_space", "grid", "encode",
           "decode", "RANGE_KINDS"]

RANGE_KINDS = ("log", "lin", "int", "intlog")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SweepError(ValueError):
    """A sweep that cannot work as asked (a bad --param, a parameter the notebook lacks, a locked folder);
    raised before any trial starts."""


@dataclass(frozen=True)
class Param:
    """One ``--param``: ``values`` (one: fixed; several: a grid axis / choice) or a range ``kind`` low..high."""
    name: str
    values: tuple = ()
    kind: str = "choice"            # "choice" or one of RANGE_KINDS
    low: float | None = None
    high: float | None = None

    @property
    def fixed(self) -> bool:
        return self.kind == "choice" and len(self.values) == 1

    @property
    def is_range(self) -> bool:
        return self.kind != "choice"

    @property
    def structured(self) -> bool:
        """A choice among lists or dicts: stored in the study as JSON text (Optuna's choices are scalars)."""
        return any(isinstance(v, (list, dict, tuple)) for v in self.values)

    def endpoints(self) -> list:
        """The values to check against the notebook before any trial: every choice, or both ends of a range."""
        if not self.is_range:
            return list(self.values)
        if self.kind in ("int", "intlog"):
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]

    def distribution(self):
        """The Optuna distribution this parameter is sampled from."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
        if self.kind == "choice":
            return CategoricalDistribution([encode(self, v) for v in self.values])
        if self.kind in ("int", "intlog"):
            return IntDistribution(int(self.low), int(self.high), log=self.kind == "intlog")
        return FloatDistribution(float(self.low), float(self.high), log=self.kind == "log")

    def describe(self) -> str:
        if self.is_range:
            return f"{self.name}={self.kind}:{self.low:g}..{self.high:g}"
        return f"{self.name}=" + ",".join(json.dumps(v) for v in self.values)


def encode(param: Param, value):
    """The value as Optuna stores it (lists and dicts as JSON text)."""
    return json.dumps(value) if param.structured else value


def decode(param: Param, value):
    """The value as the notebook gets it (back from :func:`encode`)."""
    return json.loads(value) if param.structured and isinstance(value, str) else value


# --------------------------------------------------------------------------- parsing
def parse_value(text: str):
    """One value as a notebook parameter: ``True``/``False``/``None`` (or JSON's lower-case words), an int, a
    float, JSON or a Python literal for lists and dicts (``[1, 2]``, ``['a', 'b']``), otherwise the text itself."""
    s = text.strip()
    words = {"True": True, "true": True, "False": False, "false": False, "None": None, "null": None}
    if s in words:
        return words[s]
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    if s[:1] in "[{(\"'":
        try:
            return json.loads(s)
        except ValueError:
            pass
        try:
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError) as e:
            raise SweepError(f"value {s!r} looks like a list or a quoted text but does not parse "
                             f"({e.__class__.__name__}): write lists as JSON, e.g. [\"mse\", \"ce\"]") from None
        return list(value) if isinstance(value, tuple) else value
    return s


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas outside brackets and quotes (``[1,2],[3]`` is two values)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    if depth != 0 or quote:
        raise SweepError(f"unbalanced brackets or quotes in {text!r}")
    return parts


def _number(name: str, text: str, whole: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SweepError(f"--param {name}: {text!r} is not a number") from None
    if not math.isfinite(value) or (whole and not value.is_integer()):
        raise SweepError(f"--param {name}: {text!r} is not a {'whole' if whole else 'finite'} number")
    return value


def parse_param(text: str) -> Param:
    """``"lr=1e-3,3e-3"`` → a choice of two; ``"lr=log:1e-4..1e-2"`` → a log range; ``"epochs=3"`` → fixed."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise SweepError(f"--param {text!r}: write NAME=VALUE, NAME=V1,V2,... or NAME=log:LOW..HIGH")
    if not _NAME.match(name):
        raise SweepError(f"--param {text!r}: {name!r} is not a parameter name (letters, digits and _)")
    rest = rest.strip()
    if not rest:
        raise SweepError(f"--param {name}: no value after '=' (write {name}=VALUE or {name}=V1,V2,...)")
    kind, colon, span = rest.partition(":")
    if colon and kind in RANGE_KINDS:
        low, dots, high = span.partition("..")
        if not dots:
            raise SweepError(f"--param {name}={rest}: a range is {kind}:LOW..HIGH, e.g. {name}={kind}:"
                             + ("1e-4..1e-2" if kind == "log" else "1..8"))
        whole = kind in ("int", "intlog")
        lo, hi = _number(name, low, whole), _number(name, high, whole)
        if not lo < hi:
            raise SweepError(f"--param {name}={rest}: LOW must be below HIGH")
        if kind in ("log", "intlog") and lo <= 0:
            raise SweepError(f"--param {name}={rest}: a log range needs LOW > 0")
        return Param(name, kind=kind, low=lo, high=hi)
    values = [parse_value(v) for v in split_values(rest)]
    unique = []
    for v in values:
        if v in unique:
            raise SweepError(f"--param {name}: the value {v!r} is given twice")
        unique.append(v)
    return Param(name, tuple(values))


def check_space(params: list[Param], sampler: str) -> None:
    """One ``--param`` per name; ranges only where a sampler can draw from them."""
    seen = set()
    for p in params:
        if p.name in seen:
            raise SweepError(f"--param {p.name} is given twice: list its values in one, e.g. {p.name}=V1,V2")
        seen.add(p.name)
        if p.is_range and sampler == "grid":
            raise SweepError(f"--param {p.describe()} is a range, which a grid cannot enumerate: give the values "
                             f"({p.name}=V1,V2,...) or use --sampler random or tpe")


def grid(params: list[Param]) -> list[dict]:
    """Every combination of the grid axes (fixed parameters left out), in the order the ``--param``s were given,
    the last axis varying fastest."""
    axes = [p for p in params if not p.fixed]
    return [dict(zip((p.name for p in axes), combo)) for combo in itertools.product(*(p.values for p in axes))]
