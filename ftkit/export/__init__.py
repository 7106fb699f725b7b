"""Read without running: executed notebooks as a static site, and one training run as one HTML file.

``python -m ftkit export NOTEBOOK_OR_FOLDER --out DIR`` (:mod:`ftkit.export.cli`) executes the notebooks (or takes
executed ones) and writes an index and one page per notebook; every plotly figure stays interactive with plotly.js
shipped once inside the site, widgets become static equivalents (:mod:`ftkit.export.statics`), and a PNG beside each
figure serves viewers without JavaScript. ``export_run_html(history, path)`` (also ``history.export_html(path)``)
writes one run — curves, LR events, parameters, metrics, environment — as a single file to send by mail.
"""
from .page import notebook_page
from .run import export_run_html
from .site import export_site

__all__ = ["export_site", "export_run_html", "notebook_page"]
