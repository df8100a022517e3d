"""Quick probe: Adam vs the paper's SGD on a synthetic keypoints store, same step budget.

    PYTHONPATH=.:tests python benchmarks/probe_optimizers.py --keypoints /tmp/kp.zarr --epochs 20

Prints wall time per step, final re-projection loss and the test-split MPJPE (mm, depth-centred,
predicted depth as is) next to the flat reference (true x, y, zero depth).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pipeline.core.config import load_params_dict
from pipeline.keypoints.store import open_keypoints
from pipeline.train.checkpoint import reconstruct
from pipeline.train.loop import train


def mpjpe(model, root) -> tuple[float, float, float]:
    """Test-split MPJPE (mm): as predicted, flat reference, per-instance better of the depth flip."""
    test = np.flatnonzero(np.asarray(root["split"][:]) == 1)
    xy, vis = np.asarray(root["xy"][:])[test], np.asarray(root["visible"][:])[test]
    gt, cam = np.asarray(root["gt/vertices"][:])[test], np.asarray(root["gt/camera"][:])[test]
    pred = reconstruct(model, xy, vis).numpy()
    f = cam[:, 0, None, None]
    pred_m = np.concatenate([(pred[..., :2] - cam[:, None, 1:]) / f, pred[..., 2:] / f], -1)
    pred_m[..., 2] -= pred_m[..., 2].mean(1, keepdims=True)
    gt_c = gt.copy()
    gt_c[..., 2] -= gt_c[..., 2].mean(1, keepdims=True)
    flat = gt_c.copy()
    flat[..., 2] = 0
    per = np.linalg.norm(pred_m - gt_c, axis=-1).mean(1)
    flipped = pred_m * np.array([1, 1, -1])
    best = np.minimum(per, np.linalg.norm(flipped - gt_c, axis=-1).mean(1))
    return float(per.mean() * 1000), float(np.linalg.norm(flat - gt_c, axis=-1).mean() * 1000), float(best.mean() * 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keypoints", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--bottleneck", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--runs", default="adam:0.001,sgd:0.003")
    ap.add_argument("--type", default="dp3d")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for run in args.runs.split(","):
        opt, lr = run.split(":")
        p = load_params_dict({"model": {"type": args.type, "hidden": args.hidden, "bottleneck": args.bottleneck,
                                        "blocks": args.blocks},
                              "train": {"optimizer": opt, "lr": float(lr), "epochs": args.epochs,
                                        "checkpoint_every": 10**6}})
        t0 = time.time()
        r = train(p, args.keypoints, "data/template.npz", "data/lbo.npz", f"/tmp/probe_{opt}.pt")
        dt = time.time() - t0
        err, flat, best = mpjpe(r.objective.model, open_keypoints(args.keypoints))
        print(f"{args.type} {opt} lr {lr}: {r.step} steps in {dt:.0f} s ({dt / r.step:.2f} s/step); "
              f"reprojection {r.metrics['reprojection']:.4f}; MPJPE {err:.0f} mm (better of depth flip {best:.0f}) vs flat {flat:.0f} mm", flush=True)


if __name__ == "__main__":
    main()
