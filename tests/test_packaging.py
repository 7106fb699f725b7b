"""The package's metadata: a licence that tools read, type information shipped, a user environment without the
developer tools, and a lock file that pins every requirement inside pyproject's ranges."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_licence_is_mit_as_an_spdx_expression_with_its_file():
    project = pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_type_information_is_shipped():
    assert (ROOT / "ftkit" / "py.typed").is_file()
    assert "py.typed" in pyproject()["tool"]["setuptools"]["package-data"]["ftkit"]


def test_requires_python_is_what_the_code_needs():
    # BaseException.add_note (3.11) is used where fit reports a failure
    assert pyproject()["project"]["requires-python"] == ">=3.11"
    uses = [p for p in (ROOT / "ftkit").rglob("*.py") if ".add_note(" in p.read_text()]
    assert uses, "no add_note left: requires-python could go back to 3.10 (and be tested there)"


def test_environment_yml_is_a_user_environment():
    user = (ROOT / "environment.yml").read_text()
    body = "\n".join(line for line in user.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"pytest|playwright|\[dev\]|mypy", body), body
    assert re.search(r"python>=3\.11", body) and "python=3.11" not in body
    assert "-e .[notebooks]" in body
    dev = (ROOT / "environment-dev.yml").read_text()
    assert "-e .[dev]" in dev and "-c constraints.txt" in dev


def requirements(extras) -> list[Requirement]:
    project = pyproject()["project"]
    reqs, todo, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra not in seen:
            seen.add(extra)
            for r in map(Requirement, project["optional-dependencies"][extra]):
                (todo.extend(r.extras) if canonicalize_name(r.name) == "ftkit" else reqs.append(r))
    return reqs


def test_the_lock_file_pins_every_requirement_of_the_dev_install_inside_its_range():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if m:
            pins[canonicalize_name(m[1])] = m[2]
    assert len(pins) > 100          # the whole resolved set, not a few packages
    wrong = []
    for r in requirements(["dev"]):
        name = canonicalize_name(r.name)
        if r.marker is not None and not r.marker.evaluate({"sys_platform": "linux", "extra": ""}):
            continue
        if name not in pins or not r.specifier.contains(pins[name], prereleases=True):
            wrong.append(f"{r}: constraints.txt has {pins.get(name, 'nothing')}")
    assert not wrong, f"{wrong}; run bash .ci/lock"
