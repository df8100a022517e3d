"""Instances per second of the keypoints stage's mapping, IUV and CSE modes, against a per-pixel
KD-tree implementation of the same IUV mapping.

Reads the stores made by `dvc repro` (data/iuv.zarr and data/template.npz).

    python benchmarks/bench_keypoints.py [--iuv data/iuv.zarr] [--count 2048]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.spatial import cKDTree

from pipeline.core.stage import resolve_device
from pipeline.iuv.store import open_iuv
from pipeline.keypoints.lookup import aggregate, iuv_lookup_table, iuv_to_vertices, nearest_embedding
from pipeline.template.file import decode_uv, load_template


def kdtree_vertices(iuv: np.ndarray, template, trees) -> np.ndarray:
    """The straightforward way: per instance and part, a KD-tree query of every pixel's (U, V)."""
    out = np.full(iuv.shape[:3], -1, np.int64)
    for k in range(len(iuv)):
        i = iuv[k, ..., 0]
        for p in np.unique(i[i > 0]):
            m = i == p
            uv = np.stack([decode_uv(iuv[k, ..., 1][m]), decode_uv(iuv[k, ..., 2][m])], 1)
            sel, tree = trees[p]
            out[k][m] = template.chart_vertex[sel][tree.query(uv)[1]]
    return out


def timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iuv", default="data/iuv.zarr")
    ap.add_argument("--template", default="data/template.npz")
    ap.add_argument("--count", type=int, default=2048)
    args = ap.parse_args()
    t = load_template(args.template)
    root = open_iuv(args.iuv)
    n = min(args.count, root["box"].shape[0])
    boxes = root["box"][:n]
    print(f"keypoints of {n} instances at S={root.attrs['crop']}, template of {len(t.vertices)} vertices")
    m = min(n, 256)
    if "iuv" in root:
        iuv_benchmarks(root, t, boxes, n, m)
    else:
        print("  IUV mode: the store holds no chart output")

    cse_benchmark(root, t, boxes, m)


def iuv_benchmarks(root, t, boxes, n, m) -> None:
    iuv = root["iuv"][:n]
    lut, dt_lut = timed(iuv_lookup_table, t.chart_part, t.chart_uv, t.chart_vertex)
    print(f"  lookup table [25,256,256]: built once in {dt_lut:.2f} s")
    chunk = int(root["box"].chunks[0])  # the stage works a Zarr chunk at a time

    def iuv_mode():
        parts = [aggregate(iuv_to_vertices(iuv[a:a + chunk], lut), boxes[a:a + chunk], len(t.vertices))
                 for a in range(0, n, chunk)]
        return type(parts[0])(*(np.concatenate(x) for x in zip(*parts)))

    (kp, dt) = timed(iuv_mode)
    print(f"  IUV mode (table gather + aggregation, {chunk} instances a chunk): {n / dt:8.0f} instances/s")

    trees = {p: (sel, cKDTree(t.chart_uv[sel])) for p in range(1, 25) for sel in [np.flatnonzero(t.chart_part == p)]}
    ref, dt_ref = timed(kdtree_vertices, iuv[:m], t, trees)
    kp_ref = aggregate(ref, boxes[:m], len(t.vertices))
    print(f"  per-pixel KD-tree reference:           {m / dt_ref:8.0f} instances/s "
          f"(table is {dt_ref / m / (dt / n):.0f}x faster; same visibility: {np.array_equal(kp_ref.visible, kp.visible[:m])})")



def cse_benchmark(root, t, boxes, m) -> None:
    if "cse" in root.attrs.get("kinds", []):
        device = resolve_device("auto")
        mask, emb = root["mask"][:m], root["embedding"][:m].astype(np.float32)

        def cse():
            vertex = np.full(mask.shape, -1, np.int64)
            vertex[mask] = nearest_embedding(np.moveaxis(emb, 1, -1)[mask], t.embedding, device=device)
            return aggregate(vertex, boxes[:m], len(t.vertices))

        _, dt_cse = timed(cse)
        print(f"  CSE mode (nearest embedding, {device}):  {m / dt_cse:8.0f} instances/s")
    else:
        print("  CSE mode: the store holds no CSE output")


if __name__ == "__main__":
    main()
