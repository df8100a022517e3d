"""The 2D re-projection metrics of the ``evaluate`` stage (no ground truth; keys in :mod:`pipeline.evaluate.loop`).

The two medians are streamed (:mod:`pipeline.evaluate.streaming`): memory does not grow with the instances."""

from __future__ import annotations

from collections.abc import Iterator
import logging

import numpy as np

from pipeline.core.errors import InputError
from pipeline.evaluate.batches import Batch, Kept
from pipeline.evaluate.tables import EvalResult, PCT, add_sums, empty_sums, fmt, mean_or_none, part_head
from pipeline.evaluate.metrics import centre_depth, part_sums
from pipeline.evaluate.streaming import add_histograms, empty_histogram, histogram_median, log_histogram

log = logging.getLogger(__name__)


def reprojection_errors(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(B, N) float64 pixel distances between keypoints and the orthographic re-projection of the
    predicted vertices, ``|image[..., :2] - xy|`` (only meaningful where the keypoint is visible).

    Args:
        image: (B, N, 3) float image-frame prediction (x, y pixels). xy: (B, N, 2) float keypoints, pixels.
    """
    image, xy = np.asarray(image, np.float64), np.asarray(xy, np.float64)
    if image.ndim != 3 or image.shape[-1] != 3 or xy.shape != image.shape[:2] + (2,):
        raise InputError(f"image must be (B, N, 3) and xy (B, N, 2), got {image.shape} and {xy.shape}")
    return np.linalg.norm(image[..., :2] - xy, axis=-1)


def box_diagonals(box: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(B,) float64 diagonal lengths of (B, 4) boxes x0, y0, x1, y1 (pixels), at least ``eps``."""
    box = np.asarray(box, np.float64)
    if box.ndim != 2 or box.shape[1] != 4:
        raise InputError(f"box must be (B, 4), got {box.shape}")
    return np.maximum(np.hypot(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]), eps)


def measure_2d(batches: Iterator[Batch], parts: tuple[np.ndarray, list[str]], which: str,
                keep: int) -> tuple[EvalResult, Kept, None]:
    """The 2D re-projection metrics of the module docstring (no ground truth); returns the result and the
    kept instances (image-frame pixels, depth-centred)."""
    vertex_part, names = parts
    n_parts = len(names) + 1
    sums = {k: empty_sums(vertex_part, n_parts) for k in ("px", "pct")}
    dist = {k: empty_histogram() for k in ("px", "pct")}  # the per-keypoint distances, for the medians
    per = {k: [] for k in ("row", "keypoints", "reproj2d_px", "reproj2d_box_pct")}
    kept = Kept()

    for b in batches:
        err = {"px": reprojection_errors(b.image, b.xy)}  # (B, N)
        err["pct"] = PCT * err["px"] / box_diagonals(b.read("box"))[:, None]
        n_vis = b.visible.sum(1)
        for k, e in err.items():
            sums[k] = add_sums(sums[k], part_sums(e, vertex_part, b.visible, n_parts))
            dist[k] = add_histograms(dist[k], log_histogram(e[b.visible]))
        mean = {k: np.divide(np.where(b.visible, e, 0).sum(1), n_vis, out=np.full(len(e), np.nan), where=n_vis > 0)
                for k, e in err.items()}  # (B,) NaN without a visible keypoint
        per["row"].append(b.rows)
        per["keypoints"].append(n_vis)
        per["reproj2d_px"].append(mean["px"])
        per["reproj2d_box_pct"].append(mean["pct"])
        kept.add(keep, rows=b.rows, xy=b.xy, visible=b.visible, pred=centre_depth(b.image[:keep]),
                 error=[f"re-projection {e:.1f} px" for e in mean["px"][:keep]])
        del b, err  # peak memory: one batch's arrays

    per = {k: np.concatenate(v) for k, v in per.items()}
    n_kp = int(sums["px"].count_visible.sum())
    metrics = {
        "instances": len(per["row"]),
        "ground_truth": False,
        "split": which,
        "reproj2d_keypoints": n_kp,
        "reproj2d_mean_px": mean_or_none(sums["px"].sum_visible.sum(), n_kp, 1.0),
        "reproj2d_median_px": histogram_median(dist["px"]),
        "reproj2d_mean_box_pct": mean_or_none(sums["pct"].sum_visible.sum(), n_kp, 1.0),
        "reproj2d_median_box_pct": histogram_median(dist["pct"]),
    }
    part_rows = [dict(part_head(k, vertex_part, names),
                      reproj2d_keypoints=int(sums["px"].count_visible[k]),
                      reproj2d_mean_px=mean_or_none(sums["px"].sum_visible[k], sums["px"].count_visible[k], 1.0),
                      reproj2d_mean_box_pct=mean_or_none(sums["pct"].sum_visible[k], sums["pct"].count_visible[k], 1.0))
                 for k in range(1, n_parts)]
    log.info("%d instances (%s), no ground truth: 2D re-projection error of %d visible keypoints: mean %s px "
             "(median %s px), mean %s%% of the box diagonal (median %s%%)", metrics["instances"], which, n_kp,
             fmt(metrics["reproj2d_mean_px"], 2), fmt(metrics["reproj2d_median_px"], 2),
             fmt(metrics["reproj2d_mean_box_pct"], 2), fmt(metrics["reproj2d_median_box_pct"], 2))
    return EvalResult(metrics, part_rows, per, ground_truth=False), kept, None
