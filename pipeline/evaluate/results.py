"""What the ``evaluate`` stage passes around and writes: the batches it measures (:class:`Batch`), the
instances it keeps for the reports (:class:`Kept`), the keys of ``eval.json`` and the columns of its CSVs
(documented in :mod:`pipeline.evaluate.loop`), the result they are written from, the writer and the
per-part sums they add up."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

import numpy as np

from pipeline.core.io import atomic_path
from pipeline.evaluate.metrics import part_sums
from pipeline.evaluate.segmentation import REGION_COLUMNS


# (B, N, 2) float32 keypoints (pixels), (B, N) bool visible, (B,) int store rows -> (B, N, 3) image frame
Reconstruct = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Kept:
    """The first evaluated instances, kept whole for the reports (depth-centred; camera-frame metres with
    ground truth, else image-frame pixels and no ``true``). error: the per-instance headline error.
    pixels: (N, 2) the model's own image-frame x, y (image pixels) of each, where its mesh falls in the image."""

    rows: list = field(default_factory=list)
    xy: list = field(default_factory=list)
    visible: list = field(default_factory=list)
    pred: list = field(default_factory=list)
    true: list = field(default_factory=list)
    error: list = field(default_factory=list)
    pixels: list = field(default_factory=list)

    def add(self, limit: int, **arrays) -> None:
        room = limit - len(self.rows)
        if room > 0:
            for k, v in arrays.items():
                v = v[:room]  # arrays copied: a view would keep the batch's whole array alive
                getattr(self, k).extend(list(np.array(v)) if isinstance(v, np.ndarray) else v)


class Batch(NamedTuple):
    """Store rows reconstructed together. read(name): another array of the store at these rows."""

    rows: np.ndarray     # (B,) int64
    xy: np.ndarray       # (B, N, 2) float32 pixels
    visible: np.ndarray  # (B, N) bool
    image: np.ndarray    # (B, N, 3) float64 reconstruction, image frame
    read: Callable[[str], np.ndarray]


SEGMENTATION_KEYS = ("parts_used", "segmentation_entropy", "segmentation_min_component_share",
                     "segmentation_changed_share", "regions_distinct")


SEGMENTATION_COLUMNS = REGION_COLUMNS


METRIC_KEYS = ("test_instances", "split", "mpjpe_mm", "mpjpe_visible_mm", "mpjpe_invisible_mm", "xy_mm", "z_mm", "re14_mm",
               "flat_mpjpe_mm", "mpjpe_best_flip_mm", "flip_better_share", "flip_share_by_azimuth",
               "instances_by_azimuth", "torso_facing_share", "s2s_mm", "s2s_instances") + SEGMENTATION_KEYS


# with ground truth, after METRIC_KEYS when the result has them: by_pose_mode only when the store has gt/mode
BREAKDOWN_KEYS = ("by_pose_mode", "by_visible_share")

# eval.json's "network_alone" (when each prediction was refined): these figures of the network's prediction alone,
# with ground truth and without; after METRIC_KEYS (METRIC_KEYS_NO_GT), before BREAKDOWN_KEYS
ALONE_KEY = "network_alone"
ALONE_KEYS = ("mpjpe_mm", "xy_mm", "z_mm", "re14_mm")
ALONE_KEYS_NO_GT = ("reproj2d_mean_px", "reproj2d_median_px", "reproj2d_mean_box_pct", "reproj2d_median_box_pct")


PART_COLUMNS = ("part", "name", "vertices", "mpjpe_mm", "visible_mm", "invisible_mm", "flat_mm")


METRIC_KEYS_NO_GT = ("instances", "ground_truth", "split", "reproj2d_keypoints", "reproj2d_mean_px",
                     "reproj2d_median_px", "reproj2d_mean_box_pct", "reproj2d_median_box_pct") + SEGMENTATION_KEYS


PART_COLUMNS_NO_GT = ("part", "name", "vertices", "reproj2d_keypoints", "reproj2d_mean_px", "reproj2d_mean_box_pct")


MM = 1000.0


PCT = 100.0


@dataclass(frozen=True)
class EvalResult:
    """metrics: the eval.json dict. parts: rows of eval_parts.csv. per_instance: (n,) arrays by name
    (with ground truth: row, mpjpe, flip, flip_better, flat, re14, visible_area, xy, z, azimuth (degrees),
    azimuth_bin (index into :data:`pipeline.evaluate.metrics.AZIMUTH_CENTRES`), visible_bin (index into
    :data:`pipeline.evaluate.metrics.VISIBLE_SHARE_KEYS`), torso_facing (bool), mode (index into the store's
    ``pose_modes``; only with ``gt/mode``) and s2s of the first instances). ground_truth: whether the 3D metrics
    (:data:`METRIC_KEYS`) or the 2D ones (:data:`METRIC_KEYS_NO_GT`). segmentation: rows of segmentation.csv
    (:data:`SEGMENTATION_COLUMNS`)."""

    metrics: dict
    parts: list[dict]
    per_instance: dict
    ground_truth: bool = True
    segmentation: list[dict] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return self.metrics["test_instances" if self.ground_truth else "instances"]

    def lines(self) -> list[str]:
        """What the stage logs: what was measured and the headline figures."""
        m, alone = self.metrics, self.metrics.get(ALONE_KEY)
        if self.ground_truth:
            return [f"evaluated {self.instances} {m['split']} instances against the ground truth: MPJPE "
                    f"{fmt(m.get('mpjpe_mm'))} mm (flat {fmt(m.get('flat_mpjpe_mm'))} mm), RE14 {fmt(m.get('re14_mm'))} mm, "
                    f"{m.get('parts_used')} parts used"
                    + (f"; the network's prediction alone {fmt(alone['mpjpe_mm'])} mm" if alone else "")]
        # split: "test", or "all" when the store has no test split
        return [f"evaluated {self.instances} instances (split: {m['split']}) without ground truth, by the 2D "
                f"re-projection error: mean {fmt(m.get('reproj2d_mean_px'))} px"
                + (f"; the network's prediction alone {fmt(alone['reproj2d_mean_px'])} px" if alone else "")]


def part_head(k: int, vertex_part: np.ndarray, names: list[str]) -> dict:
    """The first columns of part ``k``'s row of eval_parts.csv (1-based ``k``)."""
    return {"part": k, "name": names[k - 1], "vertices": int((vertex_part == k).sum())}


def add_sums(a, b):
    return type(a)(*(x + y for x, y in zip(a, b)))


def empty_sums(vertex_part: np.ndarray, n_parts: int):
    """Empty :class:`pipeline.evaluate.metrics.PartSums` to add batches to."""
    n = len(vertex_part)
    return part_sums(np.zeros((0, n)), vertex_part, np.zeros((0, n), bool), n_parts)


def mean_or_none(total: float, count: int, scale: float = MM) -> float | None:
    """``scale`` times the mean (mm by default), None when nothing was counted (JSON null; an empty CSV cell)."""
    return scale * float(total) / int(count) if count else None


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def write_metrics(result: EvalResult, metrics_path: str | Path, parts_path: str | Path,
                  segmentation_path: str | Path | None = None) -> None:
    """Writes ``eval.json``, ``eval_parts.csv`` and (if ``segmentation_path``) ``segmentation.csv``
    atomically (values rounded to 0.0001: 0.0001 mm, px, % or share; nested dicts likewise): the keys of
    :data:`METRIC_KEYS` (or :data:`METRIC_KEYS_NO_GT`), then :data:`ALONE_KEY` and those of :data:`BREAKDOWN_KEYS`
    the result has."""
    keys, columns = (METRIC_KEYS, PART_COLUMNS) if result.ground_truth else (METRIC_KEYS_NO_GT, PART_COLUMNS_NO_GT)
    if ALONE_KEY in result.metrics:
        keys += (ALONE_KEY,)
    if result.ground_truth:
        keys += tuple(k for k in BREAKDOWN_KEYS if k in result.metrics)

    def rnd(v):
        if isinstance(v, dict):
            return {k: rnd(x) for k, x in v.items()}
        return round(v, 4) if isinstance(v, float) else v

    with atomic_path(metrics_path) as tmp:
        tmp.write_text(json.dumps({k: rnd(result.metrics[k]) for k in keys}, indent=2) + "\n")
    tables = [(parts_path, columns, result.parts)]
    if segmentation_path is not None:
        tables.append((segmentation_path, SEGMENTATION_COLUMNS, result.segmentation))
    for path, cols, rows in tables:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if row[k] is None else rnd(row[k])) for k in cols})
