"""The 3D metrics of the ``evaluate`` stage (synthetic data with ground truth; keys in :mod:`pipeline.evaluate.loop`)."""

from __future__ import annotations

from collections.abc import Iterator
import logging

import numpy as np

from pipeline.core.config import EvalParams
from pipeline.core.errors import InputError
from pipeline.evaluate.batches import Batch, Kept
from pipeline.evaluate.tables import EvalResult, MM, add_sums, empty_sums, fmt, mean_or_none, part_head
from pipeline.template.joints import apply_regressor
from pipeline.evaluate.metrics import (AZIMUTH_CENTRES, azimuth_bins, azimuth_key, batch_vertex_errors, binned_share,
                              centre_depth, image_to_camera, part_sums, re14, s2s, same_facing, view_azimuth)
from pipeline.train.model import canonical_template
from pipeline.template.file import Template

log = logging.getLogger(__name__)


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


def measure_3d(root, batches: Iterator[Batch], template: Template, parts: tuple[np.ndarray, list[str]],
                cfg: EvalParams, keep: int, device: str) -> tuple[EvalResult, Kept, dict]:
    """The 3D metrics of the module docstring; returns the result, the kept instances and the
    :func:`pipeline.evaluate.figures.errors_figure` arguments."""
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

    sums = {k: empty_sums(vertex_part, n_parts) for k in ("pred", "flat")}
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
        sums["pred"] = add_sums(sums["pred"], part_sums(err, vertex_part, visible, n_parts))
        sums["flat"] = add_sums(sums["flat"], part_sums(err_flat, vertex_part, visible, n_parts))
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
        "mpjpe_visible_mm": mean_or_none(p.sum_visible.sum(), n_vis),
        "mpjpe_invisible_mm": mean_or_none(p.sum_all.sum() - p.sum_visible.sum(), n_all - n_vis),
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
    part_rows = [dict(part_head(k, vertex_part, names),
                      mpjpe_mm=mean_or_none(p.sum_all[k], p.count_all[k]),
                      visible_mm=mean_or_none(p.sum_visible[k], p.count_visible[k]),
                      invisible_mm=mean_or_none(p.sum_all[k] - p.sum_visible[k], p.count_all[k] - p.count_visible[k]),
                      flat_mm=mean_or_none(f.sum_all[k], f.count_all[k]))
                 for k in range(1, n_parts)]
    per_instance = dict(per, s2s=np.asarray(s2s_values))
    log.info("%d test instances: MPJPE %.1f mm (visible %s, invisible %s; image plane %.1f, depth %.1f), RE14 %.1f mm, "
             "flat reference %.1f mm, best of depth flip %.1f mm (flip better on %.0f%%), torso facing the right "
             "way on %.0f%%", n, metrics["mpjpe_mm"], fmt(metrics["mpjpe_visible_mm"]),
             fmt(metrics["mpjpe_invisible_mm"]), metrics["xy_mm"], metrics["z_mm"], metrics["re14_mm"],
             metrics["flat_mpjpe_mm"], metrics["mpjpe_best_flip_mm"], 100 * metrics["flip_better_share"],
             100 * metrics["torso_facing_share"])
    log.info("flip better by view azimuth: %s", ", ".join(
        f"{k} {fmt(None if v is None else 100 * v, 0)}% of {metrics['instances_by_azimuth'][k]}"
        for k, v in metrics["flip_share_by_azimuth"].items()))
    errors = {"per": per_instance, "hist": hist, "bins": bins, "vertex_mm": vertex_sum / n * MM, "summary": metrics}
    return EvalResult(metrics, part_rows, per_instance), kept, errors
