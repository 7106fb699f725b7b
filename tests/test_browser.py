"""The training dashboard in a real browser: JupyterLab in headless Chromium (Playwright) runs a small training
notebook with its default ``dashboard="auto"`` (``await fit_live_async(...)``): the probe must find the page and
show the dashboard. The test pauses (the step counter holds), runs the LR finder (its curve is drawn), moves the LR
slider with the keyboard, resumes (the counter moves on), finds the change as an event marker in the figure's plotly
data, presses Stop (twice), and checks the event in the saved history. A second notebook, opened in the same tab,
has the browser tab closed mid-training and must still run to its end and save its history.

A third test runs the real notebooks 02 and 03 (*Run All*, small parameters) in the same way: no stderr block
anywhere, the explorer's lr slider changes its path figure, the basin map's colours agree with the status line,
after a save and a page reload (kernel alive) the explorer's figures are drawn again and still follow the slider,
and 03 shows its training figure once.

Needs the Debian ``chromium`` package (``.ci/install-browser``) and the ``playwright`` Python package; it never
downloads Playwright's own browsers. Screenshots go to ``artifacts/browser/``; with ``FTKIT_SCREENSHOTS=1`` they
refresh the ones the README shows, in ``docs/img/`` (``dashboard.png``, ``02_gradient_descent.png``,
``03_cifar10_cnn.png``)::

    FTKIT_SCREENSHOTS=1 python -m pytest -q -p no:cacheprovider -m browser tests/test_browser.py
"""
from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CHROMIUM, launch_chromium, stop_server

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "tests" / "assets" / "dashboard_training.ipynb"

ARTIFACTS = ROOT / "artifacts" / "browser"
SHOTS = ROOT / "docs" / "img" if os.environ.get("FTKIT_SCREENSHOTS") == "1" else ARTIFACTS   # see the module notes

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]   # guards a hang; ~60 s on a quiet machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(base: str, token: str) -> dict:
    request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def lab(tmp_path, request):
    """JupyterLab on 127.0.0.1 with a token; config, runtime, settings and workspaces all inside tmp_path.
    Parametrized indirectly, its parameter is extra environment for the server and its kernels."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Debian chromium at {CHROMIUM}: run .ci/install-browser (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    for plugin, value in (("apputils-extension/notification", '{"fetchNews": "false"}'),      # no news toast
                          ("notebook-extension/tracker",   # no kernel dialog; every cell rendered (no windowing),
                                             '{"autoStartDefaultKernel": true, "windowingMode": "none"}')):  # no kernel dialog
        path = home / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "IPYTHONDIR": str(home / "ipython"),
           "OMP_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1", **getattr(request, "param", {})}
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
        stop_server(server, log)


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
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "dashboard.png"
    t0, times = time.monotonic(), {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
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
            finder_says = page.locator(f"{CURRENT} .ftkit-message").inner_text()
            finder_color = page.locator(f"{CURRENT} .ftkit-message span").evaluate("e => getComputedStyle(e).color")
            page.locator(".ftkit-lr .noUi-handle").focus()
            page.keyboard.press("Home")                       # the slider's low end: lr 0.1/1000, applied at Resume
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
    assert "loss" in finder and len(finder["loss"]["x"]) > 10                # the LR finder's curve, its advice
    marked = any(n.startswith("suggested lr") for n in finder)
    assert marked == ("suggested lr" in finder_says) and (marked or "no suggestion" in finder_says), finder_says
    assert finder_color == "rgb(68, 68, 68)"                                 # normal text, not an error's red
    lrs = [r["lr"] for r in history["steps"]]
    k = next(i for i, lr in enumerate(lrs) if lr != 0.1)      # rows before k used lr 0.1 (k = steps taken)
    assert k == held                                          # the move made while paused applied at Resume…
    assert lrs[:k] == [0.1] * k and lrs[k:] == pytest.approx([1e-4] * (len(lrs) - k))   # …and stayed
    [event] = history["events"]
    assert (event["step"], event["name"], event["old"], event["source"]) == (k, "lr", 0.1, "slider")
    assert event["new"] == pytest.approx(1e-4)
    assert figure["events"]["x"] == [k] and figure["events"]["text"][0].startswith("lr 0.1 → 0.0001 (slider)")
    assert len(lrs) < 200 * batches and history["stop_reason"].startswith("stopped by request")
    assert seen < 8 * batches                                 # the tab closed while it trained…
    assert len(finished["steps"]) == 8 * batches and finished["stop_reason"] is None   # …and it ran to the end
    assert finished["epochs"][-1]["val_accuracy"] > 0.8       # chance is 1/3
    assert shot.stat().st_size > 10_000


STATIC = ".js-plotly-plot"   # the static path's figure: the only plotly figure on the page (no FigureWidget there)


@pytest.mark.parametrize("lab", [{"FTKIT_LIVE_FIGURE": "static"}], indirect=True)
def test_dashboard_with_the_static_live_figure_updates_it_in_place(lab):
    """The path without third-party widget JavaScript (Colab, classic Notebook), forced in JupyterLab: the controls
    are core widgets, the plot a plain plotly figure replaced through its display handle while training runs —
    one figure, growing — and a slider move shows up on it as an event marker."""
    from playwright.sync_api import sync_playwright
    base, token, root = lab
    live = _write_notebook(root, "static.ipynb", epochs=200, n=320, lr=0.1, step_delay=0.03, output_dir="static")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/static.ipynb?token={token}&reset")
            _run_all(page)
            page.locator(f"{CURRENT} .ftkit-lr .noUi-handle").wait_for(timeout=60_000)   # core widgets answered
            line = page.locator(f"{CURRENT} .jp-OutputArea-output", has_text="ftkit ui:").first.inner_text()
            grow = (f"n => {{ const d = document.querySelectorAll('{CURRENT} {STATIC}'); return d.length === 1 "
                    "&& d[0].data && d[0].data.some(t => t.name === 'loss (step)' && t.x.length >= n); }")
            page.wait_for_function(grow, arg=1, timeout=120_000)   # sends are paced by their cost: slow when loaded
            first = len(_traces(page, STATIC)["loss (step)"]["x"])
            page.wait_for_function(grow, arg=first + 1, timeout=120_000)                 # replaced in place
            page.locator(".ftkit-lr .noUi-handle").focus()
            page.keyboard.press("Home")                                                  # lr 0.1/1000
            page.locator(".ftkit-readout", has_text="set by hand").wait_for(timeout=20_000)
            page.wait_for_function(f"() => (({FIGURE})('{STATIC}') || []).some("
                                   "t => t.name === 'events' && t.x.length === 1)", timeout=120_000)
            figures = page.locator(f"{CURRENT} {STATIC}").count()
            page.locator(".ftkit-stop").click()
            history = _wait_file(live, 30)
            page.screenshot(path=str(ARTIFACTS / "dashboard_static.png"))
        except Exception:
            outputs = page.locator(f"{CURRENT} .jp-OutputArea").last
            outputs.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "failure_static.png"))
            print("outputs:", outputs.inner_text()[:2000], "| plotly figures:",
                  page.evaluate(f"() => Array.from(document.querySelectorAll('{CURRENT} .js-plotly-plot'), "
                                "d => (d.data || []).map(t => t.name + ':' + (t.x || []).length).join(' '))"))
            raise
        finally:
            browser.close()
    assert "live figure: static" in line and "FTKIT_LIVE_FIGURE=static" in line
    assert figures == 1                                                     # one figure, updated, never a second
    [event] = history["events"]
    assert event["source"] == "slider" and event["new"] == pytest.approx(1e-4)
    assert history["stop_reason"].startswith("stopped by request") and history["epochs"][-1].get("partial")


# ----------------------------------------------------------------------------- the real notebooks 02 and 03
NOTEBOOKS = ROOT / "notebooks"
PLOTS = """sel => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) ' + sel)).map(d => ({
    title: d.layout && d.layout.title ? (d.layout.title.text || '') : '',
    data: (d.data || []).map(t => ({meta: t.meta || null, name: t.name || null, visible: t.visible,
        x: t.x ? Array.from(t.x).slice(0, 400) : [], zmin: t.zmin, zmax: t.zmax,
        z: t.type === 'heatmap' && t.z ? Array.from(t.z, r => Array.from(r)) : null}))}))"""


def _figures(page, selector=".js-plotly-plot") -> list[dict]:
    """Every plotly figure on the notebook tab on show (title, traces), read from the page's plotly data."""
    return page.evaluate(PLOTS, selector)


def _real_notebook(root: Path, name: str, **parameters) -> Path:
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOKS / name)), parameters)
    nbformat.write(nb, root / name)
    return root / parameters["output_dir"] / "metrics.json"


def _open(page, base, token, name):
    page.goto(f"{base}/lab/tree/{name}?token={token}&reset")
    page.locator(f"{CURRENT} .jp-Cell").first.wait_for(timeout=60_000)


def _explorer_path(page) -> list:
    [fig] = _figures(page, ".ftkit-explorer-paths .js-plotly-plot") or [{"data": []}]
    return next((t["x"] for t in fig["data"] if t["meta"] == "path:gd"), [])


def _move_lr(page, before):
    page.locator(f"{CURRENT} .ftkit-explorer-lr .noUi-handle").focus()
    for _ in range(3):
        page.keyboard.press("ArrowLeft")          # three 0.05 steps of log10(lr): a smaller lr, a new path
    page.wait_for_function("""([sel, before]) => { const d = document.querySelector(sel);
        const t = d && d.data && d.data.find(t => t.meta === 'path:gd');
        return t && t.x && t.x.length > 0
            && JSON.stringify(Array.from(t.x).slice(0, 400)) !== JSON.stringify(before.slice(0, 400)); }""",
                           arg=[f"{CURRENT} .ftkit-explorer-paths .js-plotly-plot", before],   # both sides JS's JSON
                           timeout=30_000)


def _basin_colours(page) -> dict:
    """Per optimizer on the basin map: (settle %, diverge %) counted from its colour categories."""
    [basin_fig] = _figures(page, ".ftkit-explorer-basins .js-plotly-plot")
    out = {}
    for trace in basin_fig["data"]:
        if not (trace["meta"] or "").startswith("basin:") or trace["visible"] is False or trace["z"] is None:
            continue
        assert (trace["zmin"], trace["zmax"]) == (-0.5, 11.5), trace["meta"]    # explicit category range
        cells = [v for row in trace["z"] for v in row]
        out[trace["meta"].split(":")[1]] = (round(100 * sum(v >= 2 for v in cells) / len(cells)),
                                            round(100 * sum(v == 0 for v in cells) / len(cells)))
    return out


def _basin_agreement(page) -> list[tuple]:
    """Per optimizer: (label, settle % and diverge % from the status line, the same from the map's colours)."""
    status = page.locator(f"{CURRENT} .ftkit-explorer-status").inner_text()
    rows = []
    for label, colours in _basin_colours(page).items():
        line = re.search(rf"(?m)^{label}: .*?basins: (\d+)% of \d+ starts settle(?:, (\d+)% diverge)?", status)
        assert line, (label, status)
        rows.append((label, (int(line.group(1)), int(line.group(2) or 0)), colours))
    return rows


@pytest.mark.timeout(600)   # two real notebooks: ~75 s on a quiet machine; the limit only guards a hang
def test_notebooks_02_and_03_run_all_in_jupyterlab_figures_right_and_after_a_reload(lab, tmp_path):
    from playwright.sync_api import sync_playwright
    from ftkit.data.fake import write_fake_cifar10
    base, token, root = lab
    write_fake_cifar10(root / "cifar10", n_train=600, n_test=200, noise=1.0)
    m02 = _real_notebook(root, "02_gradient_descent.ipynb", output_dir="out02", steps=60, grid=30, theory_steps=200,
                         settle_steps=200, sweep_points=6, explorer_grid=20, basin_grid=6, basin_steps=150,
                         noise_steps=600, explorer_basin_grid=8)
    m03 = _real_notebook(root, "03_cifar10_cnn.ipynb", output_dir="out03", data_dir=str(root / "cifar10"),
                         epochs=2, batch_size=64, lr=3e-3, device="cpu", num_workers=0, throughput_batches=3,
                         subset=600,   # the CPU preset asks for 10,000 images; the fake folder holds 600
                         ddp=True, ddp_device="cpu", ddp_epochs=1)   # the multi-process section is off by default
    SHOTS.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    t0, times = time.monotonic(), {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page, console = None, []
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda e: console.append(str(e)))
            _open(page, base, token, "02_gradient_descent.ipynb")
            _run_all(page)
            _wait_file(m02, 120)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
            page.locator(f"{CURRENT} .ftkit-explorer-basins .js-plotly-plot").wait_for(timeout=120_000)
            times["02 run all"] = time.monotonic() - t0
            stderr02 = page.locator(f"{CURRENT} [data-mime-type='application/vnd.jupyter.stderr']").count()
            static02 = [f for f in _figures(page) if f["data"]]
            agree = _basin_agreement(page)
            before = _explorer_path(page)
            _move_lr(page, before)                                  # the lr slider redraws the path figure
            time.sleep(2.0)                                          # the three key presses all arrive
            moved, moved_basins = _explorer_path(page), _basin_colours(page)
            paths = page.locator(f"{CURRENT} .ftkit-explorer-paths")   # fits the viewport (the whole explorer
            paths.scroll_into_view_if_needed()                          # does not: a screenshot would be cut)
            time.sleep(0.5)
            paths.screenshot(path=str(SHOTS / "02_gradient_descent.png"))
            page.keyboard.press("Control+s")                        # saved, as autosave would
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=10_000)
            time.sleep(1.0)
            page.reload()                                           # the kernel stays alive
            page.locator(f"{CURRENT} .ftkit-explorer-paths .js-plotly-plot").wait_for(timeout=60_000)
            page.wait_for_function(f"() => {{ const d = document.querySelector("
                                   f"'{CURRENT} .ftkit-explorer-paths .js-plotly-plot'); return d && d.data && "
                                   "d.data.some(t => t.meta === 'path:gd' && t.x && t.x.length > 0); }",
                                   timeout=30_000)
            reloaded = _explorer_path(page)
            page.locator(f"{CURRENT} .ftkit-explorer-status", has_text="basins:").first.wait_for(timeout=30_000)
            page.wait_for_function(f"() => {{ const d = document.querySelector("
                                   f"'{CURRENT} .ftkit-explorer-basins .js-plotly-plot'); return d && d.data && "
                                   "d.data.some(t => t.meta === 'basin:gd' && t.z && t.z.length > 0); }",
                                   timeout=30_000)
            reloaded_basins = _basin_colours(page)
            _move_lr(page, reloaded)                                # and still follows the slider
            times["02 reload"] = time.monotonic() - t0

            _open(page, base, token, "03_cifar10_cnn.ipynb")
            _run_all(page)
            _wait_file(m03, 420)      # 03 trains three runs: a busy CI worker beside it takes longer
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
            times["03 run all"] = time.monotonic() - t0
            stderr03 = page.locator(f"{CURRENT} [data-mime-type='application/vnd.jupyter.stderr']").count()
            text03 = page.locator(f"{CURRENT} .jp-OutputArea").all_inner_texts()
            figures03 = _figures(page)
            training = page.locator(f"{CURRENT} .jp-OutputArea-output").filter(has_text="epoch metrics").first
            training.scroll_into_view_if_needed()
            time.sleep(0.5)
            training.screenshot(path=str(SHOTS / "03_cifar10_cnn.png"))
        except Exception:
            if page is not None and not page.is_closed():
                page.screenshot(path=str(ARTIFACTS / "failure_notebooks.png"))
                print("explorer traces:", [(t["meta"], t["name"], len(t["x"])) for f in _figures(
                    page, ".ftkit-explorer-paths .js-plotly-plot") for t in f["data"]])
                print(f"screenshot of the failure: {ARTIFACTS / 'failure_notebooks.png'}; page errors:\n"
                      + "\n".join(console))
            raise
        finally:
            browser.close()
    print("seconds since the browser started: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))

    assert stderr02 == 0 and stderr03 == 0                     # no pink block anywhere
    assert len(static02) >= 12                                 # every figure of 02 drawn
    assert agree and all(status == colours for _, status, colours in agree), agree
    assert moved != before and reloaded == moved               # the slider moved the path; the reload kept it
    assert reloaded_basins == moved_basins and len(moved_basins) == 6   # the basin map came back, same colours
    titles = [f["title"] for f in figures03]
    assert sum(t.startswith("training") for t in titles) == 1, titles     # the training figure once
    assert not any("Launching training on" in t for t in text03)
    [runs] = [f for f in figures03 if f["title"].startswith("the same training on 1 and")]
    names = [t["name"] for t in runs["data"]]
    assert len(names) == len(set(names)) and all(names), names # each run and split has its own legend entry
