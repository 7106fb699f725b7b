"""ftkit.export: notebook pages, the static site, widgets as static equivalents, one run as one HTML file — and the
site read in Chromium from file:// with the network off."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from chromium import CHROMIUM, launch_chromium

pytest.importorskip("latex2mathml", reason="ftkit.export needs its extra: pip install \"ftkit[export]\"")
pytest.importorskip("markdown_it", reason="ftkit.export needs its extra: pip install \"ftkit[export]\"")
import torch
from torch import nn

import ftkit
from ftkit.export import export_run_html, export_site, notebook_page
from ftkit.export.cli import main as export_main, parse_value
from ftkit.export.page import WIDGET_MIME, WIDGET_NOTE, markdown_html, notebook_summary
from ftkit.export.statics import explorer_static, reveal_static, values

PLOTLY = "application/vnd.plotly.v1+json"


def small_run(epochs=3):
    ftkit.seed_everything(0)
    X = torch.randn(128, 4)
    y = (X[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32, shuffle=True)
    model = nn.Linear(4, 2)
    opt = ftkit.make_optimizer("sgd", model, lr=0.1)
    return ftkit.fit(model, loader, "cross_entropy", opt, epochs=epochs, val_loader=loader, metrics=["accuracy"],
                     progress=False)


def tiny_notebook():
    nb = nbformat.v4.new_notebook()
    fig = {"data": [{"type": "scatter", "x": [1, 2, 3], "y": [3, 1, 2], "name": "a"}], "layout": {"title": {"text": "t"}}}
    code = nbformat.v4.new_code_cell("print('hi')\nfig")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n  50%\r 100%\n"),
                    nbformat.v4.new_output("display_data", data={PLOTLY: fig, "text/plain": "Figure"}),
                    nbformat.v4.new_output("display_data", data={WIDGET_MIME: {"model_id": "x"}, "text/plain": "VBox"}),
                    nbformat.v4.new_output("error", ename="ValueError", evalue="bad",
                                           traceback=["\x1b[31mValueError\x1b[0m: bad"])]
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 · A title\n\n[![badge](x.svg)](y)\n\nThe loss is small. Then more: $\\ell = -\\log p$.\n\n$$\\sum_i x_i^2$$\n\n<details><summary>answer</summary>"
                                              "42</details>"), code]
    return nb


def test_markdown_formulas_become_mathml_and_html_passes_through():
    out = markdown_html("Inline $a_1 * b_2$ and *em*, display:\n\n$$\\frac{1}{2}$$\n\n<details>x</details>")
    assert out.count("<math") == 2 and "<mfrac>" in out and "display=\"block\"" in out
    assert "<em>em</em>" in out and "<details>x</details>" in out
    assert "$" not in out                          # no formula left as raw dollars


def test_page_shows_every_kind_of_output_and_no_network_script():
    page = notebook_page(tiny_notebook(), figure_pngs={0: "img/fig-0.png"})
    assert "<title>99 · A title</title>" in page
    assert page.count("class='figure'") == 1 and "img/fig-0.png" in page          # the figure + its PNG fallback
    assert WIDGET_NOTE in page                                                      # a widget is never silently lost
    assert "ValueError" in page and "\x1b" not in page                              # traceback without colour codes
    assert "hi\n 100%" in page                                                      # a progress bar's last state
    assert not re.search(r"src=['\"]https?:", page)                                # nothing from a CDN
    assert notebook_summary(tiny_notebook()) == "The loss is small."             # the index's one line


def test_reveal_slider_clocks_follow_the_steps():
    from ftkit.plots.training import training_figure
    import plotly.io as pio
    history = small_run()
    fig = json.loads(pio.to_json(training_figure(history), validate=False))
    static = reveal_static(fig, frames=5)
    spec = static["layout"]["meta"]["ftkit_static"]
    assert spec["kind"] == "reveal" and spec["ticks"][0] == 1 and spec["ticks"][-1] == len(history.steps)
    step_trace = next(i for i, t in enumerate(static["data"]) if t["name"] == "loss (step)")
    clock = spec["clocks"][spec["traces"].index(step_trace)]
    assert clock == values(static["data"][step_trace]["x"]) == [s["step"] for s in history.steps]
    assert len(static["layout"]["sliders"][0]["steps"]) == len(spec["ticks"]) == 5


def test_explorer_static_frames_are_the_explorers_own_paths():
    from ftkit.ui.gd_explorer import GDExplorer
    explorer = GDExplorer("booth", optimizers=("gd", "momentum"), lr=0.05, steps=40, grid=20)
    import plotly.io as pio
    fig = json.loads(pio.to_json(explorer.static_figure(), validate=False))
    assert fig["layout"]["meta"]["ftkit"] == "gd_explorer"
    static = explorer_static(fig, fig["layout"]["meta"]["state"], lr_factors=(0.1, 1.0), momenta=(0.0, 0.9))
    spec = static["layout"]["meta"]["ftkit_static"]
    names = [static["data"][i]["meta"] for i in spec["traces"]]
    at_one = dict(zip(names, spec["table"]["1,1"]))            # lr ×1, μ 0.9: the explorer's own view
    live = {t.meta: t for t in explorer.figure.data}
    assert at_one["path:gd"][0][-1] == pytest.approx(float(live["path:gd"].x[-1]), rel=1e-4)
    slow = dict(zip(names, spec["table"]["0,1"]))["path:gd"][0]  # lr ×0.1: GD has not got as far
    assert abs(slow[-1] - 1) > abs(at_one["path:gd"][0][-1] - 1)  # Booth's minimum is at x = 1
    no_mu = dict(zip(names, spec["table"]["1,0"]))["path:momentum"]
    assert no_mu != at_one["path:momentum"]                     # the momentum slider changes momentum's path
    assert dict(zip(names, spec["table"]["1,0"]))["path:gd"] == at_one["path:gd"]   # ... and not GD's
    assert [s["currentvalue"]["prefix"] for s in static["layout"]["sliders"]] == ["lr ×: ", "momentum μ: "]


def test_run_html_is_one_self_contained_file(tmp_path):
    history = small_run()
    path = history.export_html(tmp_path / "run.html", params={"lr": 0.1, "model": "linear"},
                               metrics={"test_accuracy": 0.9, "parameters": {"ignored": 1}})
    text = path.read_text()
    assert "Plotly" in text and not re.findall(r"<(?:script|img|link)[^>]*\b(?:src|href)=", text)   # all inside
    assert "<td>lr</td><td>0.1</td>" in text and "<td>test_accuracy</td><td>0.9</td>" in text
    assert "<td>torch</td>" in text                                       # the environment
    data = json.loads(re.search(r"class='figure-data' data-for='run'>(.*?)</script>", text, re.S).group(1))
    assert data["layout"]["meta"]["ftkit_static"]["kind"] == "reveal"
    again = ftkit.History.from_json(re.search(r"<pre>(\{.*?)</pre>", text, re.S).group(1).replace("&quot;", '"'))
    assert len(again.steps) == len(history.steps)


def test_run_html_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(TypeError, match="takes a History"):
        export_run_html({"steps": []}, tmp_path / "x.html")
    with pytest.raises(ValueError, match="empty"):
        export_run_html(ftkit.History(), tmp_path / "x.html")
    with pytest.raises(ValueError, match=r"name it \*\.html"):
        small_run(1).export_html(tmp_path / "x.txt")


def test_cli_run_folder_and_bad_sources(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    small_run(2).to_json(run / "history.json")
    (run / "metrics.json").write_text(json.dumps({"accuracy": 0.8, "parameters": {"lr": 0.1}}))
    assert export_main([str(run), "--out", str(tmp_path / "shared.html")]) == 0
    text = (tmp_path / "shared.html").read_text()
    assert "<td>lr</td><td>0.1</td>" in text and "<td>accuracy</td><td>0.8</td>" in text
    with pytest.raises(SystemExit):
        export_main([str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "site")])
    assert "neither a notebook" in capsys.readouterr().err
    assert [parse_value(v) for v in ("3", "1e-3", "[1, 2]", "adamw", "True", "null")] == [3, 1e-3, [1, 2], "adamw",
                                                                                        True, None]


def test_site_from_an_executed_notebook_without_a_browser(tmp_path):
    path = tmp_path / "99_tiny.ipynb"
    nb = tiny_notebook()
    nb.cells[1].execution_count = 1
    nbformat.write(nb, str(path))
    report = export_site(path, tmp_path / "site", images=False, say=lambda *_: None)
    site = tmp_path / "site"
    page = report["pages"]["99_tiny"]
    assert page["figures"] == 1 and page["title"] == "99 · A title" and page["bytes"] < 100_000
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000      # shipped once, in the site
    assert "99_tiny.html" in (site / "index.html").read_text()
    assert nbformat.read(str(site / "notebooks" / "99_tiny.ipynb"), as_version=4).cells[1].outputs


# ------------------------------------------------------------------------------------------------ in Chromium
@pytest.mark.browser
@pytest.mark.notebook
@pytest.mark.xdist_group("02_gradient_descent")   # with the tests of the same execution of 02 (test_nb_02)
def test_site_of_notebook_02_in_chromium_offline(executed_notebook, tmp_path):
    """Every figure of 02's page renders from file:// with the network off, the explorer's static sliders redraw
    its paths, the index links work, and the page stays under 5 MB."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executed, _ = executed_notebook("02_gradient_descent.ipynb")
    site = tmp_path / "site"
    report = export_site(executed, site, say=print)
    page = report["pages"]["02_gradient_descent"]
    print(json.dumps({"page_weight_mb": round(page["bytes"] / 1e6, 2), "figures": page["figures"]}))
    assert page["bytes"] < 5e6, page
    assert page["figures"] >= 10
    with sync_api.sync_playwright() as p:
        if not Path(CHROMIUM).exists():
            pytest.skip("no /usr/bin/chromium (bash .ci/install-browser installs Debian's)")
        browser = launch_chromium(p)
        context = browser.new_context(offline=True)
        web = context.new_page()
        outside = []
        web.route("**/*", lambda r: (outside.append(r.request.url), r.abort())
                  if not r.request.url.startswith("file:") else r.continue_())
        errors = []
        web.on("pageerror", lambda e: errors.append(str(e)))
        web.goto((site / "index.html").as_uri())
        web.click("a[href='02_gradient_descent.html']")
        web.wait_for_function("document.querySelectorAll('.figure').length > 0 && document.querySelectorAll("
                              "'.figure').length == document.querySelectorAll('.figure[data-ready]').length",
                              timeout=120_000)
        drawn = web.evaluate("""() => Array.from(document.querySelectorAll('.figure')).map(g => ({
            id: g.id, traces: (g.data || []).length, height: g.getBoundingClientRect().height,
            paths: g.querySelectorAll('.main-svg').length}))""")
        assert len(drawn) == page["figures"]
        assert all(d["traces"] > 0 and d["height"] > 100 and d["paths"] > 0 for d in drawn), drawn
        explorer = web.evaluate("""() => Array.from(document.querySelectorAll('.figure')).findIndex(g =>
            g.layout.meta && g.layout.meta.ftkit_static && g.layout.meta.ftkit_static.kind === 'grid')""")
        assert explorer >= 0, "the explorer's static figure is on the page"
        gd = f"document.querySelectorAll('.figure')[{explorer}]"
        first_path = f"() => {{ const g = {gd}; const i = g.layout.meta.ftkit_static.traces[0]; " \
                     "return Array.from(g.data[i].x).slice(-3); }"
        before = web.evaluate(first_path)
        web.locator(".figure").nth(explorer).scroll_into_view_if_needed()
        rail = web.locator(".figure").nth(explorer).locator(".slider-rail-rect").first
        box = rail.bounding_box()
        web.mouse.click(box["x"] + 2, box["y"] + box["height"] / 2)        # lr × 0.1: the leftmost step
        web.wait_for_function(f"() => {gd}.layout.sliders[0].active === 0", timeout=10_000)
        after = web.evaluate(first_path)
        assert after != before, (before, after)
        assert not errors, errors
        assert not outside, outside
        web.click("a[href='index.html']")
        assert web.title() == "ftkit notebooks"
        browser.close()
