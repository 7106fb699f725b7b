"""What the seed articles get wrong, run next to the fix (``docs/seed_errors.md`` lists all 66 audit ids).

One module per topic, each used by the notebook where that topic lives:

* ``numbers``   the articles' printed tables and the numbers they imply (S0-08, S1-13, S3-15; notebooks 03, 04)
* ``adam``      Adam as seed 004 writes it: a plus sign, no bias correction, no ε (S4-04…06; notebook 02)
* ``cifar``     seed 000's CIFAR-10 experiment with its own settings and loop (S0-01, S0-07…09, S1-09, S2-13,
  S4-10; notebook 03)
* ``losses``    the loss formulas as printed: BCE on labels 1…4, swapped / index cross-entropy, the article's
  BCE gradient, the double softmax (S0-03, S1-04, S2-03, S3-01, S3-05, S3-08; notebook 06)
* ``bert_loop`` seed 001's and 003's BERT code run as written on a tiny offline BERT, exception by exception
  (S1-06…S1-11, S1-15, S3-13, S3-14, S4-09; notebook 05), and seed 000's loop header (S0-06)

Import the submodule you need (``from ftkit.articles.adam import adam_variants``); each sits above the topic
packages it reuses (``optviz``, ``nlp``, ``train``, ``data``) and below ``plots``.
"""
from __future__ import annotations

import json
import os

from ..utils import atomic_write

__all__ = ["record"]


def record(output_dir, values: dict, key: str = "article_errors", *, shown=()) -> dict:
    """Merge ``values`` into ``output_dir/metrics.json`` under ``key`` (the file the notebook already wrote, or a
    new one): each notebook's article-error section adds its measured numbers beside the notebook's own.

    ``shown``: the audit ids (``"S1-06"``) whose article version the calling cell has just run; they are added to
    ``key["shown"]``, the list ``tests/test_seed_errors.py`` compares with docs/seed_errors.md's links."""
    import re
    bad = [s for s in shown if not re.fullmatch(r"S\d-\d\d", str(s))]
    if bad:
        raise ValueError(f"shown={bad!r}: audit ids look like 'S1-06' (docs/seed_errors.md)")
    path = os.path.join(os.fspath(output_dir), "metrics.json")
    saved = {}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    saved.setdefault(key, {}).update(values)
    if shown:
        saved[key]["shown"] = sorted(set(saved[key].get("shown", [])) | set(shown))
    atomic_write(path, json.dumps(saved, indent=1, default=float).encode())
    return saved[key]
