"""A small instruction set written by code, so fine-tuning can be scored by exact match, not only by loss.

Three kinds of task, each with one right answer a program can check:

- ``arithmetic``: "What is 37 + 48? Answer with the number only." → ``85`` (sums, differences, small products)
- ``formatting``: upper case, reversed word order, sorted numbers, a comma-separated list
- ``extraction``: the e-mail address, the year or the price in a sentence

Examples are prompt/completion pairs (the format TRL's ``SFTTrainer`` reads too)::

    train, test = load_instructions()                 # the shipped files (ftkit/data/files/instructions/)
    train[0]  # {'prompt': 'Write in capital letters: river', 'completion': 'RIVER', 'task': 'formatting'}
    make_instructions(200, seed=0)                    # the generator that wrote them; same seed, same list
    exact_match(["85", " RIVER "], ["85", "RIVER"])   # 1.0: answers compared after stripping spaces

The shipped split is ``make_instructions(600, seed=0)`` (train) and ``make_instructions(200, seed=1)`` (test);
no test prompt is in train (checked when written).
"""
from __future__ import annotations

import json
import random

__all__ = ["TASKS", "make_instructions", "load_instructions", "read_jsonl", "write_instructions", "exact_match",
           "exact_match_by_task"]

TASKS = ("arithmetic", "formatting", "extraction")
_WORDS = ("river", "garden", "yellow", "window", "silver", "planet", "candle", "forest", "pencil", "bridge",
          "orange", "winter", "rocket", "saddle", "tiger", "marble", "harbor", "violin", "desert", "copper")
_NAMES = ("maria", "li", "omar", "anna", "kofi", "sara", "ivan", "yuki", "leo", "nina", "raj", "eva")
_DOMAINS = ("example.org", "mail.test", "school.edu", "shop.example", "lab.test")
_CITIES = ("Lisbon", "Nairobi", "Osaka", "Quito", "Oslo", "Hanoi", "Lima", "Dakar", "Perth", "Riga")
_THINGS = ("bridge", "library", "museum", "railway", "harbor wall", "stadium", "observatory", "tower")
_ITEMS = ("lamp", "backpack", "kettle", "bicycle bell", "notebook", "umbrella", "chair", "clock")


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice("+-*")
    if kind == "*":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
    else:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if kind == "-" and b > a:
            a, b = b, a
    value = {"+": a + b, "-": a - b, "*": a * b}[kind]
    phrase = rng.choice(["What is {a} {op} {b}? Answer with the number only.",
                         "Compute {a} {op} {b}. Reply with just the number.",
                         "{a} {op} {b} = ? Give only the result."])
    return phrase.format(a=a, b=b, op={"*": "x"}.get(kind, kind)), str(value)


def _formatting(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(4)
    if kind == 0:
        word = rng.choice(_WORDS)
        return f"Write in capital letters: {word}", word.upper()
    if kind == 1:
        words = rng.sample(_WORDS, 3)
        return f"Reverse the order of these words: {' '.join(words)}", " ".join(reversed(words))
    if kind == 2:
        numbers = rng.sample(range(1, 50), 4)
        return (f"Sort these numbers from smallest to largest: {', '.join(map(str, numbers))}",
                ", ".join(map(str, sorted(numbers))))
    words = rng.sample(_WORDS, 3)
    return f"Join these words with commas: {' '.join(words)}", ", ".join(words)


def _extraction(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(3)
    if kind == 0:
        name = rng.choice(_NAMES)
        email = f"{name}.{rng.choice(_WORDS)}@{rng.choice(_DOMAINS)}"
        text = rng.choice([f"Please write to {name.title()} at {email} before Friday.",
                           f"Questions go to {email}, answered within a day.",
                           f"You can reach the {rng.choice(_CITIES)} office at {email}."])
        return f"Extract the email address from this text: {text}", email
    if kind == 1:
        year = rng.randint(1850, 2020)
        text = f"The {rng.choice(_THINGS)} in {rng.choice(_CITIES)} opened in {year} after {rng.randint(2, 9)} years of work."
        return f"Which year is mentioned in this text? Reply with the year only. {text}", str(year)
    price = f"{rng.randint(3, 90)}.{rng.randint(0, 99):02d}"
    text = f"The {rng.choice(_ITEMS)} costs ${price} in the {rng.choice(_CITIES)} shop."
    return f"What is the price in this text? Reply with the number only. {text}", price


_MAKERS = {"arithmetic": _arithmetic, "formatting": _formatting, "extraction": _extraction}


def make_instructions(n: int, seed: int = 0, tasks=TASKS) -> list[dict]:
    """``n`` prompt/completion examples, the tasks in turn (a third each), from ``random.Random(seed)``."""
    unknown = [t for t in tasks if t not in _MAKERS]
    if unknown or not tasks:
        raise ValueError(f"unknown task {unknown[0] if unknown else None!r}; choose from: {', '.join(TASKS)}")
    rng = random.Random(seed)
    out = []
    for i in range(int(n)):
        task = tasks[i % len(tasks)]
        prompt, completion = _MAKERS[task](rng)
        out.append({"prompt": prompt, "completion": completion, "task": task})
    return out


def write_instructions(folder, n_train: int = 600, n_test: int = 200) -> None:
    """Write ``train.jsonl`` (seed 0) and ``test.jsonl`` (seed 1, prompts seen in train removed)."""
    from pathlib import Path
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = make_instructions(n_train, seed=0)
    seen = {e["prompt"] for e in train}
    test = [e for e in make_instructions(n_test + 50, seed=1) if e["prompt"] not in seen][:n_test]
    for name, rows in (("train", train), ("test", test)):
        with open(folder / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


def load_instructions(folder=None) -> tuple[list[dict], list[dict]]:
    """(train, test) lists of ``{"prompt", "completion", "task"}`` from ``folder`` (default: the shipped set)."""
    from . import shipped
    from pathlib import Path
    folder = Path(folder) if folder is not None else shipped("instructions")
    splits = []
    for name in ("train", "test"):
        path = folder / f"{name}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no {name}.jsonl in {folder}; write one with "
                                    "ftkit.data.instructions.write_instructions(folder)")
        splits.append(read_jsonl(path))
    return splits[0], splits[1]


def read_jsonl(path) -> list[dict]:
    """The examples of a JSONL file (one JSON object a line; blank lines skipped; a UTF-8 byte-order mark accepted).
    A line that is not UTF-8 or not a JSON object, and a file with no example, fail naming the file and the line."""
    with open(path, "rb") as f:
        data = f.read()
    rows = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):   # a byte-order mark (Notepad's "UTF-8 with BOM")
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}, line {number}: byte {raw[e.start]:#04x} at column {e.start + 1} is not UTF-8 "
                             "(a file saved as Latin-1 or Windows-1252?); save the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg} at column {e.colno}): {line[:80]!r}; "
                             "a JSONL file holds one JSON object per line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: a JSON {type(row).__name__}, not an object; each line must be "
                             'like {"prompt": "...", "completion": "..."}')
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no example (it is empty or blank); write one JSON object per line, e.g. "
                         "with ftkit.data.instructions.write_instructions(folder)")
    return rows


def _norm(s: str) -> str:
    return " ".join(str(s).split())


def exact_match(predictions, references) -> float:
    """Share of predictions equal to their reference after collapsing whitespace (case and punctuation count)."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("exact_match needs at least one reference")
    return sum(_norm(p) == _norm(r) for p, r in zip(predictions, references)) / len(references)


def exact_match_by_task(predictions, examples) -> dict[str, float]:
    """Exact match per task and ``all``, for examples that carry a ``task`` field."""
    out = {}
    for task in sorted({e.get("task", "all") for e in examples}):
        pairs = [(p, e["completion"]) for p, e in zip(predictions, examples) if e.get("task", "all") == task]
        out[task] = exact_match(*zip(*pairs))
    out["all"] = exact_match(predictions, [e["completion"] for e in examples])
    return out
