"""Scaling of the ``densepose`` stage (synthetic source) under torchrun: instances per second at 1, 2, ...
processes (``cluster.processes``), medians of ``--repeats`` runs. Two numbers a run: the whole stage as a
user starts it (process start-up, torchrun, template and body model loading, contact sheet included) and
the rendering-and-writing loop alone (the stage's own log line, "in X s"). Checks that every run wrote the
same store as the first.

Reads params.yaml and data/template.npz (``dvc repro template``); renders ``--bodies`` bodies:

    PYTHONPATH=. python benchmarks/bench_densepose.py [--processes 1 2] [--bodies 200] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import tree_bytes  # noqa: E402  (the byte comparison the tests use)


def _run(params: dict, out: Path, template: str) -> tuple[float, float, tuple | None]:
    """Runs the stage once: wall seconds of the whole stage, seconds of its rendering-and-writing loop, and
    under torchrun rank 0's split of the loop (its own batches, gathering, writing)."""
    p = out.with_suffix(".yaml")
    p.write_text(yaml.safe_dump(params))
    cmd = [sys.executable, "-m", "stages.densepose", "--params", str(p), "--template", template, "--out", str(out),
           "--png", str(out.with_suffix(".png")), "--metrics", str(out.with_suffix(".json"))]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    loop = re.search(r"instances \(\d+ train, \d+ test\) on .*? in ([\d.]+) s", res.stderr)
    split = re.search(r"rank 0: ([\d.]+) s on its own tasks, ([\d.]+) s gathering .*?, ([\d.]+) s writing", res.stderr)
    return wall, float(loop.group(1)), tuple(float(x) for x in split.groups()) if split else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--template", default=str(ROOT / "data" / "template.npz"))
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bodies", type=int, default=200, help="train bodies (test bodies: a fifth)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="common.threads of each process (default: params)")
    args = ap.parse_args()
    params = yaml.safe_load(Path(args.params).read_text())
    params["common"]["threads"] = args.threads or params["common"]["threads"]
    params["synthetic"].update(train_bodies=args.bodies, test_bodies=max(1, args.bodies // 5))
    n = (args.bodies + max(1, args.bodies // 5)) * params["synthetic"]["views"]
    print(f"densepose, synthetic source: {n} instances, batches of {params['synthetic']['batch']} bodies, "
          f"common.threads {params['common']['threads']} per process, device {params['common']['device']}")
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for procs in args.processes:
            params["cluster"]["processes"] = procs
            walls, loops, splits = [], [], []
            for k in range(args.repeats):
                out = Path(tmp) / f"p{procs}_{k}.zarr"
                wall, loop, split = _run(params, out, args.template)
                walls.append(wall)
                loops.append(loop)
                splits.append(split)
                store = tree_bytes(out)
                first = first or store
                assert store == first, f"{procs} processes wrote another store"
            w, lp = statistics.median(walls), statistics.median(loops)
            print(f"processes={procs}: stage {w:6.1f} s = {n / w:5.0f} instances/s | rendering and writing "
                  f"{lp:6.1f} s = {n / lp:5.0f} instances/s (medians of {args.repeats}; same store: yes)")
            if splits[0] is not None:
                own, gather, write = (statistics.median(s[i] for s in splits) for i in range(3))
                print(f"    rank 0: {own:.1f} s rendering its own batches, {gather:.1f} s gathering the others' "
                      f"(waiting included), {write:.1f} s handing them to the writer (medians)")


if __name__ == "__main__":
    main()
