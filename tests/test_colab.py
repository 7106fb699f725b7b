"""Every notebook's Colab cell installs only what Colab lacks, from the one repository URL in pyproject.toml, and its
first markdown cell carries the matching *Open in Colab* badge and the link to what the articles get wrong.

After changing ``[project.urls] Repository`` in pyproject.toml, ``python tests/test_colab.py --write`` rewrites the
install lines, badges and links of every notebook to match.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# what Colab already has and pins: upgrading any of them asks for a restart ("the runtime may crash")
COLAB_PINNED = {"jupyterlab", "notebook", "jupyter", "jupyter-server", "ipykernel", "ipython", "papermill", "torch",
                "torchvision", "ipywidgets", "tornado", "jupyter-client"}
INSTALL = re.compile(r'%pip install -q "ftkit\[(?P<extras>[^\]]*)\] @ git\+(?P<url>[^"]+)"')
BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                   r"\(https://colab\.research\.google\.com/github/(?P<repo>[^/]+/[^/]+)/blob/main/notebooks/"
                   r"(?P<name>[^)]+)\)")
SEED_ERRORS = re.compile(r"\]\((?P<url>https://github\.com/[^)]+)/blob/main/docs/seed_errors\.md\)")


def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def repository() -> str:
    return project()["urls"]["Repository"].rstrip("/")


def requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_the_colab_extra_adds_nothing_colab_pins():
    extras = project()["optional-dependencies"]
    colab = {requirement_name(r) for r in extras["colab"]}
    assert not colab & COLAB_PINNED, colab & COLAB_PINNED
    assert "jupyter-ui-poll" in colab          # ipykernel 6 (Colab) needs it for the live dashboard
    base = {requirement_name(r) for r in project()["dependencies"]}
    assert not base & {"jupyterlab", "notebook", "ipykernel", "papermill"}, "the base install must not pull Jupyter"
    assert "ftkit[colab]" in extras["notebooks"]    # the full notebook set is the Colab set plus Jupyter itself


def test_the_repository_url_is_written_once_and_looks_like_a_repository():
    url = repository()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_installs_the_colab_extra_from_that_url_and_has_the_badge(path):
    first, intro = cells(path)[:2]
    source = "".join(first["source"])
    assert first["cell_type"] == "code" and 'if "google.colab" in sys.modules:' in source
    installs = INSTALL.findall(source)
    assert len(installs) == 1 and source.count("%pip") == 1, "one install line, and only in Colab"
    extras, url = installs[0]
    assert {e.strip() for e in extras.split(",")} == {"colab"}, extras
    assert url == repository(), (url, repository())
    assert "enable_custom_widget_manager()" in source

    text = "".join(intro["source"])
    assert intro["cell_type"] == "markdown"
    badge = BADGE.match(text)
    assert badge, "the first markdown cell starts with the Open in Colab badge"
    assert f"https://github.com/{badge['repo']}" == repository() and badge["name"] == path.name
    links = SEED_ERRORS.findall(text)
    assert links == [repository()], "the introduction links docs/seed_errors.md (what the articles get wrong)"


def test_the_readme_badges_use_the_same_url():
    readme = (ROOT / "README.md").read_text()
    repos = set(re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/main/notebooks/", readme))
    assert repos <= {repository().split("github.com/", 1)[1]}, repos


def rewrite(url: str) -> list[str]:
    """Point every notebook's install line, badge and seed-errors link at ``url``; return the files changed."""
    owner_repo = url.split("github.com/", 1)[1]
    changed = []
    for path in [*NOTEBOOKS, ROOT / "README.md"]:
        text = path.read_text()
        new = re.sub(r'(%pip install -q \\"ftkit\[colab\] @ git\+)[^"\\]+', rf"\g<1>{url}", text)
        new = re.sub(r"(colab\.research\.google\.com/github/)[^/]+/[^/]+(/blob/main/notebooks/)",
                     rf"\g<1>{owner_repo}\g<2>", new)
        new = re.sub(r"https://github\.com/[^/)\s]+/[^/)\s]+(/blob/main/docs/seed_errors\.md)", rf"{url}\g<1>", new)
        if new != text:
            path.write_text(new)
            changed.append(path.name)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_colab.py --write   (rewrites the notebooks' Colab links from pyproject)")
    print("rewrote:", ", ".join(rewrite(repository())) or "nothing (already up to date)")
