"""Debian's Chromium for the real-browser tests (bash .ci/install-browser installs it; never a Playwright download),
and the end of a Jupyter server those tests start."""
from __future__ import annotations

import os

CHROMIUM = "/usr/bin/chromium"     # Debian's (bash .ci/install-browser), never a Playwright download


def launch_chromium(playwright):
    """Debian's headless Chromium, quiet: no background network or updates."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])


def stop_server(server, log) -> None:
    """End a Jupyter server started in its own session, and its kernels (killed by pid: they run in sessions of
    their own and hold nothing worth a clean exit)."""
    import contextlib
    import signal
    import subprocess

    import psutil   # an ipykernel dependency
    try:
        kernels = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kernels = []
    for kernel in kernels:
        with contextlib.suppress(psutil.NoSuchProcess):
            kernel.kill()
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    log.close()
