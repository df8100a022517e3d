"""Benchmark of the synthetic DensePose source: instances rendered per second, CPU and CUDA.

    PYTHONPATH=. python benchmarks/bench_synthetic.py [--bodies 64] [--views 6] [--crop 112]

Times, per Warp device, the phases of one batch (posing Anny, building BVHs, ray casting the
crops, per-vertex visibility, surface maps) and the end-to-end rate of posing + rendering +
corruption (``render_bodies``). The stage adds Zarr compression and writing; its log reports the
whole-stage rate. Prints numbers; not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from pipeline.core.config import load_params_dict
from pipeline.geometry.cameras import crop_boxes, project, sample_cameras
from pipeline.render.bodies import body_model, make_bodies, render_bodies
from pipeline.render.rays import BodyMeshes, cast_crops, surface_maps, vertex_visibility, warp_device
from pipeline.template.build import anny_template


def _best(fn, repeat=3):
    """Best wall time of ``repeat`` calls after one warm-up call (kernel loading), and the last result."""
    out = fn()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bodies", type=int, default=64)
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--crop", type=int, default=112)
    args = ap.parse_args()

    template = anny_template("notoes_collapse10pc", cse_dim=16)
    p = dataclasses.replace(load_params_dict({}).synthetic, views=args.views)
    model = body_model(template)
    n = args.bodies * args.views
    body = np.repeat(np.arange(args.bodies), args.views)
    print(f"{args.bodies} bodies x {args.views} views = {n} instances, crop {args.crop}, "
          f"{len(template.vertices)} vertices; CPU threads available: {len(os.sched_getaffinity(0))}")
    t_pose, bodies = _best(lambda: make_bodies(model, np.arange(args.bodies), p, seed=0))
    print(f"  pose Anny (torch, CPU)       {1e3 * t_pose:8.1f} ms  ({args.bodies / t_pose:7.0f} bodies/s)")
    v = bodies.vertices
    cams = sample_cameras([np.random.default_rng([0, i]) for i in range(n)], (0.5 * (v.min(1) + v.max(1)))[body],
                          elevation=(p.elevation_min, p.elevation_max), roll=(p.roll_min, p.roll_max),
                          distance=(p.distance_min, p.distance_max), fov=p.fov, image_size=p.image_size,
                          projection=p.projection, up=template.up, forward=template.forward)
    boxes = crop_boxes(project(cams.to_camera(v[body]), cams.focal, cams.principal, cams.projection), p.margin)
    devices = ["cpu"] + (["cuda:0"] if warp_device("auto") != "cpu" else [])
    for dev in devices:
        t_mesh, meshes = _best(lambda: BodyMeshes(v, template.faces, dev))
        t_cast, hits = _best(lambda: cast_crops(meshes, body, cams, boxes, args.crop))
        t_vis, _ = _best(lambda: vertex_visibility(meshes, body, cams, p.visibility_tol))
        t_maps, _ = _best(lambda: surface_maps(hits, template.faces, template.face_part, template.chart_uv,
                                               template.chart_faces, template.embedding, device=dev))
        t_all, _ = _best(lambda: render_bodies(make_bodies(model, np.arange(args.bodies), p, 0), template, p,
                                               args.crop, 0, dev), repeat=2)
        print(f"[{dev}]")
        print(f"  build BVHs                   {1e3 * t_mesh:8.1f} ms")
        print(f"  cast {args.crop}x{args.crop} crops          {1e3 * t_cast:8.1f} ms  ({n / t_cast:7.0f} instances/s)")
        print(f"  vertex visibility            {1e3 * t_vis:8.1f} ms  ({n / t_vis:7.0f} instances/s)")
        print(f"  surface maps (I, U, V, CSE)  {1e3 * t_maps:8.1f} ms  ({n / t_maps:7.0f} instances/s)")
        print(f"  end to end (pose..corrupt)   {1e3 * t_all:8.1f} ms  ({n / t_all:7.0f} instances/s)")


if __name__ == "__main__":
    main()
