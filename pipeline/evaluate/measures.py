"""The 3D metrics of the ``evaluate`` stage (synthetic data with ground truth; keys in :mod:`pipeline.evaluate.loop`)."""

from __future__ import annotations

from collections.abc import Iterator
import logging
import numpy as np
from typing import NamedTuple

from pipeline.core.config import EvalParams
from pipeline.core.errors import InputError
from pipeline.evaluate.metrics import (AZIMUTH_CENTRES, VISIBLE_SHARE_KEYS, azimuth_bins, azimuth_key,
                                       batch_vertex_errors, binned_share, centre_depth, group_means, image_to_camera,
                                       part_sums, re14, s2s, same_facing, view_azimuth, visible_share_bins)
from pipeline.evaluate.results import (Batch, EvalResult, Kept, MM, PCT, add_sums, empty_sums, fmt, mean_or_none,
                                       part_head)
from pipeline.template.file import Template, apply_regressor, canonical_template

__all__ = ["LogHistogram", "MANTISSA_BITS", "MIN_EXPONENT", "MAX_EXPONENT", "N_BINS", "RELATIVE_BIN_WIDTH", "log_bins", "bin_lower_edges", "log_histogram", "empty_histogram", "add_histograms", "histogram_quantile", "histogram_median"]

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


def error_breakdown(mpjpe: np.ndarray, flat: np.ndarray, groups: np.ndarray, keys: tuple[str, ...]) -> dict:
    """The MPJPE of each group of instances (``by_pose_mode``, ``by_visible_share`` of eval.json): per key
    ``instances``, ``mpjpe_mm`` and ``flat_mpjpe_mm`` (the mean over the group's instances of their mean vertex
    errors: the MPJPE of the group alone) and ``ratio`` (the one over the other); null but ``instances`` for an
    empty group, ``ratio`` null for a flat reference of 0.

    Args:
        mpjpe, flat: (n,) float per-instance mean vertex error of the prediction and of the flat reference, metres.
        groups: (n,) int index into ``keys`` of each instance's group.
    """
    pred, counts = group_means(mpjpe, groups, len(keys))
    ref, _ = group_means(flat, groups, len(keys))
    out = {}
    for key, n, p, f in zip(keys, counts, pred, ref):
        out[key] = {"instances": int(n), "mpjpe_mm": MM * float(p) if n else None,
                    "flat_mpjpe_mm": MM * float(f) if n else None, "ratio": float(p / f) if n and f > 0 else None}
    return out


def _breakdown_line(title: str, table: dict) -> str:
    return f"MPJPE by {title}: " + ", ".join(
        f"{k} {fmt(r['mpjpe_mm'])} mm of {r['instances']} (flat {fmt(r['flat_mpjpe_mm'])} mm, "
        f"ratio {fmt(r['ratio'], 2)})"
        for k, r in table.items())


def measure_3d(root, batches: Iterator[Batch], template: Template, parts: tuple[np.ndarray, list[str]],
                cfg: EvalParams, keep: int, device: str,
                modes: tuple[str, ...] | None = None) -> tuple[EvalResult, Kept, dict]:
    """The 3D metrics of the module docstring; returns the result, the kept instances and the
    :func:`pipeline.evaluate.reports.errors_figure` arguments.

    ``modes``: the names of the pose modes ``gt/mode`` indexes (checked by :func:`pipeline.evaluate.loop.pose_modes`),
    for ``by_pose_mode``; None: the store has no pose modes, and eval.json no ``by_pose_mode``."""
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
                           "azimuth", "torso_facing") + (("mode",) if modes is not None else ())}
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
        if modes is not None:
            per["mode"].append(b.read("gt/mode"))
        room = s2s_limit - len(s2s_values)
        if room > 0:
            s2s_values.extend(s2s(centre_depth(pred[:room]), centre_depth(true[:room]), template.faces, device=device))
        kept.add(keep, rows=rows, xy=b.xy, visible=visible, pred=centre_depth(pred[:keep]),
                 true=centre_depth(true[:keep]), error=[f"MPJPE {MM * e:.0f} mm" for e in mpjpe[:keep]],
                 pixels=b.image[:keep, :, :2])
        del b, visible, true, pred, err, err_flip, err_flat, err_xy, err_z  # peak memory: one batch's arrays

    per = {k: np.concatenate(v) for k, v in per.items()}
    per["azimuth_bin"] = azimuth_bins(per["azimuth"])
    per["visible_bin"] = visible_share_bins(per["visible_area"])
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
    if modes is not None:
        metrics["by_pose_mode"] = error_breakdown(per["mpjpe"], per["flat"], per["mode"], modes)
    metrics["by_visible_share"] = error_breakdown(per["mpjpe"], per["flat"], per["visible_bin"], VISIBLE_SHARE_KEYS)
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
    if modes is not None:
        log.info("%s", _breakdown_line("pose mode", metrics["by_pose_mode"]))
    log.info("%s", _breakdown_line("visible share", metrics["by_visible_share"]))
    errors = {"per": per_instance, "hist": hist, "bins": bins, "vertex_mm": vertex_sum / n * MM, "summary": metrics}
    return EvalResult(metrics, part_rows, per_instance), kept, errors


# --- The 2D re-projection metrics of the ``evaluate`` stage (no ground truth; keys in :mod:`pipeline.evaluate.loop`). ---
# 
# The two medians are streamed (:func:`log_histogram` below): memory does not grow with the instances.


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
                 error=[f"re-projection {e:.1f} px" for e in mean["px"][:keep]], pixels=b.image[:keep, :, :2])
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


# --- Streaming statistics of the ``evaluate`` stage: quantiles of any number of non-negative values in a fixed ---
# amount of memory.
#
# A :class:`LogHistogram` counts values in log-linear bins (as an HDR histogram does): each power-of-two range
# ``[2**e, 2**(e + 1))`` for ``MIN_EXPONENT <= e < MAX_EXPONENT`` is cut into ``2**MANTISSA_BITS`` bins of equal
# width, so a bin is ``2**(e - MANTISSA_BITS)`` wide: at most ``RELATIVE_BIN_WIDTH`` = 2**-14 (6.1e-5) of any value
# in it. Below ``2**MIN_EXPONENT`` (9.5e-7; zeros included) is one underflow bin ``[0, 2**MIN_EXPONENT)``, from
# ``2**MAX_EXPONENT`` (1.07e9) one overflow bin; NaNs are counted apart. Besides its count each bin keeps the sum
# of its values' offsets from the bin's lower edge, so an order statistic is estimated by the mean of the values
# of its bin (:func:`histogram_quantile`). Error bound of the estimate of the ``k``-th smallest value ``v``:
#
# - exact (to a rounding) when its bin holds one distinct value (a constant error, zeros);
# - else ``|estimate - v| < 2**-14 * v`` (the bin's width), ``< 2**-20`` absolute in the underflow bin; no bound in
#   the overflow bin (values >= 1.07e9: pixel errors that large mean a broken model);
#
# and a quantile interpolated between two order statistics (numpy's default, the median of an even count) within
# the larger of their bounds. Measured on 41 M re-projection errors of ~8 px: the median 2.8e-5 px (3.5e-6) from
# the exact one. Memory: ``N_BINS`` = 50 * 2**14 + 2 = 819,202 bins of an int64 count and a float64
# sum, 13.1 MB, whatever the number of values (a batch's values need a few temporary arrays of their size).

MANTISSA_BITS = 14
MIN_EXPONENT = -20
MAX_EXPONENT = 30
_PER_OCTAVE = 1 << MANTISSA_BITS
N_BINS = (MAX_EXPONENT - MIN_EXPONENT) * _PER_OCTAVE + 2  # underflow, the log-linear bins, overflow
RELATIVE_BIN_WIDTH = 2.0 ** -MANTISSA_BITS


class LogHistogram(NamedTuple):
    """Counts of non-negative values in the bins of the module docstring (add two with :func:`add_histograms`)."""

    counts: np.ndarray   # (N_BINS,) int64 values in each bin
    offsets: np.ndarray  # (N_BINS,) float64 sum over the bin's values of (value - the bin's lower edge)
    nans: int            # NaN values (not in any bin)


def log_bins(values: np.ndarray) -> np.ndarray:
    """(P,) int64 bin of each of (P,) float non-negative, non-NaN ``values``: 0 below ``2**MIN_EXPONENT``,
    ``N_BINS - 1`` from ``2**MAX_EXPONENT`` (infinity included), else ``1 + (e - MIN_EXPONENT) * 2**MANTISSA_BITS
    + floor((v / 2**e - 1) * 2**MANTISSA_BITS)`` with ``e = floor(log2 v)`` (exact: no rounding at bin edges)."""
    v = np.asarray(values, np.float64)
    inside = np.clip(v, 2.0 ** MIN_EXPONENT, np.nextafter(2.0 ** MAX_EXPONENT, 0))  # normal, finite
    mantissa, exponent = np.frexp(inside)  # inside = mantissa * 2**exponent, mantissa in [0.5, 1): e = exponent - 1
    fine = np.floor((2.0 * mantissa - 1.0) * _PER_OCTAVE).astype(np.int64)  # exact: a power-of-two scaling
    index = 1 + (exponent.astype(np.int64) - 1 - MIN_EXPONENT) * _PER_OCTAVE + fine
    index[v < 2.0 ** MIN_EXPONENT] = 0
    index[v >= 2.0 ** MAX_EXPONENT] = N_BINS - 1
    return index


def bin_lower_edges(index: np.ndarray) -> np.ndarray:
    """(P,) float64 lower edge of each of (P,) int bins (0 for the underflow bin, ``2**MAX_EXPONENT`` for the
    overflow bin); a log-linear bin's upper edge is the next bin's lower edge."""
    index = np.asarray(index, np.int64)
    octave, fine = np.divmod(np.clip(index, 1, N_BINS - 1) - 1, _PER_OCTAVE)
    lower = np.ldexp(1.0 + fine / _PER_OCTAVE, (octave + MIN_EXPONENT).astype(np.int32))
    return np.where(index == 0, 0.0, lower)


def empty_histogram() -> LogHistogram:
    """A :class:`LogHistogram` of no value."""
    return LogHistogram(np.zeros(N_BINS, np.int64), np.zeros(N_BINS), 0)


def log_histogram(values: np.ndarray) -> LogHistogram:
    """The :class:`LogHistogram` of (P,) float values (any shape, flattened).

    Raises:
        InputError: a negative value.
    """
    v = np.asarray(values, np.float64).ravel()
    nan = np.isnan(v)
    if nan.any():
        v = v[~nan]
    if (v < 0).any():
        raise InputError(f"a log histogram counts non-negative values, got {v.min()}")
    index = log_bins(v)
    with np.errstate(invalid="ignore"):  # infinity - the overflow edge
        offset = v - bin_lower_edges(index)
    return LogHistogram(np.bincount(index, minlength=N_BINS).astype(np.int64),
                        np.bincount(index, offset, minlength=N_BINS), int(nan.sum()))


def add_histograms(a: LogHistogram, b: LogHistogram) -> LogHistogram:
    """The histogram of the values of both."""
    return LogHistogram(a.counts + b.counts, a.offsets + b.offsets, a.nans + b.nans)


def histogram_quantile(h: LogHistogram, q: float) -> float | None:
    """The ``q`` quantile (0..1) of the histogram's values, interpolated linearly between the two nearest order
    statistics as :func:`numpy.quantile` does by default, each estimated by the mean of its bin's values (error
    bound: module docstring). NaN when a value was NaN (as numpy), None when there is no value."""
    if not 0 <= q <= 1:
        raise InputError(f"quantile q must lie in [0, 1], got {q}")
    if h.nans:
        return float("nan")
    cumulative = np.cumsum(h.counts)
    total = int(cumulative[-1])
    if total == 0:
        return None
    position = q * (total - 1)
    ranks = np.array([np.floor(position), np.ceil(position)], np.int64)  # 0-based order statistics
    bins = np.searchsorted(cumulative, ranks, side="right")
    estimate = bin_lower_edges(bins) + h.offsets[bins] / h.counts[bins]
    if ranks[0] == ranks[1]:
        return float(estimate[0])
    return float(estimate[0] + (position - ranks[0]) * (estimate[1] - estimate[0]))


def histogram_median(h: LogHistogram) -> float | None:
    """The median of the histogram's values (:func:`histogram_quantile` at 0.5: the mean of the two middle
    values of an even count)."""
    return histogram_quantile(h, 0.5)
