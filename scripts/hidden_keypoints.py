"""How well can a keypoint that names a hidden vertex be found without ground truth? Each candidate flag's ROC AUC
and its precision and recall at a threshold, against the synthetic source's vertex visibility, on the keypoints of
``data/keypoints.zarr`` (every ``--every``-th instance) with the trained model ``models/model.pt``::

    python scripts/hidden_keypoints.py                  # -> metrics/paper/hidden_keypoints.csv

A keypoint is *hidden* when it is visible in the store (some pixel names its vertex) but its vertex is not visible
in the rendering (``gt/visible``: a mirror patch names the far limb, a silhouette pixel a vertex just behind it).
Candidate flags, each a score (higher: more likely hidden):

- ``normal_z``: z of the vertex's area-weighted mesh normal in the model's prediction (z away from the camera;
  > 0: the prediction turns the vertex away), what ``loss.self_visibility`` flags;
- ``residual``: the keypoint's re-projection residual in the prediction (image pixels), what ``loss.facing_gate``
  weighs by;
- ``low_confidence``: minus the stored confidence (``loss.confidence``'s weight);
- ``few_pixels``: minus the number of pixels naming the vertex.

Needs a synthetic source (ground truth in the store).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/hidden_keypoints.py` from anywhere
    sys.path.insert(0, str(ROOT))

from experiments.runner import atomic_write, csv_text  # noqa: E402
from pipeline.evaluate.metrics import roc_auc  # noqa: E402

COLUMNS = ("flag", "auc", "threshold", "flagged_share", "precision", "recall", "hidden_share", "instances")
THRESHOLDS = {"normal_z": 0.0}  # the flag's own threshold; the others are cut at the same flagged share


def flag_rows(scores: dict[str, np.ndarray], hidden: np.ndarray, instances: int) -> list[dict]:
    """One row per flag: AUC, and precision/recall when flagging above its threshold (:data:`THRESHOLDS`; a flag
    without one is cut at the first flag's flagged share, so that the rows compare at equal cost).

    Args:
        scores: {name: (P,) float} over the store's visible keypoints. hidden: (P,) bool.
    """
    rows, share = [], None
    for name, s in scores.items():
        thr = THRESHOLDS.get(name)
        if thr is None:
            thr = float(np.quantile(s, 1.0 - share)) if share is not None else float(np.median(s))
        flag = s > thr
        share = flag.mean() if share is None else share
        rows.append({"flag": name, "auc": round(roc_auc(s, hidden), 3), "threshold": round(thr, 4),
                     "flagged_share": round(float(flag.mean()), 3),
                     "precision": round(float(hidden[flag].mean()), 3) if flag.any() else float("nan"),
                     "recall": round(float(flag[hidden].mean()), 3), "hidden_share": round(float(hidden.mean()), 3),
                     "instances": instances})
    return rows


def hidden_positions(xy: np.ndarray, visible: np.ndarray, hidden: np.ndarray, true_xy: np.ndarray,
                     mirror: np.ndarray) -> dict[str, float]:
    """Where the hidden keypoints lie: the median distance (pixels) from each keypoint to its own vertex's true
    projection, for the hidden and the truly visible ones, and the share of hidden ones nearer their vertex's
    left/right mirror's projection (a mirror patch) than their own (a silhouette or seam names a vertex just behind
    what it shows).

    Args:
        xy, true_xy: (n, N, 2) float keypoints and true projections. visible, hidden: (n, N) bool.
        mirror: (N,) int each vertex's mirror.
    """
    own = np.linalg.norm(xy - true_xy, axis=-1)
    to_mirror = np.linalg.norm(xy - true_xy[:, mirror], axis=-1)
    shown = visible & ~hidden
    return {"hidden_median_px": float(np.median(own[hidden])), "visible_median_px": float(np.median(own[shown])),
            "hidden_nearer_mirror": float((to_mirror < own)[hidden].mean())}


def main(argv: list[str] | None = None) -> int:
    import torch
    import zarr

    from pipeline.template.file import load_template
    from pipeline.train.checkpoint import load_checkpoint, reconstruct
    from pipeline.train.losses import mirror_map
    from pipeline.train.model import vertex_normals

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--keypoints", type=Path, default=ROOT / "data" / "keypoints.zarr")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "model.pt")
    ap.add_argument("--template", type=Path, default=ROOT / "data" / "template.npz")
    ap.add_argument("--every", type=int, default=3, help="use every k-th instance (1: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "metrics" / "paper" / "hidden_keypoints.csv")
    args = ap.parse_args(argv)
    z = zarr.open(str(args.keypoints), mode="r")
    if "gt/visible" not in z:
        raise SystemExit(f"{args.keypoints}: no gt/visible: the measure needs a synthetic source's ground truth")
    rows = np.arange(0, z["xy"].shape[0], args.every)
    xy, visible = z["xy"][:][rows], z["visible"][:][rows].astype(bool)
    hidden = visible & ~z["gt/visible"][:][rows].astype(bool)
    model, _ = load_checkpoint(args.model)
    points = reconstruct(model, xy, visible)  # (n, N, 3) image pixels
    template = load_template(args.template)
    faces = torch.as_tensor(np.asarray(template.faces), dtype=torch.long)
    scores = {"normal_z": vertex_normals(points, faces).numpy()[..., 2],
              "residual": np.linalg.norm(points.numpy()[..., :2] - xy, axis=-1),
              "low_confidence": -z["confidence"][:][rows].astype(np.float64),
              "few_pixels": -z["count"][:][rows].astype(np.float64)}
    out = flag_rows({k: v[visible] for k, v in scores.items()}, hidden[visible], len(rows))
    atomic_write(args.out, csv_text(out, COLUMNS))
    for r in out:
        print(f"{r['flag']:>15}: AUC {r['auc']:.3f}; flagging {r['flagged_share']:.0%} (> {r['threshold']:g}): "
              f"precision {r['precision']:.2f}, recall {r['recall']:.2f} (hidden {r['hidden_share']:.0%})")
    where = hidden_positions(xy, visible, hidden, z["gt/pixels"][:][rows], mirror_map(np.asarray(template.vertices)))
    print(f"hidden keypoints lie a median {where['hidden_median_px']:.1f} px from their vertex's true projection "
          f"(truly visible ones {where['visible_median_px']:.1f}); {where['hidden_nearer_mirror']:.0%} lie nearer "
          "their mirror vertex's (a mirror patch), the rest name a vertex just behind what the pixel shows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
