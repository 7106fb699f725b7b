"""The dashboard and the GD explorer on Colab's widget stack in a real browser: the closest front-end to Colab that
runs here, classic Notebook 6.5.7 with ipywidgets 7.7.1 (widgetsnbextension 3.6.10), ipykernel 6.17.1 and plotly
5.24.1, all from the Colab env that ``.ci/colab-env`` builds, in headless Chromium (Playwright, Debian's chromium).

- Notebook 03, *Run All* with test parameters: Pause holds the step counter, the LR slider (keyboard, while
  paused) applies at Resume, and the new lr is read from the page — the plotly data of the training figure in the
  DOM (``.js-plotly-plot``'s ``data``: the lr event marker) — then the notebook runs to its end, no stderr block.
- A small training notebook (tests/assets/dashboard_training.ipynb): Stop ends a 200-epoch run early.
- Notebook 02, *Run All*: the GD explorer's path figure redraws when its lr slider moves.

Colab cannot show plotly's ``FigureWidget`` (third-party widget JavaScript from a CDN); the live figure there is a
plain plotly figure updated in place through a display handle. ``FTKIT_LIVE_FIGURE`` (default here: ``static``)
forces that path in the kernel, so this test shows what Colab would; ``FTKIT_LIVE_FIGURE=widget`` tries the
FigureWidget instead. The figures are found by their contents, not by where the path puts them.

Skipped with the reason when the Colab env is not built (``bash .ci/colab-env``), or without chromium/playwright.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from chromium import CHROMIUM, launch_chromium, stop_server

from test_colab_stack import colab_env

ROOT = Path(__file__).resolve().parents[1]

ARTIFACTS = ROOT / "artifacts" / "browser"
LIVE_FIGURE = os.environ.get("FTKIT_LIVE_FIGURE", "static")

pytestmark = [pytest.mark.browser, pytest.mark.colab, pytest.mark.timeout(600)]     # guards a hang


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def classic(tmp_path):
    """Classic Notebook 6.5.7 of the Colab env on 127.0.0.1 with a token; config and runtime inside tmp_path."""
    env_dir = colab_env()
    if env_dir is None:
        pytest.skip("Colab's stack is not built here: run `bash .ci/colab-env`")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Debian chromium at {CHROMIUM}: run .ci/install-browser (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONPATH=str(ROOT), JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "rt"),
               IPYTHONDIR=str(home / "ipython"), OMP_NUM_THREADS="1", FTKIT_LIVE_FIGURE=LIVE_FIGURE,
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "notebook.log", "w")
    server = subprocess.Popen(
        [str(env_dir / "bin" / "python"), "-m", "notebook", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--NotebookApp.token={token}", f"--NotebookApp.notebook_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(f"{base}/api/status", headers={"Authorization": f"token {token}"})
                urllib.request.urlopen(request, timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Notebook did not start; log:\n{(tmp_path / 'notebook.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield base, token, root
    finally:
        stop_server(server, log)


def write_notebook(source: Path, root: Path, **parameters) -> Path:
    """``source`` with ``parameters`` injected as papermill would, saved in the server's folder."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    nb = parameterize_notebook(load_notebook_node(str(source)), parameters)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / source.name)
    return root / parameters["output_dir"]


def wait_file(path: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was not written within {timeout:.0f} s: the run hung"
        time.sleep(0.3)
    time.sleep(0.2)
    return json.loads(path.read_text())


def run_all(page, base, token, name):
    """Open ``name`` in classic Notebook, wait for its kernel, then Cell → Run All from the menu."""
    page.goto(f"{base}/notebooks/{name}?token={token}")
    page.wait_for_function("() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && "
                           "Jupyter.notebook.kernel.is_connected()", timeout=90_000)
    page.locator("#kernel_indicator_icon.kernel_idle_icon").wait_for(timeout=90_000)
    page.click("#celllink")
    page.click("#run_all_cells > a")
    page.wait_for_function("() => Array.from(document.querySelectorAll('.input_prompt'))"
                           ".some(p => p.innerText.includes('*'))", timeout=30_000)


def wait_idle(page, timeout_ms: int):
    page.wait_for_function("() => !Array.from(document.querySelectorAll('.input_prompt'))"
                           ".some(p => p.innerText.includes('*'))", timeout=timeout_ms)


WAIT_STEP = """n => { const r = document.querySelector('.ftkit-readout');
    const m = r && r.innerText.match(/step (\\d+)/); return m && +m[1] >= n; }"""
# every plotly figure on the page, as {title, traces}: read from plotly's own data in the DOM, not pixels
FIGURES = """(sel = '.js-plotly-plot') => Array.from(document.querySelectorAll(sel)).map(d => ({
    title: d.layout && d.layout.title ? (d.layout.title.text || '') : '',
    data: (d.data || []).map(t => ({name: t.name || null, meta: t.meta || null,
        x: t.x ? Array.from(t.x).slice(0, 2000) : [], y: t.y ? Array.from(t.y).slice(0, 2000) : [],
        text: t.text ? Array.from([].concat(t.text)) : []}))}))"""


def step(page) -> int:
    match = re.search(r"step (\d+)", page.locator(".ftkit-readout").inner_text())
    return int(match.group(1)) if match else -1


def trace(page, name: str, selector: str = ".js-plotly-plot") -> dict | None:
    """The first trace called ``name`` (or with meta ``name``) on the figures under ``selector``."""
    for figure in page.evaluate(FIGURES, selector):
        for t in figure["data"]:
            if name in (t["name"], t["meta"]):
                return t
    return None


def press(page, selector: str):
    """Click a widget button. Its 'click' event is dispatched on the element: classic Notebook keeps scrolling a
    running cell's output to its end, so Playwright's wait for a still element never ends (a person's click works)."""
    page.locator(selector).dispatch_event("click")


def stderr_blocks(page) -> list[str]:
    return page.locator(".output_stderr").all_inner_texts()


def fail_screenshot(page, console, name):
    """On a failure: a screenshot, the page's errors and its output texts (printed; never a second failure)."""
    print("page errors:\n" + "\n".join(console))
    if page is None or page.is_closed():
        return
    with contextlib.suppress(Exception):
        print("outputs:\n" + "\n---\n".join(t[:400] for t in page.locator(".output_area").all_inner_texts()))
    with contextlib.suppress(Exception):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / name), timeout=10_000)
        print(f"screenshot of the failure: {ARTIFACTS / name}")


@pytest.mark.timeout(900)     # the real notebook 03; the limit only guards a hang
def test_notebook_03_run_all_pause_slider_resume_on_colabs_widget_stack(classic):
    from playwright.sync_api import sync_playwright
    from ftkit.data.fake import write_fake_cifar10
    base, token, root = classic
    write_fake_cifar10(root / "cifar10", n_train=1200, n_test=200, noise=1.0)
    out = write_notebook(ROOT / "notebooks" / "03_cifar10_cnn.ipynb", root, output_dir="out03",
                         data_dir=str(root / "cifar10"), epochs=12, batch_size=32, lr=3e-3, device="cpu",
                         num_workers=0, throughput_batches=3, subset=1200)
    t0, times, console, page = time.monotonic(), {}, [], None
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda e: console.append(str(e)))
            run_all(page, base, token, "03_cifar10_cnn.ipynb")
            page.locator(".ftkit-lr .ui-slider-handle").wait_for(timeout=400_000)   # ipywidgets 7's slider
            times["dashboard shown"] = time.monotonic() - t0
            # Pause at once: a loaded machine's browser draws the live figure far behind the training, and a
            # paused training lets it catch up (the pause holds before a step: "paused before step N")
            press(page, ".ftkit-pause")
            pressed = page.locator(".ftkit-readout").inner_text()
            try:
                page.locator(".ftkit-readout", has_text="paused before step").wait_for(timeout=120_000)
            except Exception:
                print(f"Pause pressed when the page read {pressed!r}; "
                      f"{time.monotonic() - t0:.0f} s since the browser started")
                raise
            held = step(page)
            time.sleep(2.0)
            held_later = step(page)
            before_lr = float(page.locator(".ftkit-lr .widget-readout").inner_text())
            page.locator(".ftkit-lr .ui-slider-handle").focus()
            page.keyboard.press("PageUp")       # a fifth of the range (peak/1000 … peak·10) up: ×10^0.8, at Resume
            page.wait_for_function("""before => { const r = document.querySelector('.ftkit-lr .widget-readout');
                return r && +r.innerText > 2 * before; }""", arg=before_lr, timeout=30_000)
            new_lr = float(page.locator(".ftkit-lr .widget-readout").inner_text())
            press(page, ".ftkit-pause")                                    # Resume
            page.wait_for_function(WAIT_STEP, arg=held + 3, timeout=120_000)
            resumed = step(page)
            page.wait_for_function(f"() => ({FIGURES})().some(f => f.data.some(t => t.name === 'events' "
                                   "&& t.x.length >= 1))", timeout=120_000)
            events = trace(page, "events")
            times["new lr on the curve"] = time.monotonic() - t0
            metrics = wait_file(out / "metrics.json", 300)
            wait_idle(page, 120_000)
            times["03 run all"] = time.monotonic() - t0
            errors = stderr_blocks(page)
            lr_curve = trace(page, "lr")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "colab_03.png"), full_page=True)
        except Exception:
            fail_screenshot(page, console, "colab_03_failure.png")
            raise
        finally:
            browser.close()
    print(f"live figure path {LIVE_FIGURE}; seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    assert held == held_later and resumed >= held + 3, (held, held_later, resumed)   # Pause held, Resume went on
    assert new_lr > 2 * before_lr, (before_lr, new_lr)
    assert events["x"] and "(slider)" in events["text"][0], events                # the move, marked on the curve
    assert re.search(r"→ ([0-9.e+-]+)", events["text"][0]), events["text"]
    assert float(re.search(r"→ ([0-9.e+-]+)", events["text"][0]).group(1)) == pytest.approx(new_lr, rel=0.01)
    assert events["x"][0] == held                                 # applied at Resume, at the step it held before
    assert lr_curve is not None and lr_curve["y"][-1] == pytest.approx(new_lr, rel=0.01), lr_curve  # …and kept
    assert not errors, errors                                     # no pink block anywhere
    assert metrics                                                # the notebook ran to its end


def test_stop_ends_a_long_run_on_colabs_widget_stack(classic):
    from playwright.sync_api import sync_playwright
    base, token, root = classic
    out = write_notebook(ROOT / "tests" / "assets" / "dashboard_training.ipynb", root, epochs=200, n=320, lr=0.1,
                         step_delay=0.03, output_dir="live")
    out.mkdir()
    console, page = [], None
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda e: console.append(str(e)))
            run_all(page, base, token, "dashboard_training.ipynb")
            page.wait_for_function(WAIT_STEP, arg=10, timeout=120_000)
            press(page, ".ftkit-stop")
            history = wait_file(out / "history.json", 60)
            wait_idle(page, 30_000)
            errors = stderr_blocks(page)
        except Exception:
            fail_screenshot(page, console, "colab_stop_failure.png")
            raise
        finally:
            browser.close()
    assert history["stop_reason"].startswith("stopped by request"), history["stop_reason"]
    assert 10 <= len(history["steps"]) < 200 * 16
    assert not errors, errors


PATHS = ".ftkit-explorer-paths .js-plotly-plot"     # the explorer's path figure


def test_gd_explorer_in_02_redraws_when_its_slider_moves_on_colabs_widget_stack(classic):
    from playwright.sync_api import sync_playwright
    base, token, root = classic
    out = write_notebook(ROOT / "notebooks" / "02_gradient_descent.ipynb", root, output_dir="out02", steps=60,
                         grid=30, theory_steps=200, settle_steps=200, sweep_points=6, explorer_grid=20, basin_grid=6,
                         basin_steps=150, noise_steps=600, explorer_basin_grid=4)
    console, page = [], None
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda e: console.append(str(e)))
            run_all(page, base, token, "02_gradient_descent.ipynb")
            wait_file(out / "metrics.json", 300)
            wait_idle(page, 120_000)
            errors = stderr_blocks(page)
            page.wait_for_function(f"""() => ({FIGURES})('{PATHS}').some(f => f.data.some(t =>
                t.meta === 'path:gd' && t.x.length > 0))""", timeout=60_000)   # the kernel is idle before the
            before = trace(page, "path:gd", PATHS)["x"]                       # page has drawn the widget's figure
            page.locator(".ftkit-explorer-lr .ui-slider-handle").focus()
            for _ in range(3):
                page.keyboard.press("ArrowLeft")          # a smaller lr: a new path
            page.wait_for_function(f"""before => ({FIGURES})('{PATHS}').some(f => f.data.some(t =>
                t.meta === 'path:gd' && t.x.length > 0 && JSON.stringify(t.x) !== JSON.stringify(before)))""",
                                   arg=before, timeout=60_000)        # both sides JS's JSON (Python's has spaces)
            after = trace(page, "path:gd", PATHS)["x"]
        except Exception:
            fail_screenshot(page, console, "colab_02_failure.png")
            raise
        finally:
            browser.close()
    assert before and after != before
    assert not errors, errors
