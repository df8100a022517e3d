"""The repository's own documentation: every "METHOD.md §n" and "DESIGN.md §n" the code cites is a
section of docs/, the README's layout map names every stage package and read side that exists, the README
stays short and every link of the README and docs/ resolves."""

import re
from pathlib import Path

import pytest

from tests.test_dvc_yaml import pipeline_stages

ROOT = Path(__file__).resolve().parents[1]
CODE = sorted([*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "stages").glob("*.py"), ROOT / "params.yaml"])


def _sections(doc: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, (ROOT / "docs" / doc).read_text(), re.M))


def test_every_cited_section_exists():
    method = _sections("METHOD.md", r"^#+ §([0-9.]+)\s")
    design = _sections("DESIGN.md", r"^## ([0-9]+)\.\s")
    cited = 0
    for path in CODE:
        text = path.read_text()
        for doc, number in re.findall(r"(METHOD|DESIGN)\.md §([0-9]+(?:\.[0-9]+)?)", text):
            cited += 1
            assert number in (method if doc == "METHOD" else design), f"{path}: {doc}.md §{number} does not exist"
    assert cited >= 20


def test_the_readme_layout_map_names_every_stage_package_and_read_side():
    readme = (ROOT / "README.md").read_text()
    for stage in pipeline_stages():
        assert f"`stages/{stage}.py`" in readme
    for read_side in ("template/file.py", "densepose/store.py", "images/store.py", "network/checkpoint.py",
                      "iuv/store.py", "keypoints/store.py", "train/checkpoint.py", "geometry/lbo.py"):
        assert (ROOT / "pipeline" / read_side).is_file() and f"`{read_side}`" in readme


# --- the README is the front door; the rest of the documentation is one link away ---------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_resolves(doc):
    """Every relative link of the README and docs/ names a file (or folder) that exists, and its #anchor a heading
    of that file; web links are left alone."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        assert path.exists(), f"{doc.name}: link {link} names no file"
        if anchor:
            assert anchor in _anchors(path), f"{doc.name}: link {link}: no heading #{anchor} in {path.name}"


@pytest.mark.parametrize("doc", sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]), ids=lambda p: p.name)
def test_no_control_characters_from_unescaped_latex(doc):
    """A backslash lost to a non-raw string turns \\rho, \\tfrac, \\approx into a carriage return, tab or bell
    (METHOD.md §5.6 had seven): a Markdown page holds none."""
    text = doc.read_bytes()
    bad = [c for c in (b"\r", b"\t", b"\x07", b"\x08", b"\x0b", b"\x0c") if c in text]
    assert not bad, f"{doc.name}: control characters {bad}"
