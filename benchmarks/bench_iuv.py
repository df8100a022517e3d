"""Instances per second of the iuv stage's repair at the store's crop size, with 1 and 2 workers.

Reads the densepose store made by `dvc repro` (default: data/densepose.zarr) and repairs its first
`--count` instances into a temporary store.

    python benchmarks/bench_iuv.py [--densepose data/densepose.zarr] [--count 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.core.store import write_store
from pipeline.densepose.store import open_densepose
from pipeline.iuv.repair import RepairOptions
from pipeline.iuv.write import repair_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--densepose", default="data/densepose.zarr")
    ap.add_argument("--count", type=int, default=2048)
    args = ap.parse_args()
    root = open_densepose(args.densepose)
    n = min(args.count, root["box"].shape[0])
    with tempfile.TemporaryDirectory() as tmp:
        # a copy of the first n instances, so the benchmark measures n instances whatever the store's size
        names = [k for k in ("labels", "uv", "box", "score", "image", "split") if k in root]
        arrays = {k: root[k][:n] for k in names}
        attrs = {k: v for k, v in root.attrs.items() if k != "kinds"}
        attrs["kinds"] = ["chart"]
        write_store(Path(tmp) / "dp.zarr", arrays, attrs, chunk=int(root["box"].chunks[0]))
        s = int(root.attrs["crop"])
        print(f"iuv repair of {n} instances at S={s} (chart output, defaults of RepairOptions + min area 20)")
        for workers in (1, 2):
            t0 = time.perf_counter()
            repair_store(Path(tmp) / "dp.zarr", Path(tmp) / f"iuv{workers}.zarr", RepairOptions(min_component_area=20),
                         100, workers, progress=False)
            dt = time.perf_counter() - t0
            print(f"  workers={workers}: {dt:6.2f} s  {n / dt:8.0f} instances/s (process start-up included)")
        labels = arrays["labels"]
        print(f"  missing label pixels per instance: {np.mean((labels == 255).sum((1, 2))):.1f}")


if __name__ == "__main__":
    main()
