"""The repository's own documentation: every "METHOD.md §n" and "DESIGN.md §n" the code cites is a
section of docs/, and the README's layout map names every stage package and read side that exists."""

import re
from pathlib import Path

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
    for read_side in ("template/file.py", "densepose/store.py", "iuv/store.py", "keypoints/store.py",
                      "train/checkpoint.py", "geometry/lbo.py"):
        assert (ROOT / "pipeline" / read_side).is_file() and f"`{read_side}`" in readme
