"""Scaling of the CPU stages on Dask: instances per second of ``iuv`` (repair) and ``keypoints`` at 1 worker
(the stage's own process) and at 2, 4, ... local Dask worker processes, medians of ``--repeats`` runs, and
where the time goes: the share of a run spent in the stage process itself (reading what it writes back,
writing the Zarr store) against the chunk work the workers do.

Reads the stores of ``dvc repro`` (data/densepose.zarr, data/iuv.zarr, data/template.npz):

    PYTHONPATH=. python benchmarks/bench_cluster.py [--workers 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.densepose.store import open_densepose
from pipeline.iuv.repair import RepairOptions
from pipeline.iuv.write import _repair_chunk, repair_store
from pipeline.keypoints.write import extract_keypoints
from pipeline.template.file import load_template


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--densepose", default="data/densepose.zarr")
    ap.add_argument("--iuv", default="data/iuv.zarr")
    ap.add_argument("--template", default="data/template.npz")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    template = load_template(args.template)
    n = open_densepose(args.densepose)["box"].shape[0]
    chunk = int(open_densepose(args.densepose)["box"].chunks[0])
    names = ["labels", "uv", "box", "gt/iuv"]
    t_chunk = _median_seconds(lambda: _repair_chunk(str(Path(args.densepose).resolve()), names, RepairOptions(), 100,
                                                    0, chunk), args.repeats)
    print(f"{n} instances, chunks of {chunk}; one iuv chunk's work alone: {t_chunk:.2f} s "
          f"({chunk / t_chunk:.0f} instances/s), so {n / chunk * t_chunk:.1f} s of chunk work a run")
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            t_iuv = _median_seconds(lambda: repair_store(args.densepose, Path(tmp) / f"i{w}.zarr", RepairOptions(), 100,
                                                         w, progress=False, kinds=["chart"]), args.repeats)
            t_kp = _median_seconds(lambda: extract_keypoints(args.iuv, Path(tmp) / f"k{w}.zarr", template, "chart", 0.1,
                                                             progress=False, workers=w), args.repeats)
            print(f"workers={w}: iuv {t_iuv:6.2f} s = {n / t_iuv:5.0f} instances/s | keypoints {t_kp:6.2f} s = "
                  f"{n / t_kp:5.0f} instances/s (medians of {args.repeats}, cluster start-up included)")


if __name__ == "__main__":
    main()
