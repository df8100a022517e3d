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
                          (:func:`pipeline.evaluate.metrics.view_azimuth`, the convention of the synthetic cameras'
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
  by_pose_mode            where it fails, by pose: per pose mode of the synthetic sampler (``gt/mode``,
                          named by the store's ``pose_modes`` attribute: ``walk``, ``reach``, ``sit``,
                          ``bend``) ``instances``, ``mpjpe_mm`` (the MPJPE of those instances alone),
                          ``flat_mpjpe_mm`` (the flat reference's) and ``ratio`` (mpjpe_mm /
                          flat_mpjpe_mm: below 1 the model beats the flat reference); null but
                          ``instances`` for a mode no instance has. Only when the store has ``gt/mode``
                          (synthetic data since it was added)
  by_visible_share        the same per share of the template's surface the keypoints show
                          (``visible_area``, else the share of visible vertices;
                          :data:`pipeline.evaluate.metrics.VISIBLE_SHARE_EDGES`): keys
                          ``vis00-30`` [0, 0.3), ``vis30-50`` [0.3, 0.5), ``vis50-70`` [0.5, 0.7),
                          ``vis70-100`` [0.7, 1], which hold every instance once
  network_alone           when each prediction was refined (``eval.refine_steps`` > 0, the default):
                          ``mpjpe_mm``, ``xy_mm``, ``z_mm``, ``re14_mm`` of the network's prediction alone
                          on the same instances (what ``-S eval.refine_steps=0`` would score), so one run
                          shows what refinement gained; before the last two keys
  ======================  ===========================================================================

  (the last two after every other key, :data:`pipeline.evaluate.results.BREAKDOWN_KEYS`)

  and the segmentation keys (both branches; :data:`SEGMENTATION_KEYS`, :mod:`pipeline.evaluate.segmentation`) of
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
                                    parts (:func:`pipeline.evaluate.segmentation.distinct_regions`)
  ================================  =================================================================

- ``metrics/eval_parts.csv``: per part (24 DensePose parts or 14 coarse ones) ``part, name,
  vertices, mpjpe_mm, visible_mm, invisible_mm, flat_mm`` (a DVC plot of mpjpe_mm against part);
- ``metrics/segmentation.csv`` (both branches): per coarse DensePose region (10:
  :data:`pipeline.evaluate.segmentation.REGIONS`) ``region, vertices, majority_part, majority_share``: the 0-based
  latent part that is the arg-max of most of the region's vertices and their share (a DVC plot);
- ``reports/``: ``grid.png`` (input keypoints; reconstruction seen from the camera and from the side;
  the same for the ground truth), ``segmentation.png`` (learnt parts on the template, front and back, at
  initialisation when known and after training, and the largest weight),
  ``errors.png`` (histograms, error against visible share, mean vertex error on the template, share of
  instances whose depth mirror is better per view azimuth),
  ``meshes/*.ply`` (first reconstructions and their ground truth, camera frame, metres, mean depth 0),
  ``uv_maps/*.png`` (their UV position maps, 16-bit RGB: ``(position - centroid) / 2 m + 0.5``),
  ``uv_maps.png`` (those maps side by side for a person to look at) and ``index.html`` (one self-contained
  page, offline: the first :data:`pipeline.evaluate.page.PAGE_INSTANCES` instances' input crops and keypoints,
  the predicted mesh over the crop, and prediction and truth in 3D views to rotate, coloured by vertex error
  or learnt part; :mod:`pipeline.evaluate.page`).

**Without ground truth** (real images: ``densepose.source`` detectron2 or precomputed) only the 2D
fit can be measured, in image pixels. It reconstructs the test split or, when the store has none
(real images are all train unless a test list is given), every instance, and says what the
checkpoint records of them (:func:`training_overlap`): when it was trained on this very store (its
``data`` record: the store's :func:`pipeline.keypoints.store.instances_fingerprint`), a warning that
the error is measured on its training instances (how many: the train rows less those ``train.val_share``
held out); when it was trained on another store, that it is not; without the record, that it is
unknown. It writes

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
                            (:func:`pipeline.evaluate.measures.log_histogram`): exact when the middle values' bin holds one
                            distinct value, else within 2**-14 (6.1e-5) of the median, relative
  reproj2d_mean_box_pct     mean of the same distances each divided by its instance's box diagonal
                            (``box``), percent: comparable across image sizes
  reproj2d_median_box_pct   median of those (streamed likewise)
  network_alone             when each prediction was refined: ``reproj2d_mean_px``, ``reproj2d_median_px``,
                            ``reproj2d_mean_box_pct``, ``reproj2d_median_box_pct`` of the network's
                            prediction alone
  ========================  =========================================================================

  followed by the segmentation keys above;

- ``metrics/eval_parts.csv``: per part ``part, name, vertices, reproj2d_keypoints, reproj2d_mean_px,
  reproj2d_mean_box_pct`` (empty cells where a part has no visible keypoint); ``metrics/segmentation.csv``;
- ``reports/``: ``grid.png`` (input keypoints; reconstruction seen from the camera and from the side),
  ``segmentation.png``, ``meshes/*_pred.ply`` (first reconstructions in the image frame: x, y image
  pixels, y down, z pixels away from the camera, mean depth 0), ``uv_maps/*_pred.png`` (16-bit RGB:
  ``(position - centroid) / (2 UV_HALF_RANGE_PX) + 0.5``, :data:`UV_HALF_RANGE_PX` = 4096 px) and
  ``uv_maps.png``, ``index.html`` (the prediction alone); no ``errors.png``.

Predictions come in the image frame of the keypoints (x, y pixels, z in pixels away from the camera,
depth up to a constant, :func:`pipeline.train.model.reconstruct`) and are turned into camera-frame metres
with the instance's camera: orthographic ``image = f (x, y) + c``; for perspective data the weak-
perspective focal ``f / mean true depth`` is used.

Memory does not grow with the number of instances: each batch of ``eval.batch_size`` instances is measured and
dropped before the next is read. What stays is of fixed size (the sums per part and per vertex, the error
histograms, and for the 2D medians two log histograms of 13 MB: :func:`pipeline.evaluate.measures.log_histogram`), the first instances
kept for the reports, and per instance only the scalars of ``EvalResult.per_instance`` (about 80 bytes with
ground truth, 32 without: 3 MB at 40,000 instances), never a per-vertex array. The peak is about one batch's
arrays: measured ~2.2 GB (no ground truth) and ~2.6 GB (ground truth) at 512 instances of a 27,554-vertex
template, the same at 5,000 and 40,000 instances (``benchmarks/bench_evaluate_memory.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.core.config import EvalParams, load_params_dict
from pipeline.core.errors import InputError
from pipeline.core.stage import progress as progress_bar
from pipeline.core.store import SPLIT_TRAIN, StoreError
from pipeline.evaluate.inputs import read_inputs
from pipeline.evaluate.measures import measure_2d, measure_3d
from pipeline.evaluate.page import PAGE_INSTANCES, page_data, page_html
from pipeline.evaluate.reports import UV_HALF_RANGE_PX, write_reports
from pipeline.evaluate.results import (ALONE_KEY, ALONE_KEYS, ALONE_KEYS_NO_GT, Batch, EvalResult, Reconstruct,
                                       SEGMENTATION_KEYS, fmt)
from pipeline.evaluate.segmentation import REGIONS, segmentation_metrics
from pipeline.keypoints.store import holdout_rows, instances_fingerprint, open_keypoints
from pipeline.template.file import COARSE_OF_PART, PART_NAMES, SEGMENTS, Template
from pipeline.train.checkpoint import load_checkpoint, reconstruct
from pipeline.train.refine import Refiner

log = logging.getLogger(__name__)

__all__ = ["evaluate", "Reconstructor", "model_reconstructor", "has_ground_truth", "pose_modes", "rows_to_evaluate",
           "training_overlap", "reconstructed_batches"]


def _part_table(template: Template, parts: str) -> tuple[np.ndarray, list[str]]:
    """(N,) part id of each vertex (1-based) and the part names, for ``eval.parts``."""
    if parts == "fine":
        return template.vertex_part.astype(np.int64), list(PART_NAMES)
    if parts == "coarse":
        return COARSE_OF_PART[template.vertex_part], list(SEGMENTS)
    raise InputError(f"eval.parts = {parts!r}: allowed 'fine' or 'coarse'")


def evaluate(keypoints: str | Path, template: Template, reconstruct: Reconstruct, segmentation: np.ndarray | None,
             cfg: EvalParams, reports: str | Path | None = None, device: str = "cpu",
             progress: bool = True, segmentation_init: np.ndarray | None = None,
             holdout: tuple[float, int] = (0.0, 0), iuv: str | Path | None = None,
             densepose: str | Path | None = None, checkpoint: dict | None = None,
             alone: Reconstruct | None = None) -> EvalResult:
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
            training (:func:`pipeline.train.data.holdout_rows`) are measured instead of the test split.
        iuv, densepose: ``iuv.zarr`` and ``densepose.zarr``, the crops that ``index.html`` shows (IUV; RGB when
            the store has it), or None: the page draws the keypoints without their crop.
        checkpoint: the checkpoint's info (:class:`Reconstructor`'s ``info``: its ``data`` and ``params``), which
            says whether a store without a test split is the one it was trained on (:func:`training_overlap`).
        alone: the network's prediction before ``reconstruct`` refines it (:class:`Reconstructor`'s ``alone``), or
            None: measured on the same instances in a second pass (no S2S, no reports) into ``network_alone``.
    Raises:
        StoreError: ground truth but no test instance; no ground truth and no ``box`` array.
        ValueError: ``eval.split: val`` with ``train.val_share: 0``.
    """
    root = open_keypoints(keypoints, template_hash=template.hash)
    ground_truth = has_ground_truth(root)
    if cfg.split == "val":
        if holdout[0] <= 0:
            raise InputError("eval.split = val measures the train bodies held out by train.val_share, which is 0: "
                             "set train.val_share (e.g. 0.1) or eval.split: test")
        rows, which = np.flatnonzero(holdout_rows(root, *holdout)), "val"
    else:
        rows, which = rows_to_evaluate(root, keypoints, ground_truth, checkpoint)
    parts = _part_table(template, cfg.parts)
    keep = max(cfg.grid, cfg.meshes, cfg.uv_maps, PAGE_INSTANCES if reports is not None else 0)
    batches = reconstructed_batches(root, rows, reconstruct, cfg.batch_size, progress)
    if ground_truth:
        modes = pose_modes(root, keypoints)
        result, kept, errors = measure_3d(root, batches, template, parts, cfg, keep, device, modes)
    else:
        if "box" not in root:
            raise StoreError(f"{keypoints}: no ground truth and no box array: the 2D error is relative to the box")
        log.info("%s: no ground truth (gt/vertices, gt/camera): measuring the 2D re-projection error only",
                 keypoints)
        result, kept, errors = measure_2d(batches, parts, which, keep)
    if alone is not None:
        log.info("the network's prediction alone, before refinement (eval.json's %s):", ALONE_KEY)
        batches = reconstructed_batches(root, rows, alone, cfg.batch_size, progress)
        if ground_truth:
            plain = measure_3d(root, batches, template, parts, replace(cfg, s2s_instances=0), 0, device, modes)[0]
        else:
            plain = measure_2d(batches, parts, which, 0)[0]
        keys = ALONE_KEYS if ground_truth else ALONE_KEYS_NO_GT
        result = replace(result, metrics={**result.metrics, ALONE_KEY: {k: plain.metrics[k] for k in keys}})
    seg_metrics, seg_rows = _segmentation(template, segmentation, segmentation_init)
    result = replace(result, metrics={**result.metrics, "split": which, **seg_metrics}, segmentation=seg_rows)
    if reports is not None:
        inputs = read_inputs(root, kept.rows[:PAGE_INSTANCES], iuv, densepose, template.hash)
        page = page_html(page_data(template, segmentation, kept, inputs, result.metrics))
        write_reports(Path(reports), template, segmentation, segmentation_init, seg_metrics, seg_rows, cfg, kept,
                       errors, 1.0 if ground_truth else UV_HALF_RANGE_PX, page)
    return result


def _segmentation(template: Template, segmentation: np.ndarray | None,
                  initial: np.ndarray | None) -> tuple[dict, list[dict]]:
    """The segmentation keys and segmentation.csv rows (:func:`pipeline.evaluate.segmentation.segmentation_metrics`);
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
             metrics["segmentation_entropy"], fmt(metrics["segmentation_min_component_share"], 3),
             fmt(metrics["segmentation_changed_share"], 3), metrics["regions_distinct"])
    return metrics, rows


# --- The instances measured: which store rows, read and reconstructed a batch at a time ----------------


def has_ground_truth(root) -> bool:
    return "gt" in root and {"vertices", "camera"} <= set(root["gt"].array_keys())


def pose_modes(root, path) -> tuple[str, ...] | None:
    """The names of the pose modes the store's ``gt/mode`` indexes (its ``pose_modes`` attribute), or None when it
    has no ``gt/mode`` (real images; stores made before it was added).

    Raises:
        StoreError: ``gt/mode`` without a list of distinct names in ``pose_modes``, or with a value it does not name.
    """
    if not ("gt" in root and "mode" in root["gt"]):
        return None
    names = root.attrs.get("pose_modes")
    if not (isinstance(names, list) and names and all(isinstance(x, str) for x in names)
            and len(set(names)) == len(names)):
        raise StoreError(f"{path}: gt/mode needs the pose modes' names, a list of distinct strings in the attribute "
                         f"pose_modes, got {names!r}; {root.fix}")
    mode = np.asarray(root["gt/mode"][:])
    bad = np.flatnonzero((mode < 0) | (mode >= len(names)))
    if len(bad):
        raise StoreError(f"{path}: gt/mode holds {int(mode[bad[0]])} at instance {bad[0]} ({len(bad)} instances in "
                         f"all), but pose_modes names {len(names)} modes (0..{len(names) - 1}); {root.fix}")
    return tuple(names)


def rows_to_evaluate(root, path, ground_truth: bool, checkpoint: dict | None = None) -> tuple[np.ndarray, str]:
    """(n,) store rows to evaluate and which they are: the test split, or without ground truth and
    without a test split every row ("all"), logged with what ``checkpoint`` (its info) records of them."""
    split = root["split"][:]
    test = np.flatnonzero(split == 1)
    if len(test):
        return test, "test"
    if ground_truth or len(split) == 0:
        raise StoreError(f"{path}: no test instance (split == 1)")
    trained, note = training_overlap(root, checkpoint)
    (log.info if trained == 0 else log.warning)(
        "%s: no test instance (split == 1): reconstructing all %d instances; %s", path, len(split), note)
    return np.arange(len(split)), "all"


def training_overlap(root, checkpoint: dict | None) -> tuple[int | None, str]:
    """How many rows of a keypoints store the checkpoint was trained on, and a sentence saying so: the train rows
    (``split == 0``) less those its own ``train.val_share`` held out when its ``data`` record names this store's
    instances (:func:`pipeline.keypoints.store.instances_fingerprint`); 0 when it names another store; None
    when the checkpoint records no store (older checkpoints, or none given)."""
    data = (checkpoint or {}).get("data") or {}
    if not data.get("instances"):
        return None, ("the checkpoint does not record the instances it was trained on, so whether the 2D "
                      "re-projection error is measured on training instances is unknown")
    if data["instances"] != instances_fingerprint(root):
        return 0, (f"the model was trained on another store ({data.get('keypoints')}, instances "
                   f"{data['instances']}), not on these instances: the 2D re-projection error is measured on "
                   "instances it did not see (unless the two stores share images)")
    params = (checkpoint or {}).get("params") or {}
    share = float(params.get("train", {}).get("val_share", 0.0))
    held = holdout_rows(root, share, int(params.get("common", {}).get("seed", 0)))
    train = root["split"][:] == SPLIT_TRAIN
    n, where = int((train & ~held).sum()), f"the model was trained on this store ({data.get('keypoints')})"
    if held.any():
        return n, (f"{where}: {n} of these {len(train)} instances are its training instances, {int(held.sum())} were "
                   f"held out by train.val_share = {share:g} (eval.split: val measures those alone)")
    return n, (f"{where}: all {n} are its training instances, so the 2D re-projection error is measured on training "
               "data (a test_list of the densepose source holds images out)")


def reconstructed_batches(root, rows: np.ndarray, reconstruct: Reconstruct, batch_size: int,
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


# --- A trained checkpoint as a reconstruction function, with its segmentation ----------------------------


class Reconstructor(NamedTuple):
    """A checkpoint's model ready to evaluate (:func:`model_reconstructor`)."""

    run: Reconstruct
    segmentation: np.ndarray               # (N, M) float32 learnt part weights ((N, 1) ones for the baselines)
    segmentation_init: np.ndarray | None   # (N, M) float32 part weights at initialisation; None if not saved
    info: dict                             # the checkpoint's info (pipeline.train.model.load_checkpoint)
    alone: Reconstruct | None = None       # the network's prediction alone when ``run`` refines it, else None


def model_reconstructor(path: str | Path, template: Template, device: str = "cpu",
                        batch_size: int = 1024, refine: EvalParams | None = None) -> Reconstructor:
    """The trained model of a checkpoint as a :data:`Reconstruct` function; with ``refine`` (the ``eval`` params)
    each prediction refined ``refine.refine_steps`` steps (:class:`pipeline.train.refine.Refiner`, with the loss
    params the checkpoint was trained with).

    Returns:
        :class:`Reconstructor`: the function, the (N, M) float32 learnt part weights, the weights at
        initialisation (the checkpoint's ``segmentation_init``: None in older checkpoints, or when its
        shape is not the learnt one's), the checkpoint's info dict and, when ``refine`` takes steps, the
        network's prediction alone.
    Raises:
        ValueError: the checkpoint was trained on another template.
    """
    model, info = load_checkpoint(path, device)
    if info.get("template_hash") not in (None, template.hash):
        raise InputError(f"{path}: trained on template {info['template_hash']!r}, but the template is "
                         f"{template.hash!r}; rerun the pipeline (dvc repro)")
    if model.n_vertices != len(template.vertices):
        raise InputError(f"{path}: model has {model.n_vertices} vertices, the template {len(template.vertices)}")

    refiner = None if refine is None else Refiner(model, load_params_dict(info["params"]).loss, refine, template.faces,
                                                  template.vertex_part)

    def predicting(refiner: Refiner | None) -> Reconstruct:
        def run(xy: np.ndarray, visible: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return reconstruct(model, xy, visible, batch_size=batch_size, first_round=info["first_round"],
                               refine=refiner).numpy()
        return run

    segmentation = model.segmentation().detach().cpu().numpy().astype(np.float32)
    init = info.get("segmentation_init")
    if init is not None:
        init = (init.detach().cpu().numpy() if hasattr(init, "detach") else np.asarray(init)).astype(np.float32)
        if init.shape != segmentation.shape:
            log.warning("%s: segmentation_init is %s but the model's segmentation %s: ignored", path, init.shape,
                        segmentation.shape)
            init = None
    refines = refiner is not None and refine.refine_steps > 0
    return Reconstructor(predicting(refiner), segmentation, init, info, predicting(None) if refines else None)
