"""Repairing DensePose output into clean IUV images (METHOD.md §2).

Per instance, on an ``S x S`` crop:

1. **Missing values** (label 255 or outside 0..24, or a part pixel whose U or V is NaN or outside
   [0, 1]) inside the person take the part of their nearest valid pixel — labels are categories,
   never averaged — and then U, V by OpenCV inpainting confined to their own part.
2. **Holes** of the foreground up to ``max_hole_area`` pixels are filled (``scipy.ndimage.binary_fill_holes``;
   larger enclosed gaps, such as between an arm and the torso, are real background) and repaired as in
   1; connected components smaller than ``min_component_area`` pixels are dropped.
3. **Smoothing** (optional): U, V blurred within each part only (normalised convolution), never
   across a part border.
4. **Encoding**, Detectron2's: ``(I, floor(clamp(255 U)), floor(clamp(255 V)))`` uint8, with ``I`` the
   raw part index 0..24 (:func:`pipeline.densepose.store.encode_iuv`).

CSE output gets the same mask repair, and missing embeddings the value of the nearest valid pixel.
Both repairs also return which pixels they made (``filled``): the keypoints' confidence.

Everything here takes and returns arrays; the stage does the I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
from scipy import ndimage

from pipeline.iuv.store import COUNT_NAMES
from pipeline.template.file import N_LABELS, decode_uv

__all__ = [
    "RepairOptions", "RepairCounts", "missing_pixels", "repair_chart",
    "repair_cse", "iuv_quality", "quality_sums", "quality_from_sums", "COUNT_NAMES",
]



@dataclass(frozen=True)
class RepairOptions:
    """What :func:`repair_chart` and :func:`repair_cse` do; each step has its own switch."""

    fill_missing: bool = True
    fill_holes: bool = True
    min_component_area: int = 0  # pixels; 0 keeps every component
    max_hole_area: int = 0  # pixels; holes up to this size are filled, 0 fills every hole
    smooth_sigma: float = 0.0  # pixels; 0 turns smoothing off
    inpaint: str = "telea"  # telea | ns
    inpaint_radius: float = 3.0

    @classmethod
    def from_params(cls, params) -> "RepairOptions":
        """The options of the ``iuv`` params section (:class:`pipeline.core.config.IuvParams`), same names."""
        return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})


class RepairCounts(NamedTuple):
    """What was done to one instance (pixels, except ``components_dropped``)."""

    pixels_filled: int
    holes_filled: int
    components_dropped: int
    pixels_dropped: int


def missing_pixels(labels: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels lack a usable label, and which part pixels lack a usable U, V.

    Args:
        labels: (S, S) uint8. uv: (2, S, S) float.
    Returns:
        bad_label: (S, S) bool, label outside 0..24. bad_uv: (S, S) bool, label in 1..24 but U or V
        NaN or outside [0, 1].
    """
    bad_label = labels >= N_LABELS
    with np.errstate(invalid="ignore"):
        uv_ok = np.all(np.isfinite(uv) & (uv >= 0) & (uv <= 1), axis=0)
    bad_uv = (labels > 0) & ~bad_label & ~uv_ok
    return bad_label, bad_uv


def _clean_mask(fg: np.ndarray, opts: RepairOptions) -> tuple[np.ndarray, int, int, int]:
    """Fills holes and drops small components. Returns mask, hole pixels, components and pixels dropped."""
    holes = 0
    if opts.fill_holes:
        hole = ndimage.binary_fill_holes(fg) & ~fg
        if opts.max_hole_area > 0 and hole.any():  # large enclosed gaps (between an arm and the torso) are real
            lab, n = ndimage.label(hole)
            sizes = np.bincount(lab.ravel(), minlength=n + 1)
            hole &= (sizes <= opts.max_hole_area)[lab]
        holes = int(hole.sum())
        fg = fg | hole
    comps = dropped = 0
    if opts.min_component_area > 0 and fg.any():
        lab, n = ndimage.label(fg)  # 4-connectivity
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        small = np.flatnonzero(sizes < opts.min_component_area)
        small = small[small > 0]
        if len(small):
            drop = np.isin(lab, small)
            comps, dropped = len(small), int(drop.sum())
            fg = fg & ~drop
    return fg, holes, comps, dropped


def _nearest_valid(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the nearest valid pixel of every pixel (Euclidean)."""
    _, (r, c) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return r, c


def _inpaint_part(values: np.ndarray, part: np.ndarray, known: np.ndarray, opts: RepairOptions) -> np.ndarray:
    """Inpaints ``values`` (2, S, S) float32 at ``part & ~known`` from known pixels of the part only.

    Works in a window around the pixels to fill. Window pixels outside the part take the value of
    their nearest known pixel of the part, so OpenCV sees only the part's own values around the
    hole and nothing leaks across a part border; only the pixels to fill are inpainted.
    """
    fill = part & ~known
    rows, cols = np.nonzero(fill)
    pad = int(np.ceil(opts.inpaint_radius)) + 2
    size = part.shape
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, size[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, size[1])
    kn = known[r0:r1, c0:c1]
    if not kn.any():  # no known pixel of the part near the hole: use the whole part's extent
        rows, cols = np.nonzero(part)
        r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, size[0])
        c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, size[1])
        kn = known[r0:r1, c0:c1]
    fw = fill[r0:r1, c0:c1]
    _, (nr, nc) = ndimage.distance_transform_edt(~kn, return_indices=True)
    flag = cv2.INPAINT_TELEA if opts.inpaint == "telea" else cv2.INPAINT_NS
    out = values.copy()
    for k in range(values.shape[0]):
        win = values[k, r0:r1, c0:c1]
        ext = win[nr, nc]  # every pixel: its nearest known part value
        # OpenCV's float32 inpainting is unreliable; 16-bit keeps U, V to 1/65535, far finer than IUV's 1/255
        img = np.round(np.clip(ext, 0, 1) * 65535).astype(np.uint16)
        res = cv2.inpaint(img, fw.astype(np.uint8), opts.inpaint_radius, flag)
        out[k, r0:r1, c0:c1][fw] = res[fw].astype(np.float32) / 65535
    return out


def _smooth_within_parts(labels: np.ndarray, uv: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian blur of U, V inside each part: no value crosses a part border."""
    out = uv.copy()
    for p in np.unique(labels):
        if p == 0:
            continue
        m = (labels == p).astype(np.float32)
        w = cv2.GaussianBlur(m, (0, 0), sigma)
        for k in range(2):
            s = cv2.GaussianBlur(np.where(m > 0, uv[k], 0).astype(np.float32), (0, 0), sigma)
            out[k][m > 0] = (s / np.maximum(w, 1e-6))[m > 0]
    return out


def repair_chart(labels: np.ndarray, uv: np.ndarray, opts: RepairOptions = RepairOptions()
                 ) -> tuple[np.ndarray, np.ndarray, RepairCounts, np.ndarray]:
    """Repairs one chart-model instance.

    Args:
        labels: (S, S) uint8 part 0..24, anything else missing (the store uses 255).
        uv: (2, S, S) float U, V; NaN or outside [0, 1] is missing.
    Returns:
        labels: (S, S) uint8 0..24. uv: (2, S, S) float32, 0 on the background. counts.
        filled: (S, S) bool foreground pixels whose label or U, V the repair made (a neighbour's label,
        inpainted U, V; filled holes included), not the input's; its sum is ``counts.pixels_filled``
        (but for a hole inside a dropped speck). Smoothing alone does not count.
    """
    labels = np.asarray(labels)
    uv = np.asarray(uv, dtype=np.float32)
    bad_label, bad_uv = missing_pixels(labels, uv)
    fg0 = labels > 0  # the person, missing pixels included
    fg, holes, comps, dropped = _clean_mask(fg0, opts)
    valid_label = fg0 & ~bad_label & fg
    if not opts.fill_missing:  # missing pixels are dropped rather than repaired
        keep = fg & valid_label & ~bad_uv
        dropped += int((fg & ~keep).sum())
        out_l = np.where(keep, labels, 0).astype(np.uint8)
        out_uv = np.where(keep[None], np.nan_to_num(uv), 0).astype(np.float32)
        if opts.smooth_sigma > 0:
            out_uv = _smooth_within_parts(out_l, out_uv, opts.smooth_sigma)
        return out_l, out_uv, RepairCounts(0, 0, comps, dropped), np.zeros(labels.shape, bool)

    out_l = np.where(valid_label, labels, 0).astype(np.uint8)
    need_label = fg & ~valid_label
    filled = int((fg0 & fg & (bad_label | bad_uv)).sum()) + holes
    if need_label.any():
        if valid_label.any():
            r, c = _nearest_valid(valid_label)
            out_l[need_label] = labels[r[need_label], c[need_label]]
        else:  # nothing valid to copy from: the instance is empty
            dropped += int(need_label.sum())
            fg = np.zeros_like(fg)
            filled = 0
    known = (out_l > 0) & valid_label & ~bad_uv
    out_uv = np.where(known[None], uv, 0).astype(np.float32)
    for p in np.unique(out_l[fg & ~known]):
        part = out_l == p
        if not (part & known).any():  # no U, V anywhere in this part: cannot inpaint, drop it
            dropped += int(part.sum())
            filled -= int((part & ~known).sum())
            out_l[part] = 0
            continue
        out_uv = _inpaint_part(out_uv, part, known & part, opts)
    if opts.smooth_sigma > 0:
        out_uv = _smooth_within_parts(out_l, out_uv, opts.smooth_sigma)
    out_uv = np.clip(np.where((out_l > 0)[None], out_uv, 0), 0, 1).astype(np.float32)
    return out_l, out_uv, RepairCounts(max(filled, 0), holes, comps, dropped), (out_l > 0) & ~known


def repair_cse(mask: np.ndarray, embedding: np.ndarray, opts: RepairOptions = RepairOptions()
               ) -> tuple[np.ndarray, np.ndarray, RepairCounts, np.ndarray]:
    """Repairs one CSE instance: mask holes and specks, missing (NaN) embeddings from the nearest
    valid pixel.

    Args:
        mask: (S, S) bool foreground. embedding: (D, S, S) float; NaN is missing.
    Returns:
        mask: (S, S) bool. embedding: (D, S, S) float32, 0 on the background. counts.
        filled: (S, S) bool foreground pixels whose embedding was copied from the nearest valid pixel.
    """
    emb = np.asarray(embedding, dtype=np.float32)
    fg0 = np.asarray(mask, bool)
    fg, holes, comps, dropped = _clean_mask(fg0, opts)
    valid = fg0 & np.all(np.isfinite(emb), axis=0)
    need = fg & ~valid
    filled = int(need.sum())
    out = np.where(valid[None], emb, 0).astype(np.float32)
    if need.any():
        if valid.any() and opts.fill_missing:
            r, c = _nearest_valid(valid)
            out[:, need] = emb[:, r[need], c[need]]
        else:
            dropped += int(need.sum())
            fg = fg & valid
            filled = 0
    out[:, ~fg] = 0
    return fg, out, RepairCounts(filled, holes, comps, dropped), fg & ~valid


QUALITY_SUMS = ("foreground", "right_part", "uv_error_sum", "usable", "usable_error_sum", "intersection", "union")


def quality_sums(labels: np.ndarray, uv: np.ndarray, gt_iuv: np.ndarray) -> np.ndarray:
    """(7,) float64 sums (named in :data:`QUALITY_SUMS`) behind :func:`iuv_quality`, to add up over chunks.

    Args:
        labels: (n, S, S) predicted parts (anything outside 1..24 counts as wrong).
        uv: (n, 2, S, S) predicted U, V (NaN allowed). gt_iuv: (n, S, S, 3) uint8 exact IUV.
    """
    gt_l = gt_iuv[..., 0]
    fg = gt_l > 0
    pred_fg = (labels > 0) & (labels < N_LABELS)
    # work on the true foreground's pixels only: (P,) arrays
    right = labels[fg] == gt_l[fg]
    uv_fg = np.moveaxis(uv, 1, -1)[fg].astype(np.float32)  # (P, 2)
    gt_uv = decode_uv(gt_iuv[fg][:, 1:])  # (P, 2)
    with np.errstate(invalid="ignore"):
        err = np.abs(uv_fg - gt_uv).mean(axis=1)
    usable = right & np.isfinite(err)
    per_pixel = np.where(usable, err, 1.0)
    return np.array([fg.sum(), right.sum(), per_pixel.sum(), usable.sum(), err[usable].sum(),
                     (pred_fg & fg).sum(), (pred_fg | fg).sum()], dtype=np.float64)


def quality_from_sums(sums: np.ndarray) -> dict:
    """The measures of :func:`iuv_quality` from (summed) :func:`quality_sums`."""
    fg, right, err, usable, uerr, inter, union = sums
    return {
        "part_accuracy": float(right / max(fg, 1)),
        "uv_error": float(err / fg) if fg else 0.0,
        "uv_error_right_part": float(uerr / usable) if usable else 0.0,
        "foreground_iou": float(inter / max(union, 1)),
    }


def iuv_quality(labels: np.ndarray, uv: np.ndarray, gt_iuv: np.ndarray) -> dict:
    """Part accuracy and U/V error against the exact IUV, over the true foreground.

    Args:
        labels: (n, S, S) predicted parts (anything outside 1..24 counts as wrong).
        uv: (n, 2, S, S) predicted U, V (NaN allowed). gt_iuv: (n, S, S, 3) uint8 exact IUV.
    Returns:
        ``part_accuracy``: share of true-foreground pixels with the right part;
        ``uv_error``: mean over true-foreground pixels of ``(|ΔU| + |ΔV|) / 2`` where the part is
        right, a pixel with a wrong or missing part or U/V counting as 1 (no usable correspondence);
        ``uv_error_right_part``: the same mean over right-part pixels with a valid U/V only;
        ``foreground_iou``: IoU of predicted and true foreground.
    """
    return quality_from_sums(quality_sums(labels, uv, gt_iuv))
