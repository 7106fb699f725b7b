"""Executed notebooks as a static site: ``index.html`` (each notebook with its one-line summary, minutes and headline
result), one page per notebook, plotly.js once under ``assets/``, a PNG of every figure under ``img/`` and the
executed notebooks under ``notebooks/`` with those PNGs inside (so GitHub and nbviewer show pictures too)."""
from __future__ import annotations

import base64
import html
import json
import os
import time
import warnings
from pathlib import Path

from .assets import PAGE_JS, plotly_js
from .page import PLOTLY_MIME, notebook_page, notebook_summary, notebook_title, page_html

__all__ = ["export_site", "find_notebooks", "is_executed", "figures_of", "render_pngs", "HEADLINE_KEYS"]

# metrics shown on the index when a notebook's metrics.json has them at its top level (first three found)
HEADLINE_KEYS = ("test_accuracy", "accuracy", "f1", "val_f1", "exact_match", "perplexity", "val_loss",
                 "final_loss", "best_value")


def find_notebooks(sources) -> list[Path]:
    """Every ``.ipynb`` named or inside a named folder (sorted; checkpoints skipped); a wrong path fails naming it."""
    found: list[Path] = []
    for source in [sources] if isinstance(sources, (str, os.PathLike)) else list(sources):
        path = Path(source)
        if path.is_dir():
            found += sorted(p for p in path.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{os.fspath(path)!r} is neither a notebook (.ipynb) nor a folder of notebooks")
    if not found:
        raise FileNotFoundError(f"no notebook found in {', '.join(map(str, [sources]))}")
    return found


def is_executed(nb) -> bool:
    return any(c.cell_type == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb.cells)


def figures_of(nb) -> list[dict]:
    """The output bundles holding a plotly figure, in page order (the order :func:`notebook_page` numbers them)."""
    return [out["data"] for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])
            if PLOTLY_MIME in out.get("data", {})]


def render_pngs(figures: list[dict], folder: Path, say=print) -> dict[int, Path]:
    """A PNG of each figure (kaleido, with the system's Chromium); none, with one line saying why, if it can't."""
    try:
        import kaleido
        import plotly.io as pio
        kaleido.start_sync_server(silence_warnings=True)
    except Exception as e:                          # no kaleido, no browser: the site works without pictures
        say(f"export: no PNG fallbacks ({type(e).__name__}: {e}); pip install \"ftkit[export]\" and a Chrome/Chromium")
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    done = {}
    try:
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")   # plotly 6+ with a server
        for n, figure in enumerate(figures):
            path = folder / f"fig-{n}.png"
            layout = figure.get("layout", {})
            path.write_bytes(pio.to_image(figure, format="png", width=layout.get("width") or 900,
                                          height=layout.get("height") or 450, scale=1))
            done[n] = path
    except Exception as e:
        say(f"export: PNG fallbacks stopped at figure {len(done)} ({type(e).__name__}: {e})")
    finally:
        kaleido.stop_sync_server(silence_warnings=True)
    return done


def _execute(path: Path, out_nb: Path, run_dir: Path, parameters: dict, cwd) -> None:
    import papermill as pm
    run_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(path), str(out_nb), parameters={**parameters, "output_dir": str(run_dir)},
                        cwd=str(cwd), kernel_name="python3", progress_bar=False)


def _metrics(nb, run_dir: Path | None, cwd) -> dict:
    candidates = [run_dir / "metrics.json"] if run_dir else []
    injected = nb.metadata.get("papermill", {}).get("parameters", {}).get("output_dir")
    if injected:
        candidates.append(Path(cwd, injected) / "metrics.json")
    for f in candidates:
        if f.is_file():
            try:
                return json.loads(f.read_text())
            except ValueError:
                pass
    return {}


def _headline(metrics: dict) -> str:
    shown = [(k, metrics[k]) for k in HEADLINE_KEYS if isinstance(metrics.get(k), (int, float))][:3]
    return ", ".join(f"{k} {v:.4g}" for k, v in shown)


def _minutes(nb) -> str:
    seconds = nb.metadata.get("papermill", {}).get("duration")
    return f"{seconds / 60:.1f} min" if isinstance(seconds, (int, float)) else "—"


def export_site(sources, out, *, parameters: dict | None = None, preset: str | None = None, images: bool = True,
                cwd=None, say=print) -> dict:
    """Build the site in ``out`` from notebooks (paths or folders). A notebook is executed (papermill, with
    ``parameters`` and ``preset``) when it has no outputs or when parameters are given; an executed one is taken
    as it is. Returns ``{"pages": {name: {"bytes": page weight with its PNGs, "figures": n, ...}}}`` and writes
    the same to ``out/site.json``."""
    import nbformat
    notebooks = find_notebooks(sources)
    if preset not in (None, "cpu", "gpu"):
        raise ValueError(f"preset must be 'cpu' or 'gpu', got {preset!r}")
    parameters = dict(parameters or {}, **({"preset": preset} if preset else {}))
    out, cwd = Path(out), Path(cwd or os.getcwd())
    for sub in ("assets", "notebooks", "img", "runs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "assets" / "plotly.min.js").write_text(plotly_js(), encoding="utf-8")
    (out / "assets" / "ftkit-figures.js").write_text(PAGE_JS, encoding="utf-8")
    pages, rows = {}, []
    for path in notebooks:
        stem, t0 = path.stem, time.perf_counter()
        executed = out / "notebooks" / path.name
        source_nb = nbformat.read(str(path), as_version=4)
        run_dir = None
        if parameters or not is_executed(source_nb):
            run_dir = out / "runs" / stem
            _execute(path, executed, run_dir, parameters, cwd)
            nb = nbformat.read(str(executed), as_version=4)
        else:
            nb = source_nb
        figures = figures_of(nb)
        pngs = render_pngs([f[PLOTLY_MIME] for f in figures], out / "img" / stem, say) if images and figures else {}
        for n, png in pngs.items():                 # the executed notebook shows pictures where JS can't run
            figures[n]["image/png"] = base64.b64encode(png.read_bytes()).decode()
        nbformat.write(nb, str(executed))
        nav = f"<p class='nav'><a href='index.html'>← all notebooks</a> · <a href='notebooks/{path.name}'>" \
              "the executed notebook</a></p>"
        page = notebook_page(nb, figure_pngs={n: f"img/{stem}/fig-{n}.png" for n in pngs}, header=nav)
        (out / f"{stem}.html").write_text(page, encoding="utf-8")
        weight = len(page.encode()) + sum(p.stat().st_size for p in pngs.values())
        metrics = _metrics(nb, run_dir, cwd)
        pages[stem] = {"title": notebook_title(nb), "summary": notebook_summary(nb), "minutes": _minutes(nb),
                       "headline": _headline(metrics), "figures": len(figures), "bytes": weight,
                       "page_bytes": len(page.encode())}
        rows.append(pages[stem])
        say(f"export: {stem}.html ({len(figures)} figures, {weight / 1e6:.2f} MB, {time.perf_counter() - t0:.0f} s)")
    table = "".join(
        f"<tr><td><a href='{html.escape(stem)}.html'>{html.escape(p['title'])}</a></td><td>{html.escape(p['summary'])}"
        f"</td><td>{p['minutes']}</td><td>{html.escape(p['headline'])}</td></tr>" for stem, p in pages.items())
    body = ("<h1>ftkit notebooks</h1><p>Each notebook as it ran: every figure interactive (zoom, hover), sliders "
            "precomputed where a live control stood. Nothing here needs a kernel or a network.</p>"
            "<table class='index'><tr><th>notebook</th><th>what it shows</th><th>minutes</th><th>result</th></tr>"
            f"{table}</table>")
    (out / "index.html").write_text(page_html("ftkit notebooks", body), encoding="utf-8")
    report = {"pages": pages, "plotly_js_bytes": (out / "assets" / "plotly.min.js").stat().st_size}
    (out / "site.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report
