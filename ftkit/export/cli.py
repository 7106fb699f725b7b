"""``python -m ftkit export NOTEBOOK_OR_FOLDER [...] --out DIR [-p NAME VALUE ...] [--preset cpu|gpu]``:
notebooks → a static site (executed with the parameters given, or taken as executed); a run folder (one holding
``history.json``) → one self-contained HTML file."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["main", "parse_value"]


def parse_value(text: str):
    """A ``-p`` value as papermill's YAML-ish rule would read it: JSON where it parses (numbers, lists, true/false,
    null), the text itself otherwise (``-p optimizer adamw``)."""
    lowered = {"True": True, "False": False, "None": None}
    if text in lowered:
        return lowered[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftkit export", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", metavar="NOTEBOOK_OR_FOLDER",
                        help="notebooks, folders of notebooks, or one run folder (with history.json)")
    parser.add_argument("--out", required=True, help="the site's folder (or FILE.html for a run folder)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter (executes the notebooks with it)")
    parser.add_argument("--preset", choices=("cpu", "gpu"), help="the notebooks' preset (executes them)")
    parser.add_argument("--no-images", action="store_true", help="skip the PNG fallbacks (no browser needed)")
    args = parser.parse_args(argv)
    first = Path(args.sources[0])
    if len(args.sources) == 1 and first.is_dir() and (first / "history.json").is_file():
        from .run import export_run_html, load_run_folder
        history, params, metrics = load_run_folder(first)
        out = Path(args.out)
        target = out if out.suffix.lower() in (".html", ".htm") else out / "run.html"
        print(export_run_html(history, target, params=params, metrics=metrics, title=first.name))
        return 0
    from .site import export_site
    try:
        report = export_site(args.sources, args.out, parameters={k: parse_value(v) for k, v in args.parameter},
                             preset=args.preset, images=not args.no_images)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"export: {len(report['pages'])} pages in {args.out} — open {Path(args.out) / 'index.html'}")
    return 0
