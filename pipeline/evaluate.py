"""The ``evaluate`` stage's work: reconstruct the test split, measure it, draw the reports (METHOD.md §6, §7).

Reads ``keypoints.zarr`` (test split, ``split == 1``, with the synthetic ground truth ``gt/vertices``
and ``gt/camera``) and a reconstruction function; writes

- ``metrics/eval.json`` (:data:`METRIC_KEYS`; lengths in mm):

  ======================  ===========================================================================
  key                     meaning
  ======================  ===========================================================================
  test_instances          instances of the test split evaluated
  mpjpe_mm                mean over all vertices (visible or not) and instances of the distance between
                          predicted and true vertex, camera frame, each shape's mean depth subtracted
  mpjpe_visible_mm        the same over the vertices the model saw as keypoints (``visible``)
  mpjpe_invisible_mm      ... and over the others
  re14_mm                 14 regressed joints, similarity-aligned (rotation, translation, scale) to the
                          true joints' regression, mean joint distance
  flat_mpjpe_mm           MPJPE of the flat reference: true x, y and every depth 0
  mpjpe_best_flip_mm      per instance the better of the prediction and its depth mirror (a diagnostic
                          of the orthographic mirror ambiguity)
  flip_better_share       share of instances whose depth mirror is closer to the truth
  s2s_mm                  surface-to-surface error (vertex-to-nearest-face both ways, averaged) on the
                          first ``eval.s2s_instances`` test instances (``s2s_instances`` of them;
                          null when 0)
  ======================  ===========================================================================

- ``metrics/eval_parts.csv``: per part (24 DensePose parts or 14 coarse ones) ``part, name,
  vertices, mpjpe_mm, visible_mm, invisible_mm, flat_mm`` (a DVC plot of mpjpe_mm against part);
- ``reports/``: ``grid.png`` (input keypoints; reconstruction seen from the camera and from the side;
  the same for the ground truth), ``segmentation.png`` (learnt parts on the template, front and back),
  ``errors.png`` (histograms, error against visible share, mean vertex error on the template),
  ``meshes/*.ply`` (first reconstructions and their ground truth, camera frame, metres, mean depth 0),
  ``uv_maps/*.png`` (their UV position maps, 16-bit RGB: ``(position - centroid) / 2 m + 0.5``)
  and ``uv_maps.png`` (those maps side by side for a person to look at).

Predictions come in the image frame of the keypoints (x, y pixels, z in pixels away from the camera,
depth up to a constant, :func:`pipeline.model.reconstruct`) and are turned into camera-frame metres
with the instance's camera: orthographic ``image = f (x, y) + c``; for perspective data the weak-
perspective focal ``f / mean true depth`` is used.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from tqdm import tqdm

from pipeline.config import EvalParams
from pipeline.io import atomic_path, save_figure
from pipeline.joints import apply_regressor
from pipeline.keypoints_store import open_keypoints
from pipeline.metrics import (centre_depth, flat_reference, flip_depth, image_to_camera, part_sums, re14, s2s,
                              vertex_errors)
from pipeline.parts import COARSE_OF_PART, PART_NAMES, SEGMENTS
from pipeline.store import StoreError
from pipeline.template import Template
from pipeline.uvmap import atlas_image, uv_layout, write_uv_maps

log = logging.getLogger(__name__)

__all__ = ["Reconstruct", "EvalResult", "evaluate", "model_reconstructor", "camera_for_metres", "write_metrics",
           "METRIC_KEYS", "PART_COLUMNS"]

# (B, N, 2) float32 keypoints (pixels), (B, N) bool visible, (B,) int store rows -> (B, N, 3) image frame
Reconstruct = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

METRIC_KEYS = ("test_instances", "mpjpe_mm", "mpjpe_visible_mm", "mpjpe_invisible_mm", "re14_mm", "flat_mpjpe_mm",
               "mpjpe_best_flip_mm", "flip_better_share", "s2s_mm", "s2s_instances")
PART_COLUMNS = ("part", "name", "vertices", "mpjpe_mm", "visible_mm", "invisible_mm", "flat_mm")
MM = 1000.0


@dataclass
class Kept:
    """The first test instances, kept whole for the reports (camera-frame metres, depth-centred)."""

    rows: list = field(default_factory=list)
    xy: list = field(default_factory=list)
    visible: list = field(default_factory=list)
    pred: list = field(default_factory=list)
    true: list = field(default_factory=list)
    mpjpe: list = field(default_factory=list)

    def add(self, limit: int, **arrays) -> None:
        room = limit - len(self.rows)
        if room > 0:
            for k, v in arrays.items():
                getattr(self, k).extend(list(v[:room]))


@dataclass(frozen=True)
class EvalResult:
    """metrics: the eval.json dict. parts: rows of eval_parts.csv. per_instance: (n,) arrays by name."""

    metrics: dict
    parts: list[dict]
    per_instance: dict


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
        raise ValueError(f"projection = {projection!r}: allowed 'orthographic' or 'perspective'")
    return camera


def _part_table(template: Template, parts: str) -> tuple[np.ndarray, list[str]]:
    """(N,) part id of each vertex (1-based) and the part names, for ``eval.parts``."""
    if parts == "fine":
        return template.vertex_part.astype(np.int64), list(PART_NAMES)
    if parts == "coarse":
        return COARSE_OF_PART[template.vertex_part], list(SEGMENTS)
    raise ValueError(f"eval.parts = {parts!r}: allowed 'fine' or 'coarse'")


def evaluate(keypoints: str | Path, template: Template, reconstruct: Reconstruct, segmentation: np.ndarray | None,
             cfg: EvalParams, reports: str | Path | None = None, device: str = "cpu",
             progress: bool = True) -> EvalResult:
    """Reconstructs every test instance, measures it and (if ``reports``) writes the report folder.

    Args:
        keypoints: ``keypoints.zarr`` with ground truth. template: the template it was made from.
        reconstruct: the model, see :data:`Reconstruct`. segmentation: (N, M) learnt part weights or None.
        cfg: the ``eval`` params. reports: folder to (re)write atomically; None writes nothing.
    Raises:
        StoreError: no ground truth, or no test instance.
    """
    root = open_keypoints(keypoints, template_hash=template.hash)
    if "gt" not in root or not {"vertices", "camera"} <= set(root["gt"].array_keys()):
        raise StoreError(f"{keypoints}: no ground truth (gt/vertices, gt/camera): evaluation needs synthetic data")
    projection = str(root.attrs.get("projection", "orthographic"))
    split = root["split"][:]
    test = np.flatnonzero(split == 1)
    if len(test) == 0:
        raise StoreError(f"{keypoints}: no test instance (split == 1)")
    vertex_part, names = _part_table(template, cfg.parts)
    n_parts = len(names) + 1
    has_area = "visible_area" in root
    s2s_limit = cfg.s2s_instances
    keep = max(cfg.grid, cfg.meshes, cfg.uv_maps)

    sums = {k: part_sums(np.zeros((0, len(vertex_part))), vertex_part, np.zeros((0, len(vertex_part)), bool), n_parts)
            for k in ("pred", "flat")}
    vertex_sum = np.zeros(len(vertex_part))
    bins = np.linspace(0, cfg.histogram_max_mm, 81)
    hist = {"visible": np.zeros(len(bins) - 1), "invisible": np.zeros(len(bins) - 1)}
    per = {k: [] for k in ("row", "mpjpe", "flip", "flat", "re14", "visible_area", "flip_better")}
    s2s_values = []
    kept = Kept()

    for a in tqdm(range(0, len(test), cfg.batch_size), desc="evaluate", unit="batch",
                  disable=None if progress else True, leave=False):
        rows = test[a:a + cfg.batch_size]
        sel = slice(int(rows[0]), int(rows[-1]) + 1)  # read the span, keep the test rows
        local = rows - rows[0]
        xy = root["xy"][sel][local]
        visible = root["visible"][sel][local].astype(bool)
        true = root["gt/vertices"][sel][local].astype(np.float64)
        camera = camera_for_metres(root["gt/camera"][sel][local], true, projection)
        image = np.asarray(reconstruct(xy, visible, rows), np.float64)
        if image.shape != true.shape:
            raise ValueError(f"reconstruct returned {image.shape}, expected {true.shape}")
        pred = image_to_camera(image, camera)
        err = vertex_errors(pred, true)  # (B, N)
        err_flip = vertex_errors(flip_depth(pred), true)
        err_flat = vertex_errors(flat_reference(true), true)
        sums["pred"] = _add(sums["pred"], part_sums(err, vertex_part, visible, n_parts))
        sums["flat"] = _add(sums["flat"], part_sums(err_flat, vertex_part, visible, n_parts))
        vertex_sum += err.sum(axis=0)
        hist["visible"] += np.histogram(np.minimum(err[visible] * MM, bins[-1]), bins)[0]
        hist["invisible"] += np.histogram(np.minimum(err[~visible] * MM, bins[-1]), bins)[0]
        joints_pred = apply_regressor(template.joint_regressor, pred)
        joints_true = apply_regressor(template.joint_regressor, true)
        per["row"].append(rows)
        per["mpjpe"].append(err.mean(1))
        per["flip"].append(np.minimum(err.mean(1), err_flip.mean(1)))
        per["flip_better"].append(err_flip.mean(1) < err.mean(1))
        per["flat"].append(err_flat.mean(1))
        per["re14"].append(re14(joints_pred, joints_true))
        per["visible_area"].append(root["visible_area"][sel][local] if has_area else visible.mean(1))
        room = s2s_limit - len(s2s_values)
        if room > 0:
            s2s_values.extend(s2s(centre_depth(pred[:room]), centre_depth(true[:room]), template.faces, device=device))
        kept.add(keep, rows=rows, xy=xy, visible=visible, pred=centre_depth(pred), true=centre_depth(true),
                 mpjpe=err.mean(1))

    per = {k: np.concatenate(v) for k, v in per.items()}
    n = len(per["mpjpe"])
    p, f = sums["pred"], sums["flat"]
    n_vis = int(p.count_visible.sum())
    n_all = int(p.count_all.sum())
    metrics = {
        "test_instances": n,
        "mpjpe_mm": MM * float(p.sum_all.sum() / n_all),
        "mpjpe_visible_mm": _ratio(p.sum_visible.sum(), n_vis),
        "mpjpe_invisible_mm": _ratio(p.sum_all.sum() - p.sum_visible.sum(), n_all - n_vis),
        "re14_mm": MM * float(per["re14"].mean()),
        "flat_mpjpe_mm": MM * float(f.sum_all.sum() / n_all),
        "mpjpe_best_flip_mm": MM * float(per["flip"].mean()),
        "flip_better_share": float(per["flip_better"].mean()),
        "s2s_mm": MM * float(np.mean(s2s_values)) if s2s_values else None,
        "s2s_instances": len(s2s_values),
    }
    parts = []
    for k in range(1, n_parts):
        parts.append({
            "part": k, "name": names[k - 1], "vertices": int((vertex_part == k).sum()),
            "mpjpe_mm": _ratio(p.sum_all[k], p.count_all[k]),
            "visible_mm": _ratio(p.sum_visible[k], p.count_visible[k]),
            "invisible_mm": _ratio(p.sum_all[k] - p.sum_visible[k], p.count_all[k] - p.count_visible[k]),
            "flat_mm": _ratio(f.sum_all[k], f.count_all[k]),
        })
    per_instance = dict(per, s2s=np.asarray(s2s_values))
    log.info("%d test instances: MPJPE %.1f mm (visible %s, invisible %s), RE14 %.1f mm, flat reference %.1f mm, "
             "best of depth flip %.1f mm (flip better on %.0f%%)", n, metrics["mpjpe_mm"],
             _fmt(metrics["mpjpe_visible_mm"]), _fmt(metrics["mpjpe_invisible_mm"]), metrics["re14_mm"],
             metrics["flat_mpjpe_mm"], metrics["mpjpe_best_flip_mm"], 100 * metrics["flip_better_share"])
    if reports is not None:
        _write_reports(Path(reports), template, segmentation, cfg, kept, per_instance, hist, bins,
                       vertex_sum / n * MM, metrics)
    return EvalResult(metrics, parts, per_instance)


def _add(a, b):
    return type(a)(*(x + y for x, y in zip(a, b)))


def _ratio(total: float, count: int) -> float | None:
    """mm mean, None when nothing was counted (JSON null; a CSV cell left empty)."""
    return MM * float(total) / int(count) if count else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def write_metrics(result: EvalResult, metrics_path: str | Path, parts_path: str | Path) -> None:
    """Writes ``eval.json`` and ``eval_parts.csv`` atomically (values rounded to 0.001 mm)."""
    def rnd(v):
        return round(v, 4) if isinstance(v, float) else v

    with atomic_path(metrics_path) as tmp:
        tmp.write_text(json.dumps({k: rnd(result.metrics[k]) for k in METRIC_KEYS}, indent=2) + "\n")
    with atomic_path(parts_path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=PART_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in result.parts:
            w.writerow({k: ("" if row[k] is None else rnd(row[k])) for k in PART_COLUMNS})


def model_reconstructor(path: str | Path, template: Template, device: str = "cpu",
                        batch_size: int = 1024) -> tuple[Reconstruct, np.ndarray, dict]:
    """The trained model of a checkpoint as a :data:`Reconstruct` function.

    Returns:
        the function, the (N, M) float32 learnt part weights, and the checkpoint's info dict.
    Raises:
        ValueError: the checkpoint was trained on another template.
    """
    from pipeline.model import load_checkpoint, reconstruct

    model, info = load_checkpoint(path, device)
    if info.get("template_hash") not in (None, template.hash):
        raise ValueError(f"{path}: trained on template {info['template_hash']!r}, but the template is "
                         f"{template.hash!r}; rerun the pipeline (dvc repro)")
    if model.n_vertices != len(template.vertices):
        raise ValueError(f"{path}: model has {model.n_vertices} vertices, the template {len(template.vertices)}")

    def run(xy: np.ndarray, visible: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return reconstruct(model, xy, visible, batch_size=batch_size).numpy()

    segmentation = model.segmentation().detach().cpu().numpy().astype(np.float32)
    return run, segmentation, info


def _write_reports(folder: Path, template: Template, segmentation, cfg: EvalParams, kept: Kept, per: dict,
                   hist: dict, bins: np.ndarray, vertex_mm: np.ndarray, metrics: dict) -> None:
    """Writes the report folder atomically (see the module docstring)."""
    from pipeline import eval_plots

    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if cfg.grid:
            k = min(cfg.grid, len(kept.rows))
            save_figure(eval_plots.grid_figure(template, kept.xy[:k], kept.visible[:k], kept.pred[:k], kept.true[:k],
                                               kept.rows[:k], kept.mpjpe[:k]), tmp / "grid.png")
        if segmentation is not None:
            save_figure(eval_plots.segmentation_figure(template, segmentation), tmp / "segmentation.png")
        save_figure(eval_plots.errors_figure(template, per, hist, bins, vertex_mm, metrics), tmp / "errors.png")
        if cfg.meshes:
            (tmp / "meshes").mkdir()
            for i in range(min(cfg.meshes, len(kept.rows))):
                for name, v in (("pred", kept.pred[i]), ("true", kept.true[i])):
                    mesh = trimesh.Trimesh(np.asarray(v, np.float32), template.faces, process=False)
                    mesh.export(tmp / "meshes" / f"{i:03d}_row{kept.rows[i]}_{name}.ply")
        if cfg.uv_maps:
            k = min(cfg.uv_maps, len(kept.rows))
            layout = uv_layout(template.chart_uv, template.chart_faces, template.chart_part, template.chart_vertex,
                               cfg.uv_resolution, len(template.vertices))
            maps = {name: write_uv_maps(layout, np.stack(vs[:k]) - np.stack(vs[:k]).mean(1, keepdims=True))
                    for name, vs in (("pred", kept.pred), ("true", kept.true))}
            (tmp / "uv_maps").mkdir()
            for i in range(k):
                for name in ("pred", "true"):
                    eval_plots.save_position_png(atlas_image(maps[name][i]),
                                                 tmp / "uv_maps" / f"{i:03d}_row{kept.rows[i]}_{name}.png")
            save_figure(eval_plots.uv_maps_figure(maps["pred"], maps["true"], layout.covered, kept.rows[:k]),
                        tmp / "uv_maps.png")
    log.info("wrote reports to %s", folder)
