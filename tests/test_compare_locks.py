"""scripts/compare_locks.py: outputs identical or not, stage by stage, and the deps that differ (code apart)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import compare_locks  # noqa: E402


def _dep(path, md5):
    return {"path": path, "md5": md5, "size": 1}


def test_moves_changes_and_differing_outputs_are_told_apart():
    old = {"a": {"deps": [_dep("pipeline/x/old.py", "1"), _dep("pipeline/x/gone.py", "2"), _dep("stages/a.py", "3"),
                          _dep("sources/a.txt", "4")], "outs": [_dep("data/a.zarr", "5")]},
           "b": {"outs": [_dep("data/b.npz", "6")]}}
    new = {"a": {"deps": [_dep("pipeline/y/new.py", "1"), _dep("pipeline/y/made.py", "7"), _dep("stages/a.py", "8"),
                          _dep("sources/a.txt", "9")], "outs": [_dep("data/a.zarr", "5")]},
           "b": {"outs": [_dep("data/b.npz", "0")]}}
    lines, same = compare_locks.compare(old, new)
    assert not same and lines == [
        "a: 1 outputs identical",
        "  code deps moved unchanged: pipeline/x/old.py -> pipeline/y/new.py",
        "  code deps removed: pipeline/x/gone.py",
        "  code deps added: pipeline/y/made.py",
        "  code deps changed: stages/a.py",
        "  other deps changed: sources/a.txt",
        "b: 1 outputs DIFFER: data/b.npz"]
    assert compare_locks.compare(old, old) == (["a: 1 outputs identical", "b: 1 outputs identical"], True)
