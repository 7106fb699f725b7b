"""The training dashboard in a real browser: JupyterLab in headless Chromium (Playwright) runs a small training
notebook with its default ``dashboard="auto"`` (``await fit_live_async(...)``): the probe must find the page and
show the dashboard. The test pauses (the step counter holds), runs the LR finder (its curve is drawn), moves the LR
slider with the keyboard, resumes (the counter moves on), finds the change as an event marker in the figure's plotly
data, presses Stop (twice), and checks the event in the saved history. A second notebook, opened in the same tab,
has the browser tab closed mid-training and must still run to its end and save its history.

Two more test the real notebooks. 02 is not run twice: the execution its notebook test asserts on (papermill,
once per suite run, conftest's ``executed_notebook``) opens in JupyterLab with every saved figure drawn and no
stderr block; then only the cells the explorer needs run in the page's kernel, and the explorer is checked live —
the lr slider changes its path figure, the basin map's colours agree with the status line, after a save and a page
reload (kernel alive) its figures are drawn again and still follow the slider. 03 runs all (small parameters,
``dashboard="auto"``: the live dashboard) with no stderr block and shows its training figure once.

Needs the Debian ``chromium`` package (``.ci/install-browser``) and the ``playwright`` Python package; it never
downloads Playwright's own browsers. Screenshots go to ``artifacts/browser/``; with ``FTKIT_SCREENSHOTS=1`` they
refresh the ones the README shows, in ``docs/img/`` (``dashboard.png``, ``02_gradient_descent.png``,
``03_cifar10_cnn.png``)::

    FTKIT_SCREENSHOTS=1 python -m pytest -q -p no:cacheprovider -m browser tests/test_browser.py
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from chromium import CHROMIUM, launch_chromium, stop_server
from notebook_runs import notebook_problems

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


def browser_ready() -> str | None:
    """Why the browser tests cannot run here, or None: Debian's Chromium and the playwright package are needed."""
    import importlib.util
    if not os.path.exists(CHROMIUM):
        return f"no Debian chromium at {CHROMIUM}: run .ci/install-browser (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed"
    return None


# the server reads and writes notebooks through nbformat: it skips jsonschema's IRI grammar as ftkit's own
# notebook-running processes do (ftkit.utils.skip_iri_grammar: 1.9 CPU-s at each start)
LAB_MAIN = ("import sys; from ftkit.utils import skip_iri_grammar; skip_iri_grammar(); "
            "from jupyterlab.labapp import main; sys.exit(main())")


@contextlib.contextmanager
def jupyterlab(folder: Path, extra_env: dict | None = None):
    """JupyterLab on 127.0.0.1 with a token; config, runtime, settings and workspaces all inside ``folder``;
    yields ``(base URL, token, root folder)`` and stops the server and its kernels after."""
    root, home = folder / "root", folder / "jupyter"
    root.mkdir(parents=True)
    for plugin, value in (("apputils-extension/notification", '{"fetchNews": "false"}'),      # no news toast
                          ("notebook-extension/tracker",   # no kernel dialog; every cell rendered (no windowing),
                                             '{"autoStartDefaultKernel": true, "windowingMode": "none"}')):  # no kernel dialog
        path = home / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "IPYTHONDIR": str(home / "ipython"),
           "OMP_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1", **(extra_env or {})}
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = open(folder / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-c", LAB_MAIN, "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
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
                    pytest.fail(f"JupyterLab did not start; log:\n{(folder / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.2)
        yield base, token, root
    finally:
        stop_server(server, log)


@pytest.fixture
def lab(tmp_path, request):
    """:func:`jupyterlab` in tmp_path. Parametrized indirectly, its parameter is extra environment for the server
    and its kernels."""
    missing = browser_ready()
    if missing:
        pytest.skip(missing)
    with jupyterlab(tmp_path, getattr(request, "param", {})) as server:
        yield server


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
            _click_again_if_there(page, ".ftkit-stop")        # twice (now disabled): harmless
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


def _click_again_if_there(page, selector):
    """Click a disabled button again, as an impatient user would, while it is on the page: once the training has
    ended the dashboard gives way to its final figure, and a machine slow to click finds the button detached (the
    click would wait for it to come back) or hidden on its way out (a forced click does not wait: Playwright raises
    "Element is not visible", seen once under the suite's load). The run stopping by request, as the first click
    asked, is checked after."""
    from playwright.sync_api import Error as PlaywrightError      # TimeoutError's base class
    try:
        page.locator(selector).click(force=True, timeout=2_000)
    except PlaywrightError:
        pass


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


BASINS_DRAWN = (f"() => {{ const d = document.querySelector('{CURRENT} .ftkit-explorer-basins .js-plotly-plot'); "
                "return d && d.data && d.data.some(t => t.meta === 'basin:gd' && t.z && t.z.length > 0); }")


def _trusted_copy(source: Path, root: Path, home: Path) -> Path:
    """``source`` copied into the server's root and signed with that server's notary secret, as a notebook the user
    ran there: JupyterLab renders the saved outputs of a trusted notebook as they were (an untrusted one's HTML and
    JavaScript outputs are held back)."""
    import nbformat
    from nbformat.sign import NotebookNotary
    nb = nbformat.read(str(source), as_version=4)
    nb.metadata.pop("widgets", None)       # papermill's kernel's widget state: its models are gone with that kernel
    NotebookNotary(data_dir=str(home / "data")).sign(nb)
    nbformat.write(nb, str(root / source.name))
    return root / source.name


def _save(page, path: Path, saved, timeout: float = 90) -> None:
    """Ctrl+S, then wait until the notebook on disk passes ``saved(nb)`` (JupyterLab's save of a large notebook
    takes seconds on a busy machine; a key press lost to a re-rendering output is pressed again every 15 s)."""
    import nbformat
    deadline, pressed = time.monotonic() + timeout, -15.0
    while True:
        if time.monotonic() - pressed >= 15:
            page.keyboard.press("Control+s")
            pressed = time.monotonic()
        try:
            if saved(nbformat.read(str(path), as_version=4)):
                return
        except Exception:          # caught mid-write
            pass
        assert time.monotonic() < deadline, f"JupyterLab did not save {path.name} within {timeout:.0f} s"
        time.sleep(0.5)


# every code cell of the notebook on show has run: its prompt says [n], none [*] (queued or running) or [ ]
ALL_RUN = """() => { const p = [...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];
    return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.innerText)); }"""


def _run_cell(page, index: int, count: int) -> None:
    """Run the notebook's cell number ``index`` (0-based, as nbformat counts) as the kernel's ``count``-th execution
    and wait until its prompt says so (``[count]:``)."""
    cell = page.locator(f"{CURRENT} .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputArea-prompt").first
    prompt.click()                                                # selects the cell (command mode)
    page.keyboard.press("Control+Enter")                          # runs it, the selection stays
    page.wait_for_function("([el, n]) => el.innerText.includes('[' + n + ']')", arg=[prompt.element_handle(), count],
                           timeout=120_000)


def explorer_cells(path: Path) -> list[int]:
    """The cells of notebook 02 the explorer needs, in order: its parameters (the notebook's and papermill's
    injected ones), the setup cell, the imports and the explorer's own cell. Found by their text, not by number."""
    import nbformat
    cells = nbformat.read(str(path), as_version=4).cells
    def where(test):
        return [i for i, c in enumerate(cells) if c.cell_type == "code" and test(c)]
    tagged = where(lambda c: {"parameters", "injected-parameters"} & set(c.metadata.get("tags", [])))
    [setup] = where(lambda c: "setup(globals()" in c.source)
    [imports] = where(lambda c: "import GDExplorer" in c.source)
    [explorer] = where(lambda c: "GDExplorer(" in c.source and ".show()" in c.source)
    return sorted({*tagged, setup, imports, explorer})


@pytest.mark.xdist_group("02_gradient_descent")   # with the notebook test and the site export: one execution of 02
@pytest.mark.notebook
@pytest.mark.timeout(600)   # the limit only guards a hang
def test_notebook_02_in_jupyterlab_figures_right_and_the_explorer_after_a_reload(lab, executed_notebook):
    """02 as its notebook test executed it (papermill, notebook_runs.TEST_PARAMETERS: executed once per suite run),
    opened in JupyterLab: every saved figure renders and no stderr block shows. Then only the cells the explorer
    needs (parameters, setup, imports, the explorer) run in the page's kernel, and the explorer is checked live:
    the basin map's colours agree with its status line, the lr slider redraws the path, and after a save and a page
    reload (kernel alive) its figures are drawn again, the same, and still follow the slider."""
    from playwright.sync_api import sync_playwright
    base, token, root = lab
    executed, _ = executed_notebook("02_gradient_descent.ipynb")
    name = _trusted_copy(executed, root, root.parent / "jupyter").name
    live_cells = explorer_cells(root / name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    t0, times = time.monotonic(), {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page, console = None, []
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda e: console.append(str(e)))
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text[:300]}")   # shown on a failure
                    if m.type in ("error", "warning") else None)
            _open(page, base, token, name)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
            page.wait_for_function(f"() => document.querySelectorAll('{CURRENT} .js-plotly-plot').length >= 12",
                                   timeout=60_000)
            static02 = [f for f in _figures(page) if f["data"]]
            stderr_saved = page.locator(f"{CURRENT} [data-mime-type='application/vnd.jupyter.stderr']").count()
            times["02 opened"] = time.monotonic() - t0
            assert stderr_saved == 0 and len(static02) >= 12, (stderr_saved, len(static02))   # every figure drawn
            for count, index in enumerate(live_cells, 1):          # a fresh kernel counts from 1
                _run_cell(page, index, count)
            page.locator(f"{CURRENT} .ftkit-explorer-basins .js-plotly-plot").wait_for(timeout=120_000)
            page.wait_for_function(BASINS_DRAWN, timeout=60_000)       # the map's data, not only its element
            stderr_live = page.locator(f"{CURRENT} [data-mime-type='application/vnd.jupyter.stderr']").count()
            times["02 explorer live"] = time.monotonic() - t0
            agree = _basin_agreement(page)
            assert stderr_live == 0 and agree and all(status == colours for _, status, colours in agree), agree
            before = _explorer_path(page)
            _move_lr(page, before)                                  # the lr slider redraws the path figure
            time.sleep(2.0)                                          # the three key presses all arrive
            moved, moved_basins = _explorer_path(page), _basin_colours(page)
            assert moved != before
            paths = page.locator(f"{CURRENT} .ftkit-explorer-paths")   # fits the viewport (the whole explorer
            paths.scroll_into_view_if_needed()                          # does not: a screenshot would be cut)
            time.sleep(0.5)
            paths.screenshot(path=str(SHOTS / "02_gradient_descent.png"))
            last, runs = live_cells[-1], len(live_cells)             # saved, as autosave would: a reload mid-save
            _save(page, root / name, lambda nb: nb.cells[last].get("execution_count") == runs, 60)  # reads the old file
            page.reload()                                           # the kernel stays alive
            page.locator(f"{CURRENT} .ftkit-explorer-paths .js-plotly-plot").wait_for(timeout=60_000)
            page.wait_for_function(f"() => {{ const d = document.querySelector("
                                   f"'{CURRENT} .ftkit-explorer-paths .js-plotly-plot'); return d && d.data && "
                                   "d.data.some(t => t.meta === 'path:gd' && t.x && t.x.length > 0); }",
                                   timeout=30_000)
            reloaded = _explorer_path(page)
            page.locator(f"{CURRENT} .ftkit-explorer-status", has_text="basins:").first.wait_for(timeout=30_000)
            page.wait_for_function(BASINS_DRAWN, timeout=30_000)
            reloaded_basins = _basin_colours(page)
            _move_lr(page, reloaded)                                # and still follows the slider
            times["02 reload"] = time.monotonic() - t0
        except Exception:
            if page is not None and not page.is_closed():
                page.screenshot(path=str(ARTIFACTS / "failure_notebook_02.png"))
                print("explorer traces:", [(t["meta"], t["name"], len(t["x"])) for f in _figures(
                    page, ".ftkit-explorer-paths .js-plotly-plot") for t in f["data"]])
                print("explorer parts on the page:", page.evaluate("""() => ['.ftkit-explorer-paths',
                    '.ftkit-explorer-basins', '.jupyter-widgets', '.js-plotly-plot'].map(s => s + ' ' +
                    document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) ' + s).length)"""),
                      [t[:200] for t in page.locator(f"{CURRENT} .jp-OutputArea-output").all_inner_texts()
                       if "widget" in t.lower() or "error" in t.lower()])
                print(f"screenshot of the failure: {ARTIFACTS / 'failure_notebook_02.png'}; page errors and console "
                      "warnings:\n"
                      + "\n".join(console))
            raise
        finally:
            browser.close()
    print("seconds since the browser started: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))

    # checked as they were seen (no pink block anywhere, every figure drawn, the status line agrees with the map,
    # the slider moved the path), and after the reload: it kept the path and the map
    assert reloaded == moved
    assert reloaded_basins == moved_basins and len(moved_basins) == 6   # the basin map came back, same colours


def run_03_in_jupyterlab(out_dir: Path, **parameters) -> dict:
    """Notebook 03 run all in JupyterLab (``dashboard="auto"``: the live dashboard), its metrics written to
    ``out_dir`` and the page saved there (``out_dir/03_cifar10_cnn.ipynb``, outputs included), with what the page
    showed in ``out_dir/page.json``: the notebook test asserts on the metrics, the test below on the page. The one
    execution of 03 per suite run where Chromium is there (conftest's ``executed_notebook``); checked like a
    papermill run (:func:`notebook_runs.notebook_problems`) before anyone reads it."""
    from playwright.sync_api import sync_playwright
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    import nbformat
    name = "03_cifar10_cnn.ipynb"
    with jupyterlab(out_dir / "lab") as (base, token, root):
        nb = parameterize_notebook(load_notebook_node(str(NOTEBOOKS / name)),
                                   {**parameters, "output_dir": str(out_dir)})
        nbformat.write(nb, root / name)
        SHOTS.mkdir(parents=True, exist_ok=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page, console = None, []
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.on("pageerror", lambda e: console.append(str(e)))
                _open(page, base, token, name)
                _run_all(page)
                _wait_file(out_dir / "metrics.json", 420)   # 03 trains three runs: a busy machine takes longer
                page.wait_for_function(ALL_RUN, timeout=120_000)   # the cells after metrics.json too: the kernel
                                                                   # shows Idle between two cells of Run All
                seen = {"seconds": time.monotonic() - t0,
                        "stderr_blocks": page.locator(f"{CURRENT} [data-mime-type='application/vnd.jupyter.stderr']"
                                                      ).count(),
                        "output_texts": page.locator(f"{CURRENT} .jp-OutputArea").all_inner_texts(),
                        "figures": _figures(page)}
                training = page.locator(f"{CURRENT} .jp-OutputArea-output").filter(has_text="epoch metrics").first
                training.scroll_into_view_if_needed()
                time.sleep(0.5)
                training.screenshot(path=str(SHOTS / "03_cifar10_cnn.png"))
                _save(page, root / name, lambda nb: all(c.get("execution_count") for c in nb.cells
                                                         if c.cell_type == "code"))
            except Exception:
                if page is not None and not page.is_closed():
                    page.screenshot(path=str(ARTIFACTS / "failure_notebook_03.png"))
                    print(f"screenshot of the failure: {ARTIFACTS / 'failure_notebook_03.png'}; page errors:\n"
                          + "\n".join(console))
                raise
            finally:
                browser.close()
        shutil.copy(root / name, out_dir / name)
    (out_dir / "page.json").write_text(json.dumps(seen))
    problems = notebook_problems(out_dir / name)
    assert not problems, f"{name}: " + "\n".join(problems)
    return json.loads((out_dir / "metrics.json").read_text())


@pytest.mark.xdist_group("03_cifar10_cnn")      # with test_nb_03, which asserts on the same execution
@pytest.mark.notebook
@pytest.mark.timeout(600)   # a real notebook with three trainings: the limit only guards a hang
def test_notebook_03_runs_all_in_jupyterlab_with_its_training_figure_once(executed_notebook, fake_cifar10):
    missing = browser_ready()
    if missing:
        pytest.skip(missing)
    executed, _ = executed_notebook("03_cifar10_cnn.ipynb", data_dir=str(fake_cifar10))
    page = executed.parent / "page.json"
    assert page.exists(), "03 ran under papermill: conftest.BROWSER_RUNS names this test by another node id?"
    seen = json.loads(page.read_text())
    print(f"03 run all in JupyterLab: {seen['seconds']:.1f} s")

    assert seen["stderr_blocks"] == 0                          # no pink block anywhere
    titles = [f["title"] for f in seen["figures"]]
    assert sum(t.startswith("training") for t in titles) == 1, titles     # the training figure once
    assert not any("Launching training on" in t for t in seen["output_texts"])
    [runs] = [f for f in seen["figures"] if f["title"].startswith("the same training on 1 and")]
    names = [t["name"] for t in runs["data"]]
    assert len(names) == len(set(names)) and all(names), names # each run and split has its own legend entry
