"""Compares the workspace's dvc.lock files with a git revision's, stage by stage: whether every output is identical
(md5, size, nfiles), and which deps differ, code (pipeline/, stages/) apart from the rest.

    python scripts/compare_locks.py --base b2691b0                 # dvc.lock and sources/dvc.lock
    python scripts/compare_locks.py --base HEAD~3 dvc.lock

Exits 1 when an output differs (or a stage is missing on one side), 0 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CODE = ("pipeline/", "stages/")


def _entries(items: list[dict]) -> dict[str, tuple]:
    return {e["path"]: (e.get("md5"), e.get("size"), e.get("nfiles")) for e in items or []}


def compare(old: dict, new: dict) -> tuple[list[str], bool]:
    """The report's lines for two parsed lock files, and whether every output is identical."""
    lines, same = [], True
    for stage in sorted(set(old) | set(new)):
        if stage not in old or stage not in new:
            lines.append(f"{stage}: only in the {'new' if stage in new else 'old'} lock")
            same = False
            continue
        o_outs, n_outs = _entries(old[stage].get("outs")), _entries(new[stage].get("outs"))
        differ = sorted(p for p in set(o_outs) | set(n_outs) if o_outs.get(p) != n_outs.get(p))
        same &= not differ
        lines.append(f"{stage}: {len(n_outs)} outputs " + (f"DIFFER: {', '.join(differ)}" if differ else "identical"))
        o_deps, n_deps = _entries(old[stage].get("deps")), _entries(new[stage].get("deps"))
        for kind, pick in (("code", lambda p: p.startswith(CODE)), ("other", lambda p: not p.startswith(CODE))):
            o = {p: v for p, v in o_deps.items() if pick(p)}
            n = {p: v for p, v in n_deps.items() if pick(p)}
            gone, came = set(o) - set(n), set(n) - set(o)
            moved = sorted((a, b) for a in gone for b in came if o[a] == n[b])  # the same bytes, another path
            gone, came = gone - {a for a, _ in moved}, came - {b for _, b in moved}
            for what, paths in (("moved unchanged", [f"{a} -> {b}" for a, b in moved]), ("removed", gone),
                                ("added", came), ("changed", {p for p in set(o) & set(n) if o[p] != n[p]})):
                if paths:
                    lines.append(f"  {kind} deps {what}: {', '.join(sorted(paths))}")
        if old[stage].get("params") != new[stage].get("params"):
            lines.append("  params changed")
    return lines, same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git revision whose lock files are the reference")
    ap.add_argument("locks", nargs="*", default=["dvc.lock", "sources/dvc.lock"])
    args = ap.parse_args()
    same = True
    for lock in args.locks:
        old = yaml.safe_load(subprocess.run(["git", "show", f"{args.base}:{lock}"], cwd=ROOT, check=True,
                                            capture_output=True, text=True).stdout)["stages"]
        new = yaml.safe_load((ROOT / lock).read_text())["stages"]
        lines, ok = compare(old, new)
        same &= ok
        print(f"== {lock} against {args.base}\n" + "\n".join(lines))
    print("every output identical" if same else "OUTPUTS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
