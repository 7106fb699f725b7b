"""docs/seed_errors.md: every audited article error has a row, every "shown in" link leads to a notebook section
that exists and names the id (GitHub's heading anchors; the section runs to the next heading of the same or a higher
level), and a row marked as shown points at a section with a code cell that runs the article's version and records
the id (``ftkit.articles.record(..., shown=[...])``); the notebooks' own tests check, on the executed notebook, that
the ids the page links to that notebook are among those recorded (:func:`linked_ids`)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "seed_errors.md"
# the audit lives beside the checkout with the articles (../shared/seed_audit.md); a worktree may sit deeper
AUDIT = next((p / "shared" / "seed_audit.md" for p in ROOT.parents if (p / "shared" / "seed_audit.md").exists()),
             ROOT.parent / "shared" / "seed_audit.md")
# notebooks another branch adds: until one lands here its links are skipped, after that they are checked in full
PENDING = {"notebooks/07_model_design.ipynb"}
COUNTS = {"S0": 12, "S1": 16, "S2": 14, "S3": 16, "S4": 13}  # ids per seed: the audit's 66 and 5 found after it
IDS = {f"{s}-{i:02d}" for s, n in COUNTS.items() for i in range(1, n + 1)}
AFTER_AUDIT = {"S0-12", "S1-15", "S1-16", "S3-16", "S4-13"}   # not in ../shared/seed_audit.md
# severities this page rates differently from the audit, each for a reason the page's row gives
RERATED = {"S0-05": ("H", "L")}    # TF 2.6/2.7 only warns about lr= and 0.001 is Adam's default: no effect there

LINK = re.compile(r"\[[^\]]*\]\(\.\./(notebooks/[^)#]+\.ipynb)#([^)]+)\)")
TITLE = re.compile(r"(\d\d) § \*([^*]+)\*")


def slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (letters, digits, '-', '_' and spaces kept),
    spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def rows() -> dict[str, list[str]]:
    out = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| (S\d-\d\d) \|", line)
        if m:
            assert m.group(1) not in out, f"{m.group(1)} has two rows"
            out[m.group(1)] = [c.strip() for c in line.strip().strip("|").split(" | ")]
    return out


def sections(path: Path) -> dict[str, tuple[str, str]]:
    """anchor -> (heading title, the section's text: its cells up to the next heading of its level or higher)."""
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]
    heads = []
    for i, text in enumerate(cells):
        for line in text.splitlines():
            m = re.match(r"^(#{1,6}) (.+)$", line)
            if m and text.lstrip().startswith("#") and line == text.lstrip().splitlines()[0]:
                heads.append((i, len(m.group(1)), m.group(2).strip()))
    out = {}
    for k, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[k + 1:] if lv <= level), len(cells))
        out[slug(title)] = (title, "\n".join(cells[i:end]))
    return out


def test_every_audited_id_has_one_row():
    found = rows()
    assert set(found) == IDS, f"missing {sorted(IDS - set(found))}, unknown {sorted(set(found) - IDS)}"
    for sid, cells in found.items():
        assert len(cells) == 7 and cells[1] in {"H", "M", "L"} and all(cells), (sid, cells)


@pytest.mark.skipif(not AUDIT.exists(), reason="the audit lives beside the checkout (../shared/seed_audit.md)")
def test_the_ids_and_severities_are_the_audits():
    audit = dict(re.findall(r"^\| (S\d-\d\d) \| ([HML]) \|", AUDIT.read_text(), flags=re.M))
    assert set(audit) == IDS - AFTER_AUDIT
    for sid, (was, now) in RERATED.items():
        assert audit[sid] == was
        audit[sid] = now
    assert {sid: cells[1] for sid, cells in rows().items() if sid in audit} == audit


def test_every_row_is_shown_in_a_notebook_section_or_says_why_not():
    for sid, cells in rows().items():
        shown = cells[-1]
        assert LINK.search(shown) or TITLE.search(shown) or re.match(r"text only\b.*: \S", shown), \
            f"{sid}: neither a link, a section title nor a reason"


@pytest.mark.parametrize("sid", sorted(IDS))
def test_links_lead_to_a_section_that_names_the_id(sid):
    shown, pending = rows()[sid][-1], []
    for path, anchor in LINK.findall(shown):
        notebook = ROOT / path
        if path in PENDING and not notebook.exists():
            pending.append(path)
            continue
        assert notebook.exists(), f"{sid}: {path} does not exist"
        found = sections(notebook)
        assert anchor in found, f"{sid}: no heading with anchor #{anchor} in {path}; anchors: {sorted(found)}"
        title, text = found[anchor]
        named = set(re.findall(r"S\d-\d\d", text))
        for a, b in re.findall(r"(S\d-\d\d) … (S\d-\d\d)", text):     # "S1-06 … S1-11" names the ids between
            named |= {f"{a[:2]}-{i:02d}" for i in range(int(a[3:]), int(b[3:]) + 1)}
        assert sid in named, f"{sid}: section {title!r} of {path} does not name it"
    for nb, title in TITLE.findall(shown):
        (notebook,) = (ROOT / "notebooks").glob(f"{nb}_*.ipynb")
        assert title in [t for t, _ in sections(notebook).values()], f"{sid}: no section {title!r} in {notebook.name}"
    if pending:
        pytest.skip(f"{pending[0]} comes with another branch; its section is checked once it is here")


def shown_rows() -> dict[str, list[tuple[str, str]]]:
    """id -> [(notebook path, anchor)] for every row marked as shown (its last column is not "text only")."""
    return {sid: LINK.findall(cells[-1]) for sid, cells in rows().items()
            if LINK.search(cells[-1]) and not cells[-1].startswith("text only")}


def linked_ids(notebook: str) -> set[str]:
    """The ids docs/seed_errors.md marks as shown in ``notebook`` (e.g. "05_sentence_classification.ipynb"): its
    test checks them against the ids the executed notebook recorded."""
    return {sid for sid, links in shown_rows().items() if any(p == f"notebooks/{notebook}" for p, _ in links)}


RECORDED = re.compile(r"\bshown=\[([^\]]*)\]", re.S)     # the ids of a record(..., shown=[...]) call


@pytest.mark.parametrize("sid", sorted(shown_rows()))
def test_a_row_marked_shown_points_at_a_cell_that_runs_the_articles_version(sid):
    """The linked section holds a code cell that runs the article's version and records the id (``record(...,
    shown=[...])``): naming the id in the text is not enough."""
    for path, anchor in shown_rows()[sid]:
        cells = json.loads((ROOT / path).read_text())["cells"]
        text = sections(ROOT / path)[anchor][1]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and "".join(c["source"]) in text]
        recorded = {i for c in code if "record(" in c for m in RECORDED.findall(c) for i in re.findall(r"S\d-\d\d", m)}
        assert sid in recorded, f"{sid}: no code cell in {path}#{anchor} records it as run (record(..., shown=[...]))"


def test_serious_errors_that_run_in_pytorch_are_shown():
    """Every H row points at a notebook section unless it is TensorFlow code (ftkit is PyTorch-only)."""
    for sid, cells in rows().items():
        if cells[1] == "H" and not (LINK.search(cells[-1]) or TITLE.search(cells[-1])):
            assert re.search(r"TensorFlow|Keras|NameError", cells[-1]), f"{sid} is serious and not shown: {cells[-1]}"


def test_formulas_page_names_only_traceable_article_errors():
    text = (ROOT / "docs" / "formulas.md").read_text()
    assert "BCE on logits**:" not in text       # no seed makes that error (the audit's ftkit-side finding 1)
    assert "seed_errors.md" in text
