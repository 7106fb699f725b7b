"""``python -m ftkit.sweep.worker SPEC.json``: one trial's process (local or inside a Ray task). It runs the
notebook with papermill (the kernel is its child) and writes result.json; SIGINT or SIGTERM stop the notebook and
shut its kernel down before the process ends."""
from __future__ import annotations

import json
import signal
import sys

from .trial import run_notebook, write_result

__all__ = ["main"]


def main(spec_path: str) -> int:
    # papermill validates notebooks with jsonschema, which builds rfc3987-syntax's IRI grammar when it is imported
    # (0.9 s at the start of every trial); nbformat's schema has no IRI to check. This process runs one trial only.
    sys.modules.setdefault("rfc3987_syntax", None)
    with open(spec_path) as f:
        spec = json.load(f)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = run_notebook(spec)
    write_result(spec, result)
    print(f"trial {result['state']}: {result['error'] or result['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
