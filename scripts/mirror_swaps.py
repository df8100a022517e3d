"""Left/right swaps of whole instances: how often a correspondence source names, for most of an instance's
limbs, the mirror vertex (the left leg read as the right one), and what such instances cost the lifting. For each
keypoints store (a synthetic source: ground truth in the store) and the model trained on it::

    python scripts/mirror_swaps.py --run corrupted data/keypoints.zarr models/model.pt \\
                                   --run network /tmp/netsrc/data/keypoints.zarr /tmp/netsrc/models/model.pt

writes ``metrics/paper/mirror_swaps.csv``: per run and per bin of the *mirror share*, the share of the test
instances in the bin and their MPJPE (the evaluate stage's: mean distance over all vertices of the
depth-centred shapes, camera-frame mm).

The mirror share of an instance: among its visible keypoints whose vertex's left/right mirror projects more than
``--far`` crop pixels away (so that the two can be told apart in the image), the share lying nearer the mirror
vertex's true projection than their own vertex's. The hand-made corruption's mirror patches leave it near 0.1
in every instance; a predictor that reads a whole leg or arm as its twin puts it near 0.5 or above.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/mirror_swaps.py` from anywhere
    sys.path.insert(0, str(ROOT))

from experiments.runner import atomic_write, csv_text  # noqa: E402

COLUMNS = ("run", "share_from", "share_to", "instances", "instance_share", "mpjpe_mm")
EDGES = (0.0, 0.3, 0.5, 1.0)  # mirror-share bins; the last one closed
FAR_CROP_PX = 10.0  # a vertex whose mirror projects nearer than this cannot show a swap
MIN_KEYPOINTS = 20  # fewer such keypoints: no share (NaN; counted in no bin)


def mirror_share(xy: np.ndarray, visible: np.ndarray, true_xy: np.ndarray, mirror: np.ndarray, crop_px: np.ndarray,
                 far: float = FAR_CROP_PX, min_keypoints: int = MIN_KEYPOINTS) -> np.ndarray:
    """(n,) float64 each instance's mirror share (module docstring), NaN with fewer than ``min_keypoints``
    keypoints whose mirror lies ``far`` crop pixels away.

    Args:
        xy, true_xy: (n, N, 2) float keypoints and their vertices' true projections (image pixels).
        visible: (n, N) bool. mirror: (N,) int each vertex's left/right mirror.
        crop_px: (n,) float image pixels per crop pixel.
    """
    scale = np.asarray(crop_px, np.float64)[:, None]
    own = np.linalg.norm(xy - true_xy, axis=-1) / scale
    twin = np.linalg.norm(xy - true_xy[:, mirror], axis=-1) / scale
    apart = np.linalg.norm(true_xy - true_xy[:, mirror], axis=-1) / scale > far
    used = visible & apart
    k = used.sum(axis=1)
    nearer = (used & (twin < own)).sum(axis=1)
    return np.where(k >= min_keypoints, nearer / np.maximum(k, 1), np.nan)


def binned_rows(name: str, share: np.ndarray, mpjpe_mm: np.ndarray, edges=EDGES) -> list[dict]:
    """One row per mirror-share bin: instances in it, their share of all, their mean MPJPE (NaN when empty).

    Args:
        share, mpjpe_mm: (n,) float per instance (share NaN: in no bin, but counted in the total).
    """
    rows = []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (share >= a) & ((share <= b) if i == len(edges) - 2 else (share < b))
        rows.append({"run": name, "share_from": a, "share_to": b, "instances": int(sel.sum()),
                     "instance_share": round(float(sel.mean()), 4),
                     "mpjpe_mm": round(float(mpjpe_mm[sel].mean()), 2) if sel.any() else float("nan")})
    return rows


def measure(store: Path, model: Path, mirror: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """The test split's mirror shares and per-instance MPJPE (mm) of ``model`` on ``store``: (n,) float each."""
    import zarr

    from pipeline.evaluate.measures import camera_for_metres
    from pipeline.evaluate.metrics import image_to_camera, vertex_errors
    from pipeline.keypoints.lookup import crop_scale
    from pipeline.train.checkpoint import load_checkpoint, reconstruct

    z = zarr.open(str(store), mode="r")
    if "gt/pixels" not in z or "gt/vertices" not in z:
        raise SystemExit(f"{store}: no gt/pixels or gt/vertices: the measure needs a synthetic source's ground truth")
    rows = np.flatnonzero(np.asarray(z["split"][:]) == 1)
    xy, visible = z["xy"][:][rows], z["visible"][:][rows].astype(bool)
    share = mirror_share(xy, visible, z["gt/pixels"][:][rows], mirror,
                         crop_scale(z["box"][:][rows].astype(np.float64), crop))
    net, info = load_checkpoint(model)
    points = reconstruct(net, xy, visible, first_round=info["first_round"]).numpy()
    true = z["gt/vertices"][:][rows].astype(np.float64)
    camera = camera_for_metres(z["gt/camera"][:][rows], true, z.attrs.get("projection", "orthographic"))
    return share, 1000.0 * vertex_errors(image_to_camera(points, camera), true).mean(axis=1)


def main(argv: list[str] | None = None) -> int:
    from pipeline.core.config import load_params
    from pipeline.template.file import load_template
    from pipeline.train.losses import mirror_map

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--run", nargs=3, action="append", metavar=("NAME", "KEYPOINTS", "MODEL"), required=True)
    ap.add_argument("--template", type=Path, default=ROOT / "data" / "template.npz")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="its densepose.crop: the crop side")
    ap.add_argument("--out", type=Path, default=ROOT / "metrics" / "paper" / "mirror_swaps.csv")
    args = ap.parse_args(argv)
    mirror = mirror_map(np.asarray(load_template(args.template).vertices))
    crop = load_params(args.params).densepose.crop
    out = []
    for name, store, model in args.run:
        share, mpjpe = measure(Path(store), Path(model), mirror, crop)
        rows = binned_rows(name, share, mpjpe)
        out += rows
        print(f"{name}: MPJPE {mpjpe.mean():.1f} mm over {len(mpjpe)} test instances; mirror share median "
              f"{np.nanmedian(share):.2f}, p90 {np.nanquantile(share, 0.9):.2f}")
        for r in rows:
            print(f"  share {r['share_from']:.1f}-{r['share_to']:.1f}: {r['instance_share']:6.1%} of the instances, "
                  f"MPJPE {r['mpjpe_mm']:.1f} mm")
    atomic_write(args.out, csv_text(out, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
