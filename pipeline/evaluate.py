"""The ``evaluate`` stage's work: reconstruct the test split, measure it, draw the reports (METHOD.md §6, §7).

Reads ``keypoints.zarr`` and a reconstruction function. **With ground truth** (synthetic data:
``gt/vertices`` and ``gt/camera``) it reconstructs the test split (``split == 1``; a store without
one is an error) and writes

- ``metrics/eval.json`` (:data:`METRIC_KEYS`; lengths in mm):

  ======================  ===========================================================================
  key                     meaning
  ======================  ===========================================================================
  test_instances          instances of the test split evaluated (of the held-out train bodies with
                          ``eval.split: val``)
  split                   which instances: ``test`` or ``val``
  mpjpe_mm                mean over all vertices (visible or not) and instances of the distance between
                          predicted and true vertex, camera frame, each shape's mean depth subtracted
  mpjpe_visible_mm        the same over the vertices the model saw as keypoints (``visible``)
  mpjpe_invisible_mm      ... and over the others
  xy_mm                   the image-plane part of the MPJPE: mean over all vertices and instances of
                          ``|(dx, dy)|`` (depth-centring does not change it)
  z_mm                    the depth part: mean ``|dz|`` of the depth-centred shapes
  re14_mm                 14 regressed joints, similarity-aligned (rotation, translation, scale) to the
                          true joints' regression, mean joint distance
  flat_mpjpe_mm           MPJPE of the flat reference: true x, y and every depth 0
  mpjpe_best_flip_mm      per instance the better of the prediction and its depth mirror (a diagnostic
                          of the orthographic mirror ambiguity)
  flip_better_share       share of instances whose depth mirror is closer to the truth
  flip_share_by_azimuth   the same per view azimuth of the true body: a dict of 8 bins of 45° centred on
                          0, 45, ..., 180, -135, -90, -45 (keys ``az+000``, ``az+045``, ..., ``az+180``,
                          ``az-135``, ``az-090``, ``az-045``); null for an empty bin. Azimuth
                          (:func:`pipeline.metrics.view_azimuth`, the convention of the synthetic cameras'
                          azimuth): 0 the body faces the camera, ±180 its back does, +90 its left side
                          does (camera on the body's left), -90 its right side; from a rigid fit of the
                          template's torso (DensePose parts 1, 2) to the true one
  instances_by_azimuth    test instances in each of those bins (same keys)
  torso_facing_share      share of instances whose predicted torso faces the same way as the true one
                          (towards or away from the camera): the depth component of the torso's
                          back-to-front vector (mean of part 2 minus mean of part 1) has the same sign
  s2s_mm                  surface-to-surface error (vertex-to-nearest-face both ways, averaged) on the
                          first ``eval.s2s_instances`` test instances (``s2s_instances`` of them;
                          null when 0)
  s2s_instances           instances S2S was measured on
  ======================  ===========================================================================

  and the segmentation keys (both branches; :data:`SEGMENTATION_KEYS`, :mod:`pipeline.segmentation`) of
  the learnt part weights (the baselines' are (N, 1) ones: one part used, entropy 0, component share 1,
  regions not distinct; all null when no segmentation is given):

  ================================  =================================================================
  parts_used                        latent parts that are the arg-max of at least 1 % of the vertices
  segmentation_entropy              mean over vertices of the part distribution's entropy / log M: 0 hard,
                                    1 uniform
  segmentation_min_component_share  minimum over the used parts of the share of a part's arg-max vertices
                                    in its largest connected patch on the mesh (1: every part one patch)
  segmentation_changed_share        share of vertices whose arg-max part changed since initialisation
                                    (the checkpoint's ``segmentation_init``; null if unknown)
  regions_distinct                  head, torso, left arm and right arm have pairwise different majority
                                    parts (:func:`pipeline.segmentation.distinct_regions`)
  ================================  =================================================================

- ``metrics/eval_parts.csv``: per part (24 DensePose parts or 14 coarse ones) ``part, name,
  vertices, mpjpe_mm, visible_mm, invisible_mm, flat_mm`` (a DVC plot of mpjpe_mm against part);
- ``metrics/segmentation.csv`` (both branches): per coarse DensePose region (10:
  :data:`pipeline.segmentation.REGIONS`) ``region, vertices, majority_part, majority_share``: the 0-based
  latent part that is the arg-max of most of the region's vertices and their share (a DVC plot);
- ``reports/``: ``grid.png`` (input keypoints; reconstruction seen from the camera and from the side;
  the same for the ground truth), ``segmentation.png`` (learnt parts on the template, front and back, at
  initialisation when known and after training, and the largest weight),
  ``errors.png`` (histograms, error against visible share, mean vertex error on the template, share of
  instances whose depth mirror is better per view azimuth),
  ``meshes/*.ply`` (first reconstructions and their ground truth, camera frame, metres, mean depth 0),
  ``uv_maps/*.png`` (their UV position maps, 16-bit RGB: ``(position - centroid) / 2 m + 0.5``)
  and ``uv_maps.png`` (those maps side by side for a person to look at).

**Without ground truth** (real images: ``densepose.source`` detectron2 or precomputed) only the 2D
fit can be measured, in image pixels. It reconstructs the test split or, when the store has none
(real images are all train unless a test list is given), every instance, with a warning: the
error is then measured on the instances the model was trained on. It writes

- ``metrics/eval.json`` (:data:`METRIC_KEYS_NO_GT`):

  ========================  =========================================================================
  key                       meaning
  ========================  =========================================================================
  instances                 instances evaluated
  ground_truth              false: no 3D error can be measured
  split                     which instances: ``test`` (``split == 1``) or ``all`` (the store has no
                            test instance)
  reproj2d_keypoints        visible keypoints measured, all instances together
  reproj2d_mean_px          mean over the visible keypoints of the distance between the keypoint and the
                            orthographic re-projection of its predicted vertex (the prediction's x, y:
                            both are image pixels, so a perfect 2D fit gives 0), image pixels
  reproj2d_median_px        median of the same distances, streamed in a log histogram
                            (:mod:`pipeline.streaming`): exact when the middle values' bin holds one
                            distinct value, else within 2**-14 (6.1e-5) of the median, relative
  reproj2d_mean_box_pct     mean of the same distances each divided by its instance's box diagonal
                            (``box``), percent: comparable across image sizes
  reproj2d_median_box_pct   median of those (streamed likewise)
  ========================  =========================================================================

  followed by the segmentation keys above;

- ``metrics/eval_parts.csv``: per part ``part, name, vertices, reproj2d_keypoints, reproj2d_mean_px,
  reproj2d_mean_box_pct`` (empty cells where a part has no visible keypoint); ``metrics/segmentation.csv``;
- ``reports/``: ``grid.png`` (input keypoints; reconstruction seen from the camera and from the side),
  ``segmentation.png``, ``meshes/*_pred.ply`` (first reconstructions in the image frame: x, y image
  pixels, y down, z pixels away from the camera, mean depth 0), ``uv_maps/*_pred.png`` (16-bit RGB:
  ``(position - centroid) / (2 UV_HALF_RANGE_PX) + 0.5``, :data:`UV_HALF_RANGE_PX` = 4096 px) and
  ``uv_maps.png``; no ``errors.png``.

Predictions come in the image frame of the keypoints (x, y pixels, z in pixels away from the camera,
depth up to a constant, :func:`pipeline.model.reconstruct`) and are turned into camera-frame metres
with the instance's camera: orthographic ``image = f (x, y) + c``; for perspective data the weak-
perspective focal ``f / mean true depth`` is used.

Memory does not grow with the number of instances: each batch of ``eval.batch_size`` instances is measured and
dropped before the next is read. What stays is of fixed size (the sums per part and per vertex, the error
histograms, and for the 2D medians two log histograms of 13 MB: :mod:`pipeline.streaming`), the first instances
kept for the reports, and per instance only the scalars of ``EvalResult.per_instance`` (about 80 bytes with
ground truth, 32 without: 3 MB at 40,000 instances), never a per-vertex array. The peak is about one batch's
arrays: measured ~2.2 GB (no ground truth) and ~2.6 GB (ground truth) at 512 instances of a 27,554-vertex
template, the same at 5,000 and 40,000 instances (``benchmarks/bench_evaluate_memory.py``).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import trimesh

from pipeline.config import EvalParams
from pipeline.data import holdout_rows
from pipeline.io import atomic_path, save_figure
from pipeline.joints import apply_regressor
from pipeline.keypoints_store import open_keypoints
from pipeline.logs import progress as progress_bar
from pipeline.metrics import (AZIMUTH_CENTRES, azimuth_bins, azimuth_key, binned_share, centre_depth,
                              batch_vertex_errors, image_to_camera, part_sums, re14, s2s, same_facing, view_azimuth)
from pipeline.model import canonical_template
from pipeline.parts import COARSE_OF_PART, PART_NAMES, SEGMENTS
from pipeline.segmentation import REGION_COLUMNS, REGIONS, segmentation_metrics
from pipeline.store import StoreError
from pipeline.streaming import add_histograms, empty_histogram, histogram_median, log_histogram
from pipeline.template import Template
from pipeline.uvmap import atlas_image, uv_layout, write_uv_maps
from pipeline.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Reconstruct", "Reconstructor", "EvalResult", "evaluate", "model_reconstructor", "camera_for_metres",
           "write_metrics", "reprojection_errors", "box_diagonals", "METRIC_KEYS", "PART_COLUMNS", "METRIC_KEYS_NO_GT",
           "PART_COLUMNS_NO_GT", "SEGMENTATION_KEYS", "SEGMENTATION_COLUMNS", "UV_HALF_RANGE_PX"]

# (B, N, 2) float32 keypoints (pixels), (B, N) bool visible, (B,) int store rows -> (B, N, 3) image frame
Reconstruct = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

SEGMENTATION_KEYS = ("parts_used", "segmentation_entropy", "segmentation_min_component_share",
                     "segmentation_changed_share", "regions_distinct")
SEGMENTATION_COLUMNS = REGION_COLUMNS
METRIC_KEYS = ("test_instances", "split", "mpjpe_mm", "mpjpe_visible_mm", "mpjpe_invisible_mm", "xy_mm", "z_mm", "re14_mm",
               "flat_mpjpe_mm", "mpjpe_best_flip_mm", "flip_better_share", "flip_share_by_azimuth",
               "instances_by_azimuth", "torso_facing_share", "s2s_mm", "s2s_instances") + SEGMENTATION_KEYS
PART_COLUMNS = ("part", "name", "vertices", "mpjpe_mm", "visible_mm", "invisible_mm", "flat_mm")
METRIC_KEYS_NO_GT = ("instances", "ground_truth", "split", "reproj2d_keypoints", "reproj2d_mean_px",
                     "reproj2d_median_px", "reproj2d_mean_box_pct", "reproj2d_median_box_pct") + SEGMENTATION_KEYS
PART_COLUMNS_NO_GT = ("part", "name", "vertices", "reproj2d_keypoints", "reproj2d_mean_px", "reproj2d_mean_box_pct")
MM = 1000.0
PCT = 100.0
UV_HALF_RANGE_PX = 4096.0  # image-frame UV maps: +-4096 px around the centroid, 0.125 px a 16-bit step


@dataclass
class Kept:
    """The first evaluated instances, kept whole for the reports (depth-centred; camera-frame metres with
    ground truth, else image-frame pixels and no ``true``). error: the per-instance headline error."""

    rows: list = field(default_factory=list)
    xy: list = field(default_factory=list)
    visible: list = field(default_factory=list)
    pred: list = field(default_factory=list)
    true: list = field(default_factory=list)
    error: list = field(default_factory=list)

    def add(self, limit: int, **arrays) -> None:
        room = limit - len(self.rows)
        if room > 0:
            for k, v in arrays.items():
                v = v[:room]  # arrays copied: a view would keep the batch's whole array alive
                getattr(self, k).extend(list(np.array(v)) if isinstance(v, np.ndarray) else v)


@dataclass(frozen=True)
class EvalResult:
    """metrics: the eval.json dict. parts: rows of eval_parts.csv. per_instance: (n,) arrays by name
    (with ground truth: row, mpjpe, flip, flip_better, flat, re14, visible_area, xy, z, azimuth (degrees),
    azimuth_bin (index into :data:`pipeline.metrics.AZIMUTH_CENTRES`), torso_facing (bool), and s2s of
    the first instances). ground_truth: whether the 3D metrics (:data:`METRIC_KEYS`) or the 2D ones
    (:data:`METRIC_KEYS_NO_GT`). segmentation: rows of segmentation.csv (:data:`SEGMENTATION_COLUMNS`)."""

    metrics: dict
    parts: list[dict]
    per_instance: dict
    ground_truth: bool = True
    segmentation: list[dict] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return self.metrics["test_instances" if self.ground_truth else "instances"]


class Batch(NamedTuple):
    """Store rows reconstructed together. read(name): another array of the store at these rows."""

    rows: np.ndarray     # (B,) int64
    xy: np.ndarray       # (B, N, 2) float32 pixels
    visible: np.ndarray  # (B, N) bool
    image: np.ndarray    # (B, N, 3) float64 reconstruction, image frame
    read: Callable[[str], np.ndarray]


def camera_for_metres(camera: np.ndarray, true: np.ndarray, projection: str) -> np.ndarray:
    """(B, 3) orthographic f, cx, cy turning image-frame shapes into metres.

    Args:
        camera: (B, 3) f, cx, cy of the store's ``gt/camera``. true: (B, N, 3) true camera-frame metres.
        projection: the store's ``projection`` attribute; perspective uses f / (mean true depth).
    """
    camera = np.asarray(camera, np.float64).copy()
    if projection == "perspective":
        camera[:, 0] /= np.asarray(true, np.float64)[..., 2].mean(axis=1)
    elif projection != "orthographic":
        raise InputError(f"projection = {projection!r}: allowed 'orthographic' or 'perspective'")
    return camera


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


def _part_table(template: Template, parts: str) -> tuple[np.ndarray, list[str]]:
    """(N,) part id of each vertex (1-based) and the part names, for ``eval.parts``."""
    if parts == "fine":
        return template.vertex_part.astype(np.int64), list(PART_NAMES)
    if parts == "coarse":
        return COARSE_OF_PART[template.vertex_part], list(SEGMENTS)
    raise InputError(f"eval.parts = {parts!r}: allowed 'fine' or 'coarse'")


def _has_ground_truth(root) -> bool:
    return "gt" in root and {"vertices", "camera"} <= set(root["gt"].array_keys())


def _eval_rows(root, path, ground_truth: bool) -> tuple[np.ndarray, str]:
    """(n,) store rows to evaluate and which they are: the test split, or without ground truth and
    without a test split every row ("all")."""
    split = root["split"][:]
    test = np.flatnonzero(split == 1)
    if len(test):
        return test, "test"
    if ground_truth or len(split) == 0:
        raise StoreError(f"{path}: no test instance (split == 1)")
    log.warning("%s: no test instance (split == 1): reconstructing all %d instances; the 2D re-projection error "
                "is then measured on instances the model was trained on", path, len(split))
    return np.arange(len(split)), "all"


def _batches(root, rows: np.ndarray, reconstruct: Reconstruct, batch_size: int,
             progress: bool) -> Iterator[Batch]:
    """Reconstructs ``rows`` of the store ``batch_size`` at a time (each batch reads its span once)."""
    for a in progress_bar(range(0, len(rows), batch_size), desc="evaluate", unit="batch", enabled=progress):
        r = rows[a:a + batch_size]
        sel = slice(int(r[0]), int(r[-1]) + 1)  # read the span, keep the rows
        local = r - r[0]

        def read(name: str, sel=sel, local=local) -> np.ndarray:
            return root[name][sel][local]

        xy = read("xy")
        visible = read("visible").astype(bool)
        image = np.asarray(reconstruct(xy, visible, r), np.float64)
        if image.shape != xy.shape[:2] + (3,):
            raise InputError(f"reconstruct returned {image.shape}, expected {xy.shape[:2] + (3,)}")
        yield Batch(r, xy, visible, image, read)
        del xy, visible, image  # freed by the consumer before the next batch is read


def evaluate(keypoints: str | Path, template: Template, reconstruct: Reconstruct, segmentation: np.ndarray | None,
             cfg: EvalParams, reports: str | Path | None = None, device: str = "cpu",
             progress: bool = True, segmentation_init: np.ndarray | None = None,
             holdout: tuple[float, int] = (0.0, 0)) -> EvalResult:
    """Reconstructs the instances to evaluate, measures them and (if ``reports``) writes the report folder:
    the 3D metrics on the test split with ground truth, else the 2D re-projection error (module docstring),
    and in both cases the segmentation metrics.

    Args:
        keypoints: ``keypoints.zarr``. template: the template it was made from.
        reconstruct: the model, see :data:`Reconstruct`. segmentation: (N, M) learnt part weights or None
            (segmentation keys null, no segmentation.png).
        cfg: the ``eval`` params. reports: folder to (re)write atomically; None writes nothing.
        segmentation_init: (N, M) part weights at initialisation, or None (unknown).
        holdout: ``(train.val_share, common.seed)``: with ``eval.split: val`` the train rows held out of
            training (:func:`pipeline.data.holdout_rows`) are measured instead of the test split.
    Raises:
        StoreError: ground truth but no test instance; no ground truth and no ``box`` array.
        ValueError: ``eval.split: val`` with ``train.val_share: 0``.
    """
    root = open_keypoints(keypoints, template_hash=template.hash)
    ground_truth = _has_ground_truth(root)
    if cfg.split == "val":
        if holdout[0] <= 0:
            raise InputError("eval.split = val measures the train bodies held out by train.val_share, which is 0: "
                             "set train.val_share (e.g. 0.1) or eval.split: test")
        rows, which = np.flatnonzero(holdout_rows(root, *holdout)), "val"
    else:
        rows, which = _eval_rows(root, keypoints, ground_truth)
    parts = _part_table(template, cfg.parts)
    keep = max(cfg.grid, cfg.meshes, cfg.uv_maps)
    batches = _batches(root, rows, reconstruct, cfg.batch_size, progress)
    if ground_truth:
        result, kept, errors = _measure_3d(root, batches, template, parts, cfg, keep, device)
    else:
        if "box" not in root:
            raise StoreError(f"{keypoints}: no ground truth and no box array: the 2D error is relative to the box")
        log.info("%s: no ground truth (gt/vertices, gt/camera): measuring the 2D re-projection error only",
                 keypoints)
        result, kept, errors = _measure_2d(batches, parts, which, keep)
    seg_metrics, seg_rows = _segmentation(template, segmentation, segmentation_init)
    result = replace(result, metrics={**result.metrics, "split": which, **seg_metrics}, segmentation=seg_rows)
    if reports is not None:
        _write_reports(Path(reports), template, segmentation, segmentation_init, seg_metrics, seg_rows, cfg, kept,
                       errors, 1.0 if ground_truth else UV_HALF_RANGE_PX)
    return result


def _segmentation(template: Template, segmentation: np.ndarray | None,
                  initial: np.ndarray | None) -> tuple[dict, list[dict]]:
    """The segmentation keys and segmentation.csv rows (:func:`pipeline.segmentation.segmentation_metrics`);
    without a segmentation every key is null and the rows give only the regions' vertex counts.

    Args:
        segmentation, initial: (N, M) float part weights (learnt, at initialisation) or None.
    """
    if segmentation is None:
        rows = [{"region": name, "vertices": int(np.isin(template.vertex_part, ids).sum()), "majority_part": None,
                 "majority_share": None} for name, ids in REGIONS.items()]
        return dict.fromkeys(SEGMENTATION_KEYS), rows
    if initial is not None and np.shape(initial) != np.shape(segmentation):
        log.warning("initial segmentation %s does not match the learnt one %s: layout change unknown",
                    np.shape(initial), np.shape(segmentation))
        initial = None
    metrics, rows = segmentation_metrics(segmentation, template.faces, template.vertex_part, initial)
    log.info("segmentation: %d of %d parts used, entropy %.3f, smallest largest-patch share %s, changed since "
             "initialisation %s, head/torso/arms distinct: %s", metrics["parts_used"], np.shape(segmentation)[1],
             metrics["segmentation_entropy"], _fmt(metrics["segmentation_min_component_share"], 3),
             _fmt(metrics["segmentation_changed_share"], 3), metrics["regions_distinct"])
    return metrics, rows


def _measure_3d(root, batches: Iterator[Batch], template: Template, parts: tuple[np.ndarray, list[str]],
                cfg: EvalParams, keep: int, device: str) -> tuple[EvalResult, Kept, dict]:
    """The 3D metrics of the module docstring; returns the result, the kept instances and the
    :func:`pipeline.eval_plots.errors_figure` arguments."""
    vertex_part, names = parts
    n_parts = len(names) + 1
    projection = str(root.attrs.get("projection", "orthographic"))
    has_area = "visible_area" in root
    s2s_limit = cfg.s2s_instances
    canonical, scale = canonical_template(template.vertices, template.up, template.forward)
    torso = np.isin(template.vertex_part, (1, 2))
    canonical_torso = canonical[torso].astype(np.float64) * scale  # metres
    front, back = template.vertex_part == 2, template.vertex_part == 1
    # the joint regressor's few vertices: the joints of a batch for a fraction of the work
    joint_vertices = np.flatnonzero(np.any(template.joint_regressor != 0, axis=0))
    regressor = template.joint_regressor[:, joint_vertices]

    sums = {k: _no_sums(vertex_part, n_parts) for k in ("pred", "flat")}
    split_sums = {"xy": 0.0, "z": 0.0}
    vertex_sum = np.zeros(len(vertex_part))
    bins = np.linspace(0, cfg.histogram_max_mm, 81)
    hist = {"visible": np.zeros(len(bins) - 1), "invisible": np.zeros(len(bins) - 1)}
    per = {k: [] for k in ("row", "mpjpe", "flip", "flat", "re14", "visible_area", "flip_better", "xy", "z",
                           "azimuth", "torso_facing")}
    s2s_values = []
    kept = Kept()

    for b in batches:
        rows, visible = b.rows, b.visible
        true = b.read("gt/vertices").astype(np.float64)
        camera = camera_for_metres(b.read("gt/camera"), true, projection)
        pred = image_to_camera(b.image, camera)
        err, err_flip, err_flat, err_xy, err_z = batch_vertex_errors(pred, true)  # (B, N) each
        split_sums["xy"] += err_xy.sum()
        split_sums["z"] += err_z.sum()
        sums["pred"] = _add(sums["pred"], part_sums(err, vertex_part, visible, n_parts))
        sums["flat"] = _add(sums["flat"], part_sums(err_flat, vertex_part, visible, n_parts))
        vertex_sum += err.sum(axis=0)
        for key, mask in (("visible", visible), ("invisible", ~visible)):  # equal bins: numpy's fast path
            hist[key] += np.histogram(np.minimum(err[mask] * MM, bins[-1]), len(bins) - 1, (bins[0], bins[-1]))[0]
        joints_pred = apply_regressor(regressor, pred[:, joint_vertices])
        joints_true = apply_regressor(regressor, true[:, joint_vertices])
        mpjpe, mpjpe_flip = err.mean(1), err_flip.mean(1)  # (B,)
        per["row"].append(rows)
        per["mpjpe"].append(mpjpe)
        per["flip"].append(np.minimum(mpjpe, mpjpe_flip))
        per["flip_better"].append(mpjpe_flip < mpjpe)
        per["flat"].append(err_flat.mean(1))
        per["re14"].append(re14(joints_pred, joints_true))
        per["visible_area"].append(b.read("visible_area") if has_area else visible.mean(1))
        per["xy"].append(err_xy.mean(1))
        per["z"].append(err_z.mean(1))
        per["azimuth"].append(view_azimuth(canonical_torso, true[:, torso]))
        per["torso_facing"].append(same_facing(pred, true, front, back))
        room = s2s_limit - len(s2s_values)
        if room > 0:
            s2s_values.extend(s2s(centre_depth(pred[:room]), centre_depth(true[:room]), template.faces, device=device))
        kept.add(keep, rows=rows, xy=b.xy, visible=visible, pred=centre_depth(pred[:keep]),
                 true=centre_depth(true[:keep]), error=[f"MPJPE {MM * e:.0f} mm" for e in mpjpe[:keep]])
        del b, visible, true, pred, err, err_flip, err_flat, err_xy, err_z  # peak memory: one batch's arrays

    per = {k: np.concatenate(v) for k, v in per.items()}
    per["azimuth_bin"] = azimuth_bins(per["azimuth"])
    n = len(per["mpjpe"])
    flip_share, by_azimuth = binned_share(per["flip_better"], per["azimuth_bin"], len(AZIMUTH_CENTRES))
    p, f = sums["pred"], sums["flat"]
    n_vis = int(p.count_visible.sum())
    n_all = int(p.count_all.sum())
    metrics = {
        "test_instances": n,
        "mpjpe_mm": MM * float(p.sum_all.sum() / n_all),
        "mpjpe_visible_mm": _ratio(p.sum_visible.sum(), n_vis),
        "mpjpe_invisible_mm": _ratio(p.sum_all.sum() - p.sum_visible.sum(), n_all - n_vis),
        "xy_mm": MM * float(split_sums["xy"] / n_all),
        "z_mm": MM * float(split_sums["z"] / n_all),
        "re14_mm": MM * float(per["re14"].mean()),
        "flat_mpjpe_mm": MM * float(f.sum_all.sum() / n_all),
        "mpjpe_best_flip_mm": MM * float(per["flip"].mean()),
        "flip_better_share": float(per["flip_better"].mean()),
        "flip_share_by_azimuth": {azimuth_key(c): None if np.isnan(v) else float(v)
                                  for c, v in zip(AZIMUTH_CENTRES, flip_share)},
        "instances_by_azimuth": {azimuth_key(c): int(k) for c, k in zip(AZIMUTH_CENTRES, by_azimuth)},
        "torso_facing_share": float(per["torso_facing"].mean()),
        "s2s_mm": MM * float(np.mean(s2s_values)) if s2s_values else None,
        "s2s_instances": len(s2s_values),
    }
    part_rows = [dict(_part_head(k, vertex_part, names),
                      mpjpe_mm=_ratio(p.sum_all[k], p.count_all[k]),
                      visible_mm=_ratio(p.sum_visible[k], p.count_visible[k]),
                      invisible_mm=_ratio(p.sum_all[k] - p.sum_visible[k], p.count_all[k] - p.count_visible[k]),
                      flat_mm=_ratio(f.sum_all[k], f.count_all[k]))
                 for k in range(1, n_parts)]
    per_instance = dict(per, s2s=np.asarray(s2s_values))
    log.info("%d test instances: MPJPE %.1f mm (visible %s, invisible %s; image plane %.1f, depth %.1f), RE14 %.1f mm, "
             "flat reference %.1f mm, best of depth flip %.1f mm (flip better on %.0f%%), torso facing the right "
             "way on %.0f%%", n, metrics["mpjpe_mm"], _fmt(metrics["mpjpe_visible_mm"]),
             _fmt(metrics["mpjpe_invisible_mm"]), metrics["xy_mm"], metrics["z_mm"], metrics["re14_mm"],
             metrics["flat_mpjpe_mm"], metrics["mpjpe_best_flip_mm"], 100 * metrics["flip_better_share"],
             100 * metrics["torso_facing_share"])
    log.info("flip better by view azimuth: %s", ", ".join(
        f"{k} {_fmt(None if v is None else 100 * v, 0)}% of {metrics['instances_by_azimuth'][k]}"
        for k, v in metrics["flip_share_by_azimuth"].items()))
    errors = {"per": per_instance, "hist": hist, "bins": bins, "vertex_mm": vertex_sum / n * MM, "summary": metrics}
    return EvalResult(metrics, part_rows, per_instance), kept, errors


def _measure_2d(batches: Iterator[Batch], parts: tuple[np.ndarray, list[str]], which: str,
                keep: int) -> tuple[EvalResult, Kept, None]:
    """The 2D re-projection metrics of the module docstring (no ground truth); returns the result and the
    kept instances (image-frame pixels, depth-centred)."""
    vertex_part, names = parts
    n_parts = len(names) + 1
    sums = {k: _no_sums(vertex_part, n_parts) for k in ("px", "pct")}
    dist = {k: empty_histogram() for k in ("px", "pct")}  # the per-keypoint distances, for the medians
    per = {k: [] for k in ("row", "keypoints", "reproj2d_px", "reproj2d_box_pct")}
    kept = Kept()

    for b in batches:
        err = {"px": reprojection_errors(b.image, b.xy)}  # (B, N)
        err["pct"] = PCT * err["px"] / box_diagonals(b.read("box"))[:, None]
        n_vis = b.visible.sum(1)
        for k, e in err.items():
            sums[k] = _add(sums[k], part_sums(e, vertex_part, b.visible, n_parts))
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
        "reproj2d_mean_px": _ratio(sums["px"].sum_visible.sum(), n_kp, 1.0),
        "reproj2d_median_px": histogram_median(dist["px"]),
        "reproj2d_mean_box_pct": _ratio(sums["pct"].sum_visible.sum(), n_kp, 1.0),
        "reproj2d_median_box_pct": histogram_median(dist["pct"]),
    }
    part_rows = [dict(_part_head(k, vertex_part, names),
                      reproj2d_keypoints=int(sums["px"].count_visible[k]),
                      reproj2d_mean_px=_ratio(sums["px"].sum_visible[k], sums["px"].count_visible[k], 1.0),
                      reproj2d_mean_box_pct=_ratio(sums["pct"].sum_visible[k], sums["pct"].count_visible[k], 1.0))
                 for k in range(1, n_parts)]
    log.info("%d instances (%s), no ground truth: 2D re-projection error of %d visible keypoints: mean %s px "
             "(median %s px), mean %s%% of the box diagonal (median %s%%)", metrics["instances"], which, n_kp,
             _fmt(metrics["reproj2d_mean_px"], 2), _fmt(metrics["reproj2d_median_px"], 2),
             _fmt(metrics["reproj2d_mean_box_pct"], 2), _fmt(metrics["reproj2d_median_box_pct"], 2))
    return EvalResult(metrics, part_rows, per, ground_truth=False), kept, None


def _part_head(k: int, vertex_part: np.ndarray, names: list[str]) -> dict:
    """The first columns of part ``k``'s row of eval_parts.csv (1-based ``k``)."""
    return {"part": k, "name": names[k - 1], "vertices": int((vertex_part == k).sum())}


def _add(a, b):
    return type(a)(*(x + y for x, y in zip(a, b)))


def _no_sums(vertex_part: np.ndarray, n_parts: int):
    """Empty :class:`pipeline.metrics.PartSums` to add batches to."""
    n = len(vertex_part)
    return part_sums(np.zeros((0, n)), vertex_part, np.zeros((0, n), bool), n_parts)


def _ratio(total: float, count: int, scale: float = MM) -> float | None:
    """``scale`` times the mean (mm by default), None when nothing was counted (JSON null; an empty CSV cell)."""
    return scale * float(total) / int(count) if count else None


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def write_metrics(result: EvalResult, metrics_path: str | Path, parts_path: str | Path,
                  segmentation_path: str | Path | None = None) -> None:
    """Writes ``eval.json``, ``eval_parts.csv`` and (if ``segmentation_path``) ``segmentation.csv``
    atomically (values rounded to 0.0001: 0.0001 mm, px, % or share; nested dicts likewise)."""
    keys, columns = (METRIC_KEYS, PART_COLUMNS) if result.ground_truth else (METRIC_KEYS_NO_GT, PART_COLUMNS_NO_GT)

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


class Reconstructor(NamedTuple):
    """A checkpoint's model ready to evaluate (:func:`model_reconstructor`)."""

    run: Reconstruct
    segmentation: np.ndarray               # (N, M) float32 learnt part weights ((N, 1) ones for the baselines)
    segmentation_init: np.ndarray | None   # (N, M) float32 part weights at initialisation; None if not saved
    info: dict                             # the checkpoint's info (pipeline.model.load_checkpoint)


def model_reconstructor(path: str | Path, template: Template, device: str = "cpu",
                        batch_size: int = 1024) -> Reconstructor:
    """The trained model of a checkpoint as a :data:`Reconstruct` function.

    Returns:
        :class:`Reconstructor`: the function, the (N, M) float32 learnt part weights, the weights at
        initialisation (the checkpoint's ``segmentation_init``: None in older checkpoints, or when its
        shape is not the learnt one's) and the checkpoint's info dict.
    Raises:
        ValueError: the checkpoint was trained on another template.
    """
    from pipeline.model import load_checkpoint, reconstruct

    model, info = load_checkpoint(path, device)
    if info.get("template_hash") not in (None, template.hash):
        raise InputError(f"{path}: trained on template {info['template_hash']!r}, but the template is "
                         f"{template.hash!r}; rerun the pipeline (dvc repro)")
    if model.n_vertices != len(template.vertices):
        raise InputError(f"{path}: model has {model.n_vertices} vertices, the template {len(template.vertices)}")

    def run(xy: np.ndarray, visible: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return reconstruct(model, xy, visible, batch_size=batch_size).numpy()

    segmentation = model.segmentation().detach().cpu().numpy().astype(np.float32)
    init = info.get("segmentation_init")
    if init is not None:
        init = (init.detach().cpu().numpy() if hasattr(init, "detach") else np.asarray(init)).astype(np.float32)
        if init.shape != segmentation.shape:
            log.warning("%s: segmentation_init is %s but the model's segmentation %s: ignored", path, init.shape,
                        segmentation.shape)
            init = None
    return Reconstructor(run, segmentation, init, info)


def _write_reports(folder: Path, template: Template, segmentation, segmentation_init, seg_metrics: dict,
                   seg_rows: list[dict], cfg: EvalParams, kept: Kept, errors: dict | None,
                   uv_half_range: float) -> None:
    """Writes the report folder atomically (see the module docstring). Without ground truth ``kept.true``
    is empty and ``errors`` None: no truth panels, meshes or maps, and no errors.png.

    Args:
        segmentation, segmentation_init: (N, M) part weights learnt and at initialisation, or None.
        seg_metrics, seg_rows: their metrics and region table (:func:`pipeline.segmentation.segmentation_metrics`).
        errors: the :func:`pipeline.eval_plots.errors_figure` keyword arguments, or None.
        uv_half_range: the UV map PNGs' half range, in the units of ``kept`` (1 m, or UV_HALF_RANGE_PX).
    """
    from pipeline import eval_plots

    shapes = {"pred": kept.pred, "true": kept.true} if kept.true else {"pred": kept.pred}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if cfg.grid:
            k = min(cfg.grid, len(kept.rows))
            save_figure(eval_plots.grid_figure(template, kept.xy[:k], kept.visible[:k], kept.pred[:k],
                                               kept.true[:k] or None, kept.rows[:k], kept.error[:k],
                                               pad=0.05 if kept.true else None), tmp / "grid.png")
        if segmentation is not None:
            save_figure(eval_plots.segmentation_figure(template, segmentation, segmentation_init, seg_rows,
                                                       seg_metrics), tmp / "segmentation.png")
        if errors is not None:
            save_figure(eval_plots.errors_figure(template, **errors), tmp / "errors.png")
        if cfg.meshes:
            (tmp / "meshes").mkdir()
            for i in range(min(cfg.meshes, len(kept.rows))):
                for name, vs in shapes.items():
                    mesh = trimesh.Trimesh(np.asarray(vs[i], np.float32), template.faces, process=False)
                    mesh.export(tmp / "meshes" / f"{i:03d}_row{kept.rows[i]}_{name}.ply")
        if cfg.uv_maps:
            k = min(cfg.uv_maps, len(kept.rows))
            layout = uv_layout(template.chart_uv, template.chart_faces, template.chart_part, template.chart_vertex,
                               cfg.uv_resolution, len(template.vertices))
            maps = {name: write_uv_maps(layout, np.stack(vs[:k]) - np.stack(vs[:k]).mean(1, keepdims=True))
                    for name, vs in shapes.items()}
            (tmp / "uv_maps").mkdir()
            for i in range(k):
                for name in maps:
                    eval_plots.save_position_png(atlas_image(maps[name][i]),
                                                 tmp / "uv_maps" / f"{i:03d}_row{kept.rows[i]}_{name}.png",
                                                 uv_half_range)
            save_figure(eval_plots.uv_maps_figure(maps["pred"], maps.get("true"), layout.covered, kept.rows[:k]),
                        tmp / "uv_maps.png")
    log.info("wrote reports to %s", folder)
