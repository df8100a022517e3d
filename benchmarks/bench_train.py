"""Forward and forward+backward time of DP3D for a batch of 512 on a 6890-vertex mesh (SMPL's size).

    PYTHONPATH=. python benchmarks/bench_train.py [--batch 512] [--repeats 3] [--hidden 1024 ...]

The mesh is a watertight UV sphere of exactly 6890 vertices, stretched to body height; the LBO
basis is random (timing does not depend on its values). "forward" is the model alone (what the
paper timed at 0.5 s on a 16 GB GPU); "forward+backward" is one full training step's objective
(re-projection, Ψ's canonicalisation, ARAP on ``loss.arap_instances`` instances, entropy) and its
backward pass. Runs on CPU, and on CUDA when present.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import trimesh

from pipeline.core.config import LossParams, ModelParams
from pipeline.geometry.lbo import unit_rms
from pipeline.train.losses import TrainingObjective, arap_weights
from pipeline.train.part_init import build_model


def mesh_6890() -> tuple[np.ndarray, np.ndarray]:
    m = trimesh.creation.uv_sphere(radius=0.3, count=[43, 81])  # exactly 6890 vertices
    v = np.asarray(m.vertices) * np.array([1.0, 0.6, 2.8])
    assert len(v) == 6890, len(v)
    return v.astype(np.float32), np.asarray(m.faces, np.int64)


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--bottleneck", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--arap-instances", type=int, default=LossParams().arap_instances)
    ap.add_argument("--rotations", default="horn", choices=("horn", "svd"))
    args = ap.parse_args()
    v, f = mesh_6890()
    torch.manual_seed(0)
    basis = unit_rms(np.linalg.qr(np.random.default_rng(0).normal(size=(len(v), 64)))[0])
    cfg = ModelParams(hidden=args.hidden, bottleneck=args.bottleneck, blocks=args.blocks)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"DP3D, {len(v)} vertices, batch {args.batch}, trunk {args.hidden}/{args.bottleneck}x{args.blocks}, "
          f"ARAP on {args.arap_instances or args.batch} instances ({args.rotations}), torch threads "
          f"{torch.get_num_threads()}")
    for device in devices:
        model = build_model(cfg, v, np.array([0, 0, 1.0]), np.array([0, -1.0, 0]), basis)
        loss_cfg = LossParams(arap_instances=args.arap_instances, arap_rotations=args.rotations)
        obj = TrainingObjective(model, loss_cfg, arap_weights(model.template.numpy(), f), f).to(device)
        xy = torch.randn(args.batch, len(v), 2, device=device)
        vis = torch.rand(args.batch, len(v), device=device) < 0.5
        obj.eval()
        with torch.no_grad():
            fwd = timed(lambda: model(xy, vis), args.repeats, device)
        obj.train()

        def step():
            loss, _ = obj(xy, vis)
            loss.backward()

        both = timed(step, args.repeats, device)
        print(f"{device}: forward {fwd * 1000:.1f} ms; forward+backward (full objective) {both * 1000:.1f} ms",
              flush=True)


if __name__ == "__main__":
    main()
