"""The training dashboard in a real browser: JupyterLab in headless Chromium (Playwright) runs a small training
notebook with its default ``dashboard="auto"`` (``await fit_live_async(...)``): the probe must find the page and
show the dashboard. The test pauses (the step counter holds), runs the LR finder (its curve is drawn), moves the LR
slider with the keyboard, resumes (the counter moves on), finds the change as an event marker in the figure's plotly
data, presses Stop (twice), and checks the event in the saved history. A second notebook, opened in the same tab,
has the browser tab closed mid-training and must still run to its end and save its history.

Needs the Debian ``chromium`` package (``.ci/install-browser``) and the ``playwright`` Python package; it never
downloads Playwright's own browsers. The dashboard screenshot goes to ``artifacts/browser/dashboard.png``.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "tests" / "assets" / "dashboard_training.ipynb"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(base: str, token: str) -> dict:
    request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 with a token; config, runtime, settings and workspaces all inside tmp_path."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Debian chromium at {CHROMIUM}: run .ci/install-browser (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    for plugin, value in (("apputils-extension/notification", '{"fetchNews": "false"}'),      # no news toast
                          ("notebook-extension/tracker", '{"autoStartDefaultKernel": true}')):  # no kernel dialog
        path = home / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "IPYTHONDIR": str(home / "ipython"),
           "OMP_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1"}
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _status(base, token)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start; log:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.2)
        yield base, token, root
    finally:
        import psutil   # an ipykernel dependency
        try:   # the kernels run in their own sessions: kill them by pid (they hold nothing worth a clean exit)
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


def _write_notebook(root: Path, name: str, **parameters) -> Path:
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    nb = parameterize_notebook(load_notebook_node(str(ASSET)), parameters)
    nbformat.write(nb, root / name)
    (root / parameters["output_dir"]).mkdir()
    return root / parameters["output_dir"] / "history.json"


def _wait_file(path: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written within {timeout:.0f} s: the run hung"
        time.sleep(0.2)
    return json.loads(path.read_text())


def _run_all(page):
    """Wait for the notebook's kernel, Run All Cells from the menu, and wait until a cell runs."""
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)   # the status bar: kernel ready
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.locator(".jp-InputPrompt", has_text="[*]").first.wait_for(timeout=15_000)


CURRENT = ".jp-NotebookPanel:not(.lm-mod-hidden)"   # the notebook tab on show
WAIT_STEP = """n => { const r = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .ftkit-readout');
    const m = r && r.innerText.match(/step (\\d+)/); return m && +m[1] >= n; }"""


def _step(page) -> int:
    match = re.search(r"step (\d+)", page.locator(f"{CURRENT} .ftkit-readout").inner_text())
    return int(match.group(1)) if match else -1


FIGURE = """name => { const d = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) ' + name);
    return d && d.data ? d.data.map(t => ({name: t.name, x: Array.from(t.x || []), text: Array.from(t.text || [])}))
                       : null; }"""


def _traces(page, selector: str) -> dict:
    """The plotly traces of the figure under ``selector``, read from the page's plotly data (not pixels)."""
    return {t["name"]: t for t in page.evaluate(FIGURE, selector) or []}


def test_dashboard_in_jupyterlab_slider_pause_lr_finder_stop_then_a_closed_tab_keeps_training(lab):
    from playwright.sync_api import sync_playwright
    base, token, root = lab
    batches = 16   # n=320 → 256 training blobs in batches of 16
    # dashboard="auto" (the asset's default): the probe finds the page and shows the dashboard. 200 epochs would
    # take > 90 s: the run ends early only if Stop works; the closed tab's run takes ~10 s
    live = _write_notebook(root, "live.ipynb", epochs=200, n=320, lr=0.1, step_delay=0.03, output_dir="live")
    closed = _write_notebook(root, "closed.ipynb", epochs=8, n=320, lr=0.1, step_delay=0.08, output_dir="closed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    t0, times = time.monotonic(), {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page, console = None, []
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            console = []   # the page's JavaScript errors, printed if the test fails
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(str(e)))
            page.goto(f"{base}/lab/tree/live.ipynb?token={token}&reset")
            _run_all(page)
            page.locator(f"{CURRENT} .ftkit-lr .noUi-handle").wait_for(timeout=60_000)   # "auto" chose the dashboard
            page.wait_for_function(WAIT_STEP, arg=10, timeout=60_000)
            times["live training"] = time.monotonic() - t0
            print(f"{times}", flush=True)

            page.locator(".ftkit-pause").click()                                          # Pause: the counter holds
            page.locator(".ftkit-readout", has_text="paused before step").wait_for(timeout=20_000)
            held = _step(page)
            time.sleep(1.0)
            held_later = _step(page)
            page.locator(".ftkit-lr-find").click()                                        # LR finder while paused
            page.wait_for_function(f"() => ({FIGURE})('.ftkit-lr-find-plot .js-plotly-plot')", timeout=60_000)
            finder = _traces(page, ".ftkit-lr-find-plot .js-plotly-plot")
            page.locator(".ftkit-lr .noUi-handle").focus()
            page.keyboard.press("Home")                       # the slider's low end: lr 1e-6, applied at Resume
            page.locator(".ftkit-pause").click()                                          # Resume
            page.locator(".ftkit-readout", has_text="set by hand").wait_for(timeout=20_000)
            page.wait_for_function(WAIT_STEP, arg=held + 3, timeout=20_000)
            resumed = _step(page)
            times["resumed"] = time.monotonic() - t0
            print(f"{times}", flush=True)
            page.wait_for_function(f"() => (({FIGURE})('.ftkit-dashboard .js-plotly-plot') || []).some("
                                   "t => t.name === 'events' && t.x.length === 1)", timeout=20_000)
            figure = _traces(page, ".ftkit-dashboard .js-plotly-plot")
            page.locator(".ftkit-dashboard").screenshot(path=str(shot))
            page.locator(".ftkit-stop").click()
            page.locator(".ftkit-stop").click(force=True)     # twice (now disabled): harmless
            history = _wait_file(live, 30)
            times["live stopped"] = time.monotonic() - t0
            print(f"{times}", flush=True)

            page.locator(".jp-DirListing-item", has_text="closed.ipynb").dblclick()   # a second notebook tab
            page.locator(f"{CURRENT} .jp-Cell").first.wait_for(timeout=30_000)
            _run_all(page)
            page.wait_for_function(WAIT_STEP, arg=5, timeout=60_000)
            seen = _step(page)
            page.close()                                       # the browser tab goes away mid-training
            finished = _wait_file(closed, 60)
            times["closed tab finished"] = time.monotonic() - t0
        except Exception:
            if page is not None and not page.is_closed():
                page.screenshot(path=str(ARTIFACTS / "failure.png"))
                print(f"screenshot of the failure: {ARTIFACTS / 'failure.png'}; page errors:\n" + "\n".join(console))
            raise
        finally:
            browser.close()
    print(f"dashboard screenshot: {shot}; seconds since the browser started: "
          + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))

    assert held == held_later >= 10 and resumed >= held + 3                 # Pause held the counter, Resume went on
    assert {"loss", "suggested lr"} <= set(finder) and len(finder["loss"]["x"]) > 10   # the LR finder's curve
    lrs = [r["lr"] for r in history["steps"]]
    k = next(i for i, lr in enumerate(lrs) if lr != 0.1)      # rows before k used lr 0.1 (k = steps taken)
    assert k == held                                          # the move made while paused applied at Resume…
    assert lrs[:k] == [0.1] * k and lrs[k:] == pytest.approx([1e-6] * (len(lrs) - k))   # …and stayed
    [event] = history["events"]
    assert (event["step"], event["name"], event["old"], event["source"]) == (k, "lr", 0.1, "slider")
    assert event["new"] == pytest.approx(1e-6)
    assert figure["events"]["x"] == [k] and figure["events"]["text"][0].startswith("lr 0.1 → 1e-06 (slider)")
    assert len(lrs) < 200 * batches and history["stop_reason"].startswith("stopped by request")
    assert seen < 8 * batches                                 # the tab closed while it trained…
    assert len(finished["steps"]) == 8 * batches and finished["stop_reason"] is None   # …and it ran to the end
    assert finished["epochs"][-1]["val_accuracy"] > 0.8       # chance is 1/3
    assert shot.stat().st_size > 10_000
