"""Rewrites each stage's code deps in dvc.yaml and sources/dvc.yaml to exactly its import closure
(tests/test_dvc_yaml.py checks it).

    python scripts/sync_dvc_deps.py          # rewrite dvc.yaml in place
    python scripts/sync_dvc_deps.py --check  # exit 1 and list the stages whose deps differ

Only the ``.py`` entries of each ``deps:`` list change (the stage script first, then the modules sorted);
data deps, comments and the rest of the file are kept as they are.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_dvc_yaml import PIPELINE_FILES, code_closure  # noqa: E402  (one definition of the closure)


def sync(text: str) -> tuple[str, list[str]]:
    """Returns dvc.yaml's text with every stage's code deps replaced, and the stages that changed."""
    out, changed, stage, i = [], [], None, 0
    lines = text.split("\n")
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  (\w+):\s*$", line)
        if m:
            stage = m.group(1)
        if stage and re.match(r"^    deps:\s*$", line):
            out.append(line)
            i += 1
            block = []
            while i < len(lines) and re.match(r"^      - ", lines[i]):
                block.append(lines[i])
                i += 1
            code = [b for b in block if b.strip().endswith(".py")]
            data = [b for b in block if not b.strip().endswith(".py")]
            script = f"stages/{stage}.py"
            modules = sorted(code_closure(script) - {script})
            new = [f"      - {script}"] + [f"      - {p}" for p in modules]
            if new != code:
                changed.append(stage)
            out.extend(new + data)
            continue
        out.append(line)
        i += 1
    return "\n".join(out), changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report stages whose deps differ")
    args = ap.parse_args()
    texts, changed = {}, []
    for name in PIPELINE_FILES:
        texts[name], found = sync((ROOT / name).read_text())
        changed += found
    if args.check:
        print("\n".join(changed) or "the pipeline files' deps match the import closures")
        return 1 if changed else 0
    for name, text in texts.items():
        (ROOT / name).write_text(text)
    print(f"rewrote deps of {', '.join(changed) or 'no stage'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
