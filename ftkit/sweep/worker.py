"""``python -m ftkit.sweep.worker SPEC.json``: one trial's process (local or inside a Ray task). It runs the
notebook with papermill (the kernel is its child) and writes result.json; SIGINT or SIGTERM stop the notebook and
shut its kernel down before the process ends."""
from __future__ import annotations

import json
import signal
import sys

from ..utils import poll_kernels_in_slices, skip_iri_grammar
from .trial import run_notebook, write_result

__all__ = ["main"]


def main(spec_path: str) -> int:
    skip_iri_grammar()          # this process runs one trial only: papermill's import starts 2 s sooner
    poll_kernels_in_slices()    # and a reply whose wakeup pyzmq missed does not stall the trial
    with open(spec_path) as f:
        spec = json.load(f)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = run_notebook(spec)
    write_result(spec, result)
    print(f"trial {result['state']}: {result['error'] or result['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
