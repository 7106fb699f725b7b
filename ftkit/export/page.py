"""One executed notebook as one HTML page: markdown with its formulas as MathML, highlighted code, and every output
as a reader would see it in Jupyter — plotly figures interactive (plotly.js loaded once from the site's assets, or
inlined for a single file), a PNG of each figure inside ``<noscript>``, widgets as their static equivalents."""
from __future__ import annotations

import html
import json
import re

from .statics import to_static

__all__ = ["notebook_page", "page_html", "markdown_html", "figure_div", "notebook_title", "notebook_summary",
           "PLOTLY_MIME", "WIDGET_MIME", "WIDGET_NOTE"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("Interactive controls (sliders, buttons, text boxes) run only in a live notebook: open the notebook in "
               "JupyterLab or Colab to use them.")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_REMOTE_IMG = re.compile(r"<img src=\"https?://[^\"]*\" alt=\"([^\"]*)\"[^>]*>")
_MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\w)", re.S)


def _math(latex: str, display: bool) -> str:
    """MathML for a formula (browsers render MathML natively: no MathJax, no network); the LaTeX on failure."""
    try:
        from latex2mathml.converter import convert
        return convert(latex.strip(), display="block" if display else "inline")
    except Exception:                              # an unsupported macro: show the source, never lose the formula
        return f"<code class='latex'>{html.escape(latex)}</code>"


def markdown_html(text: str) -> str:
    """Markdown (CommonMark + tables + raw HTML such as ``<details>``) with ``$…$`` and ``$$…$$`` as MathML."""
    from markdown_it import MarkdownIt
    formulas: list[str] = []

    def keep(match):                               # formulas leave before markdown sees their _ and * ...
        display = match.group(1) is not None
        formulas.append(_math(match.group(1) if display else match.group(2), display))
        return f"@@ftkit-math-{len(formulas) - 1}@@"

    body = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(
        _MATH.sub(keep, text))
    body = re.sub(r"@@ftkit-math-(\d+)@@", lambda m: formulas[int(m.group(1))], body)   # ... and come back as MathML
    # a picture from the web (a badge) would be a request a file:// page cannot make offline: its alt text instead
    return _REMOTE_IMG.sub(lambda m: html.escape(html.unescape(m.group(1))) or "image", body)


def _code_html(source: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    return highlight(source, PythonLexer(), HtmlFormatter(nowrap=True))


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _plain(text: str) -> str:
    """Terminal text as shown: colours dropped, a progress bar's carriage returns keep the last state."""
    lines = [line.rsplit("\r", 1)[-1] for line in _ANSI.sub("", text).split("\n")]
    return html.escape("\n".join(lines))


def figure_div(fig_id: str, figure: dict, png: str | None = None) -> str:
    """A div that ``ftkit-figures.js`` turns into a live plotly figure; the figure's JSON rides in a script tag
    (``</`` escaped), the PNG in ``<noscript>`` for readers without JavaScript."""
    data = json.dumps(figure, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    fallback = f"<noscript><img class='figure-png' src='{html.escape(png)}' alt='figure'></noscript>" if png else ""
    return (f"<div class='figure' id='{fig_id}'></div>{fallback}"
            f"<script type='application/json' class='figure-data' data-for='{fig_id}'>{data}</script>")


def _output_html(out: dict, emit_figure) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return f"<pre class='stream {out.get('name', 'stdout')}'>{_plain(_text(out.get('text', '')))}</pre>"
    if kind == "error":
        trace = "\n".join(_text(line) for line in out.get("traceback", [])) or f"{out.get('ename')}: {out.get('evalue')}"
        return f"<pre class='error'>{_plain(trace)}</pre>"
    data = out.get("data", {})
    if PLOTLY_MIME in data:
        return emit_figure(to_static(data[PLOTLY_MIME]))
    if "text/html" in data:
        return f"<div class='html-output'>{_text(data['text/html'])}</div>"
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            src = f"data:{mime};base64,{_text(data[mime]).strip()}"
            return f"<img class='image-output' src='{src}' alt='output'>"
    if "image/svg+xml" in data:
        return f"<div class='svg-output'>{_text(data['image/svg+xml'])}</div>"
    if "text/markdown" in data:
        return f"<div class='markdown'>{markdown_html(_text(data['text/markdown']))}</div>"
    if WIDGET_MIME in data:
        return f"<p class='widget-note'>{WIDGET_NOTE}</p>"
    if "text/plain" in data:
        return f"<pre class='text-output'>{_plain(_text(data['text/plain']))}</pre>"
    return ""


def notebook_title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return re.sub(r"[*_`]", "", line.lstrip("#").strip())
    return "notebook"


def notebook_summary(nb) -> str:
    """The first sentence of the first paragraph that is not a heading, a badge or a link list (plain text)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for para in re.split(r"\n\s*\n", cell.source):
            para = para.strip()
            if not para or para.startswith(("#", "[![", "|", "<", "-", "*", "1.")):
                continue
            plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", para)
            plain = re.sub(r"[*_`]|\$[^$]*\$", "", plain).replace("\n", " ")
            return re.split(r"(?<=[.!?])\s", plain, maxsplit=1)[0]
    return ""


def notebook_page(nb, *, title: str | None = None, figure_pngs: dict[int, str] | None = None,
                  assets: str = "assets", inline_js: str | None = None, header: str = "") -> str:
    """The HTML page of an executed notebook (``nb``: an nbformat node). ``figure_pngs`` maps the n-th figure to
    the relative path of its PNG; ``assets``: the relative folder of plotly.js and the page script, or
    ``inline_js`` (plotly.js's text) for a page that must stand alone."""
    figures: list[str] = []

    def emit(figure: dict) -> str:
        n = len(figures)
        figures.append(f"fig-{n}")
        return figure_div(f"fig-{n}", figure, (figure_pngs or {}).get(n))

    parts = [header]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(f"<section class='cell markdown'>{markdown_html(cell.source)}</section>")
        elif cell.cell_type == "code":
            tags = cell.metadata.get("tags", [])
            label = ("parameters of this run" if "injected-parameters" in tags
                     else "parameters" if "parameters" in tags else "")
            caption = f"<div class='cell-label'>{label}</div>" if label else ""
            outputs = "".join(_output_html(o, emit) for o in cell.get("outputs", []))
            if cell.source.strip() or outputs:
                parts.append(f"<section class='cell code'>{caption}<pre class='source highlight'>"
                             f"{_code_html(cell.source)}</pre><div class='outputs'>{outputs}</div></section>")
    return page_html(title or notebook_title(nb), "\n".join(parts), assets=assets, inline_js=inline_js)


def page_html(title: str, body: str, *, assets: str = "assets", inline_js: str | None = None) -> str:
    from .assets import PAGE_CSS, PAGE_JS
    if inline_js is not None:
        scripts = f"<script>{inline_js}</script>\n<script>{PAGE_JS}</script>"
    else:
        scripts = (f"<script src='{assets}/plotly.min.js'></script>\n"
                   f"<script src='{assets}/ftkit-figures.js'></script>")
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head>\n"
            f"<body><main>\n{body}\n</main>\n{scripts}\n</body></html>\n")

