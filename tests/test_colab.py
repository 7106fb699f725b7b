"""Every notebook's Colab cell installs only what Colab lacks, from the one repository URL in pyproject.toml, and its
first markdown cell carries the matching *Open in Colab* badge and the link to what the articles get wrong.

After changing ``[project.urls] Repository`` in pyproject.toml, ``python tests/test_colab.py --write`` rewrites the
install lines, badges and links of every notebook to match.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# Colab's preinstalled packages (googlecolab/backend-info, Python 3.13): shared/colab/ beside the clone, or the copy
# committed here (refresh: cp ../shared/colab/pip-freeze*.txt tests/assets/colab/)
COLAB_LISTS = {runtime: next((p for p in (ROOT.parent / "shared" / "colab" / name, ROOT / "tests" / "assets" / "colab"
                                          / name) if p.is_file()))
               for runtime, name in (("cpu", "pip-freeze.txt"), ("gpu", "pip-freeze.gpu.txt"))}
# the Colab cell's installs: ftkit[colab] everywhere, ftkit[colab,qlora] on a GPU runtime (notebook 08's QLoRA),
# ftkit[colab,sweep] in notebook 09 (its sweeps: Optuna, Ray, papermill)
CELL_EXTRAS = {"cpu": ["colab"], "gpu": ["colab", "qlora"], "cpu, 09": ["colab", "sweep"]}
SWEEP_NOTEBOOK = "09_"
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


def colab_versions(runtime: str) -> dict[str, str]:
    """Colab's ``{canonical name: version}``; ``name @ URL`` lines read their version from the wheel's file name."""
    versions = {}
    for line in COLAB_LISTS[runtime].read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if " @ " in line:
            name, url = line.split(" @ ", 1)
            stem = re.sub(r"[-_.]+", "_", name)
            m = re.search(rf"/{re.escape(stem)}-(\d[^-/]*?)(?:-|\.tar\.gz|\.zip)", url.replace("%2B", "+"), re.I)
            if not m:
                continue        # a git checkout (Colab's kernel gateway): no version to compare
            version = m[1]
        else:
            name, version = line.split("==")
        versions[canonicalize_name(name)] = version
    return versions


COLAB_ENV = {"python_version": "3.13", "python_full_version": "3.13.15", "sys_platform": "linux",
             "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
             "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def ftkit_requirements(extras: list[str]) -> list[Requirement]:
    """ftkit's base requirements plus those of ``extras``, ``ftkit[...]`` self-references expanded."""
    optional, out, todo, seen = project()["optional-dependencies"], [], list(extras), set()
    reqs = [Requirement(r) for r in project()["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, optional[extra]):
            if canonicalize_name(r.name) == "ftkit":
                todo.extend(r.extras)
            else:
                reqs.append(r)
    for r in reqs:
        if r.marker is None or r.marker.evaluate(COLAB_ENV):
            out.append(r)
    return out


@pytest.mark.parametrize("runtime", ["cpu", "gpu"])
def test_every_requirement_is_met_by_colabs_versions(runtime):
    """Static: each requirement of ftkit[colab] (ftkit[colab,qlora] on the GPU), and recursively of the packages it
    adds that Colab lacks (read from their installed metadata here), accepts the version Colab has — so pip keeps it."""
    colab = colab_versions(runtime)
    assert {"plotly": "5.24.1", "ipywidgets": "7.7.1", "transformers": "5.15.0"}.items() <= colab.items()
    assert colab["torch"].startswith("2.11.0")
    refused, added, todo = [], set(), list(ftkit_requirements(CELL_EXTRAS[runtime]))
    while todo:
        r = todo.pop()
        name = canonicalize_name(r.name)
        if name in colab:
            if not r.specifier.contains(colab[name], prereleases=True):
                refused.append(f"{r} (Colab has {colab[name]})")
        elif name not in added:
            added.add(name)
            try:
                deps = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                continue           # not installed here: the resolver test below reads its metadata from the index
            env = dict(COLAB_ENV, extra="")
            todo.extend(d for d in map(Requirement, deps) if d.marker is None or d.marker.evaluate(env))
    assert not refused, f"installing ftkit on Colab's {runtime} runtime would change: {refused}"
    assert added == ({"jupyter-ui-poll"} | ({"bitsandbytes"} if runtime == "gpu" else set())), added


def colab_like_env(runtime: str, where: Path) -> Path:
    """A Python 3.13 venv that *holds Colab's versions* as far as an installer sees: one metadata-only
    ``.dist-info`` per package of Colab's list (no code, no requirements of their own: Colab's own consistency is
    not ours to check). A resolver's dry run into it shows exactly what pip would add or change on Colab."""
    py = _python313()
    env = where / f"colab-{runtime}"
    subprocess.run([_uv(), "venv", "-q", "--no-python-downloads", "-p", py, str(env)], check=True)
    site = next(env.glob("lib/python3.*/site-packages"))
    for name, version in colab_versions(runtime).items():
        info = site / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("colab-list\n")
        (info / "RECORD").write_text("")
    return env


def _uv() -> str:
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("the resolver dry run needs uv (pip install uv; .ci/run installs it)")
    return uv


def _python313() -> str:
    pyenv = Path(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))) / "versions"
    for c in [os.environ.get("FTKIT_COLAB_PYTHON", ""), *sorted(map(str, pyenv.glob("3.13*/bin/python3.13"))),
              shutil.which("python3.13") or ""]:
        if c and os.access(c, os.X_OK) and "shims" not in c:
            return c
    pytest.skip("the resolver dry run needs a Python 3.13 like Colab's (pyenv install 3.13, or FTKIT_COLAB_PYTHON)")


def dry_run(env: Path, *requirements: str) -> list[str]:
    """``uv pip install --dry-run`` into ``env``: the lines naming what would be installed (+) or removed (-)."""
    indexes = {}
    for key, option in (("UV_EXTRA_INDEX_URL", "global.extra-index-url"), ("UV_FIND_LINKS", "global.find-links")):
        value = subprocess.run([sys.executable, "-m", "pip", "config", "get", option], capture_output=True,
                               text=True).stdout.strip()
        if value and key not in os.environ:
            indexes[key] = value
    run = subprocess.run([_uv(), "pip", "install", "--dry-run", "--no-python-downloads", "--index-strategy",
                          "unsafe-best-match", "-p", str(env / "bin" / "python"), *requirements],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, **indexes}, timeout=600)
    if run.returncode != 0:
        if "No solution found" in run.stderr:
            pytest.fail(f"ftkit cannot be installed beside Colab's packages:\n{run.stderr}")
        pytest.skip(f"the package index could not be reached for the dry run: {run.stderr.strip()[-300:]}")
    return [line.strip() for line in run.stderr.splitlines() if line.strip()[:2] in ("+ ", "- ", "~ ")]


@pytest.fixture(scope="module")
def colab_envs(tmp_path_factory):
    where = tmp_path_factory.mktemp("colab")
    return {runtime: colab_like_env(runtime, where) for runtime in ("cpu", "gpu")}


@pytest.mark.parametrize("cell", ["cpu", "gpu", "cpu, 09"])
def test_the_colab_install_changes_no_package_colab_has(colab_envs, cell):
    """The real resolver (uv, as pip would: installed versions that fit stay) into an env with Colab's versions."""
    runtime = cell.split(",")[0]
    changes = dry_run(colab_envs[runtime], f".[{','.join(CELL_EXTRAS[cell])}]")
    colab = colab_versions(runtime)
    touched = [c for c in changes if canonicalize_name(re.split(r"[=@ ]", c[2:].strip())[0]) in colab]
    assert not touched, f"the Colab cell would change Colab's packages: {touched}"
    added = {canonicalize_name(re.split(r"[=@ ]", c[2:].strip())[0]) for c in changes if c.startswith("+ ")}
    if cell == "cpu, 09":       # the sweep extra's packages and whatever they need that Colab lacks
        assert {"ftkit", "jupyter-ui-poll", "optuna", "ray", "papermill"} <= added, changes
    else:
        assert added == {"ftkit", "jupyter-ui-poll"} | ({"bitsandbytes"} if runtime == "gpu" else set()), changes


def test_the_dry_run_sees_an_upgrade_when_a_floor_is_above_colab(colab_envs):
    """The check can fail: main's old floor ipywidgets>=8.1 would upgrade Colab's 7.7.1 (and its extension)."""
    changes = dry_run(colab_envs["cpu"], "ipywidgets>=8.1")
    assert "- ipywidgets==7.7.1" in changes and any(c.startswith("+ ipywidgets==8.") for c in changes), changes


def _closure(reqs: list[Requirement]) -> set[str]:
    """The distributions ``reqs`` install, recursively, as far as this environment's metadata tells."""
    seen, todo = set(), list(reqs)
    while todo:
        r = todo.pop()
        name = canonicalize_name(r.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            deps = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for d in map(Requirement, deps):
            if d.marker is None or d.marker.evaluate({"extra": next(iter(r.extras), "")}):
                todo.append(d)
    return seen


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_package_a_notebook_imports_comes_with_the_colab_install(path):
    """A notebook imports only the standard library, ftkit and what ``ftkit[colab]`` installs (the Colab cell)."""
    import ast
    installed = _closure(ftkit_requirements(["colab"]))
    providers = importlib.metadata.packages_distributions()
    missing = set()
    for c in cells(path)[1:]:
        if c["cell_type"] != "code":
            continue
        source = "\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("ftkit", "google"):
                    continue
                dists = {canonicalize_name(d) for d in providers.get(top, [top])}
                if not dists & installed:
                    missing.add(f"{top} ({', '.join(sorted(dists))})")
    assert not missing, f"{path.name} imports {sorted(missing)}, which ftkit[colab] does not install"


def test_the_colab_extra_adds_nothing_colab_pins():
    extras = project()["optional-dependencies"]
    colab = {requirement_name(r) for r in extras["colab"]}
    assert not colab & COLAB_PINNED, colab & COLAB_PINNED
    assert "jupyter-ui-poll" in colab          # ipykernel 6 (Colab) needs it for the live dashboard
    base = {requirement_name(r) for r in project()["dependencies"]}
    assert not base & {"jupyterlab", "notebook", "ipykernel", "papermill"}, "the base install must not pull Jupyter"
    own = [Requirement(r) for r in extras["notebooks"] if requirement_name(r) == "ftkit"]
    assert own and "colab" in own[0].extras         # the full notebook set is the Colab set plus Jupyter itself


def test_the_repository_url_is_written_once_and_looks_like_a_repository():
    url = repository()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url


def gpu_minutes(path: Path) -> tuple[str, str]:
    """The notebook's own expected minutes per preset (its ``minutes={...}`` in the setup call), as text."""
    source = "".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "code")
    found = re.search(r"minutes=(\{[^}]*\})", source)
    minutes = eval(found[1], {}) if found else {}  # a literal dict in our own notebook

    def text(preset):
        value = minutes.get(preset)
        if value is None:
            return "not estimated"
        value = f"about {value} min" if isinstance(value, (int, float)) else str(value)
        return value if "estimate" in value or "measured" in value else value + " (estimate)"
    return text("cpu"), text("gpu")


def colab_cell(path: Path, url: str) -> str:
    """What every notebook's first cell must be: install only what Colab lacks (bitsandbytes only on a GPU runtime
    and only where the GPU preset needs it), say how to get a GPU and what each preset takes."""
    cpu, gpu = gpu_minutes(path)
    qlora, sweep = path.name.startswith("08_"), path.name.startswith(SWEEP_NOTEBOOK)
    head = ("# Colab only: install what Colab lacks (ftkit and jupyter-ui-poll; Colab's own torch, transformers, plotly,\n"
            "# ipywidgets and Jupyter keep their versions) and turn on third-party widgets. Does nothing anywhere else.\n"
            + ("# The sweep extra adds what the sweeps run on: Optuna, Ray and papermill.\n" if sweep else "")
            + "# preset \"auto\" runs the full experiment on a GPU: Runtime > Change runtime type > T4 GPU > Save, then\n"
            "# Runtime > Run all. CPU runtime (preset \"cpu\"): " + cpu + ";\n"
            "# GPU runtime (preset \"gpu\"): " + gpu + ".\n")
    install = f'%pip install -q "ftkit[{{extras}}] @ git+{url}"'
    if qlora:
        body = ("import shutil, sys\n"
                "if \"google.colab\" in sys.modules:\n"
                "    if shutil.which(\"nvidia-smi\"):  # a GPU runtime: the gpu preset's QLoRA needs bitsandbytes (CUDA only)\n"
                f"        {install.format(extras='colab,qlora')}\n"
                "    else:\n"
                f"        {install.format(extras='colab')}\n")
    else:
        body = ("import sys\n"
                "if \"google.colab\" in sys.modules:\n"
                f"    {install.format(extras='colab,sweep' if sweep else 'colab')}\n")
    return head + body + "    from google.colab import output\n    output.enable_custom_widget_manager()"


RELATIVE_LINK = re.compile(r"(\]\()(?!https?://|#|mailto:)([^)\s]+)(\))")


def absolute(link: str) -> str:
    """A link relative to notebooks/ as the repository's GitHub address (works in Colab, GitHub and Jupyter)."""
    return f"{repository()}/blob/main/{os.path.normpath(os.path.join('notebooks', link))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_installs_the_colab_extra_from_that_url_and_has_the_badge(path):
    first, intro = cells(path)[:2]
    source = "".join(first["source"])
    assert first["cell_type"] == "code" and 'if "google.colab" in sys.modules:' in source
    assert source == colab_cell(path, repository()), "cell 0 is out of date: python tests/test_colab.py --write"
    installs = INSTALL.findall(source)
    assert {url for _, url in installs} == {repository()}
    allowed = ({"colab", "qlora"} if path.name.startswith("08_") else
               {"colab", "sweep"} if path.name.startswith(SWEEP_NOTEBOOK) else {"colab"})
    assert set().union(*({e.strip() for e in extras.split(",")} for extras, _ in installs)) == allowed
    assert "Change runtime type" in source and source.count("(estimate") + source.count("not run") >= 1
    assert "import torch" not in source    # no CUDA call before accelerate's notebook_launcher (accelerate #940)

    text = "".join(intro["source"])
    assert intro["cell_type"] == "markdown"
    badge = BADGE.match(text)
    assert badge, "the first markdown cell starts with the Open in Colab badge"
    assert f"https://github.com/{badge['repo']}" == repository() and badge["name"] == path.name
    links = SEED_ERRORS.findall(text)
    assert links == [repository()], "the introduction links docs/seed_errors.md (what the articles get wrong)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_link_in_a_notebook_is_absolute(path):
    """Relative links (``../docs/x.md``) break in Colab, which opens the notebook alone."""
    relative = [m[2] for c in cells(path) if c["cell_type"] == "markdown" for m in RELATIVE_LINK.finditer(
        "".join(c["source"]))]
    assert not relative, f"{relative}: python tests/test_colab.py --write makes them absolute"
    for c in cells(path):
        for url in re.findall(r"\]\((https://github\.com/[^)\s]+)\)", "".join(c["source"])):
            if "/blob/main/" in url:
                target = url.split("/blob/main/", 1)[1].split("#")[0]
                assert url.startswith(repository()) and (ROOT / target).exists(), url


def test_the_readme_badges_use_the_same_url():
    readme = (ROOT / "README.md").read_text()
    repos = set(re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/main/notebooks/", readme))
    assert repos <= {repository().split("github.com/", 1)[1]}, repos


def rewrite(url: str) -> list[str]:
    """Point every notebook's Colab cell, badge and links at ``url`` (relative links made absolute); return the
    files changed."""
    owner_repo = url.split("github.com/", 1)[1]
    changed = []
    for path in [*NOTEBOOKS, ROOT / "README.md"]:
        text = path.read_text()
        new = re.sub(r"(colab\.research\.google\.com/github/)[^/]+/[^/]+(/blob/main/notebooks/)",
                     rf"\g<1>{owner_repo}\g<2>", text)
        new = re.sub(r"https://github\.com/[^/)\s]+/[^/)\s]+(/blob/main/docs/seed_errors\.md)", rf"{url}\g<1>", new)
        if path.suffix == ".ipynb":
            nb = json.loads(new)
            if "".join(nb["cells"][0]["source"]) != colab_cell(path, url):
                nb["cells"][0]["source"] = colab_cell(path, url).splitlines(keepends=True)
            for c in nb["cells"]:
                if c["cell_type"] == "markdown":
                    src = "".join(c["source"])
                    fixed = RELATIVE_LINK.sub(lambda m: m[1] + absolute(m[2]) + m[3], src)
                    if fixed != src:
                        c["source"] = fixed if isinstance(c["source"], str) else fixed.splitlines(keepends=True)
            new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new)
            changed.append(path.name)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_colab.py --write   (rewrites the notebooks' Colab links from pyproject)")
    print("rewrote:", ", ".join(rewrite(repository())) or "nothing (already up to date)")
