"""Notebook runs that hang: the cell named, both sides' stacks kept, the run made once more.

Seen in 2 of about 10 runs of the suite on 2 cores, both in papermill's runs of notebook 05: a cell's execute reply
never reached papermill, and the test waited for pytest-timeout (300 s). Run alone, the same test passed 10 times out
of 10 (35–44 s each beside two busy processes), and two further whole-suite runs passed: which side lost the message
was not caught then. Caught later (notebook 05 again, its playground cell): the kernel sent the reply 0.04 s after the
request (the cell's ``shell.execute_reply`` time), and papermill read it 120 s later, exactly at its timeout — a
wakeup missed by pyzmq's asyncio poll in this process, which then sees the message only when the poll times out. The
test process's kernel clients therefore poll in 1-s slices (:func:`ftkit.utils.poll_kernels_in_slices`, set up by
:func:`install`), so such a miss costs a second. The watch stays, for a hang of another kind:

- every kernel a test starts (papermill's, JupyterLab's) registers faulthandler for SIGUSR1 — an IPython startup file
  in a test-only IPYTHONDIR (:func:`install`) — writing its threads' stacks to a file of its own;
- :func:`execute` gives each cell ``CELL_TIMEOUT`` seconds (the longest cell of the suite takes about 12 s); a cell
  whose reply has not come after ``DUMP_AFTER`` seconds gets the kernel's stacks (SIGUSR1) and the test process's
  (faulthandler) written to ``artifacts/hangs/``;
- a run that timed out runs once more, and a warning (in the suite's summary) names the notebook, the cell and what
  both main threads were doing. A notebook that hangs twice fails the test.
"""
from __future__ import annotations

import atexit
import contextlib
import faulthandler
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from pathlib import Path

from ftkit.utils import poll_kernels_in_slices

ROOT = Path(__file__).resolve().parents[1]
DUMPS = ROOT / "artifacts" / "hangs"
CELL_TIMEOUT = 120
DUMP_AFTER = 100

STARTUP = '''\
def _ftkit_tests_dump_on_sigusr1():    # tests/kernel_watch.py: this kernel's stacks on SIGUSR1, for a hung test
    import faulthandler, os, signal
    folder = os.environ.get("FTKIT_TEST_DUMPS")
    if folder and hasattr(signal, "SIGUSR1"):
        os.makedirs(folder, exist_ok=True)
        out = open(os.path.join(folder, "kernel-%d.txt" % os.getpid()), "w")
        faulthandler.register(signal.SIGUSR1, file=out, all_threads=True)
_ftkit_tests_dump_on_sigusr1()
del _ftkit_tests_dump_on_sigusr1
'''


def install() -> None:
    """A test-only IPYTHONDIR whose startup file makes every kernel started from here on dump on SIGUSR1; and this
    process's kernel clients poll in 1-s slices (ftkit.utils.poll_kernels_in_slices)."""
    home = Path(tempfile.mkdtemp(prefix="ftkit-ipython-"))
    startup = home / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-ftkit-tests-dump.py").write_text(STARTUP)
    atexit.register(shutil.rmtree, home, ignore_errors=True)   # a hang's dumps are copied to DUMPS first
    os.environ["IPYTHONDIR"] = str(home)
    os.environ["FTKIT_TEST_DUMPS"] = str(home / "dumps")   # one (empty) file per kernel; a hang's are copied to DUMPS
    poll_kernels_in_slices()     # a reply whose wakeup pyzmq missed under load waits 1 s, not CELL_TIMEOUT


def _kernels() -> list[int]:
    """This process's child kernels."""
    import psutil
    found = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):          # gone meanwhile
            if "ipykernel_launcher" in " ".join(child.cmdline()):
                found.append(child.pid)
    return found


def _thread(text: str, mark: str, lines: int = 25) -> str:
    """The innermost frames of the thread whose block in a faulthandler dump holds ``mark``."""
    block = next((b for b in text.split("\n\n") if mark in b), "")
    return "\n".join(block.splitlines()[:lines]) or f"(no thread with {mark!r} in the dump)"


class _Watch:
    """papermill's hooks: a timer per cell, from its execute request to its reply."""

    def __init__(self, name: str):
        self.name, self.timer, self.report = name, None, None

    def started(self, cell, cell_index, **_):
        self.finished()
        self.timer = threading.Timer(DUMP_AFTER, self._dump, (cell, cell_index))
        self.timer.daemon = True
        self.timer.start()

    def finished(self, **_):
        if self.timer is not None:
            self.timer.cancel()

    def _dump(self, cell, index):
        DUMPS.mkdir(parents=True, exist_ok=True)
        kernels = _kernels()
        for pid in kernels:
            os.kill(pid, signal.SIGUSR1)
        client = DUMPS / f"client-{os.getpid()}-{int(time.time())}.txt"
        with open(client, "w") as f:
            faulthandler.dump_traceback(f, all_threads=True)
        time.sleep(2.0)                              # the kernels write theirs
        parts = [f"{self.name}: cell {index} ({cell.source.strip().splitlines()[0][:80]!r}) had no reply after "
                 f"{DUMP_AFTER} s; outputs so far: {len(cell.get('outputs', []))}; child kernels: {kernels or 'none'}"]
        for pid in kernels:
            written = Path(os.environ.get("FTKIT_TEST_DUMPS", DUMPS)) / f"kernel-{pid}.txt"
            text = written.read_text() if written.exists() else ""
            path = DUMPS / f"kernel-{pid}.txt"
            path.write_text(text)
            parts.append(f"kernel {pid} ({path}):\n" + _thread(text, "ipykernel_launcher.py"))   # its main thread
        main = f"Thread {threading.main_thread().ident:#018x}"
        parts.append(f"this process ({client}):\n" + _thread(client.read_text(), main))
        self.report = "\n".join(parts)


def execute(pm_execute, name: str, *args, **kwargs) -> None:
    """``pm_execute(*args, **kwargs)`` (papermill's ``execute_notebook``) with the watch above: once more after a
    cell timed out, with a warning saying where it hung.

    The executed notebook is written once, when the run ends (with the error, if a cell failed): the tests read it
    only then, and papermill's default — the whole notebook re-encoded before and after every cell, widget state
    included — costs notebook 02 about 100 writes of 17 MB (its three FigureWidgets carry plotly's code), 5 s of
    CPU per run on a machine the other worker and the kernel share."""
    from nbclient.exceptions import CellTimeoutError
    kwargs = {"request_save_on_cell_execute": False, **kwargs}
    for attempt in (1, 2):
        watch = _Watch(name)
        try:
            pm_execute(*args, execution_timeout=CELL_TIMEOUT, on_cell_execute=watch.started,
                       on_cell_executed=watch.finished, **kwargs)
            return
        except CellTimeoutError as e:
            if watch.timer is not None:
                watch.timer.join(10)                 # a dump under way
            report = watch.report or f"{name}: {str(e).splitlines()[0]}"
            if attempt == 2:
                raise AssertionError(f"{name} hung twice; the second time:\n{report}") from e
            warnings.warn(f"{name} hung (a cell got no reply in {CELL_TIMEOUT} s) and runs once more:\n{report}",
                          stacklevel=3)
        finally:
            watch.finished()
