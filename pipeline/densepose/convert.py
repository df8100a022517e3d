"""DensePose predictor outputs and results -> the store's ``S x S`` crops (METHOD.md §2).

Detectron2's DensePose head emits, per detected box, heatmaps on a fixed ``112 x 112`` grid that
covers the box (``n`` boxes, ``D`` embedding dims; size letters: legend of :mod:`pipeline`), with 25
fine labels (background included) and 2 coarse labels (background, foreground; more for models
trained with coarse parts):

- chart models (``DensePoseChartPredictorOutput``): ``fine_segm``, ``u``, ``v`` (n, 25, 112, 112)
  float and ``coarse_segm`` (n, 2, 112, 112) float -- logits and raw U, V;
- CSE models (``DensePoseEmbeddingPredictorOutput``): ``embedding`` (n, D, 112, 112) and
  ``coarse_segm`` (n, 2, 112, 112).

Detectron2's converters (``densepose/converters/segm_to_mask.py``,
``chart_output_to_chart_result.py``, ``modeling/cse/utils.py``) resize the *logits* and U, V
bilinearly with ``align_corners=False`` to the integer box size ``(int(h), int(w))``, take
``labels = argmax(fine) * (argmax(coarse) > 0)`` and gather U, V at the label, leaving 0 where the
label is 0. :func:`chart_output_to_crops` and :func:`cse_output_to_crops` do exactly the same onto
any output size; the store uses a fixed ``S x S`` grid covering the float box, so that crop pixel
``(r, c)`` has image centre ``(x0 + (c + 0.5) w / S, y0 + (r + 0.5) h / S)``.

A box clipped to its image (:func:`pipeline.densepose.door.door_boxes`) keeps a *window* ``(u0, v0, u1, v1)``
of the original box's unit square; both converters then sample the heatmaps over that window only
(the same bilinear, ``align_corners=False`` sampling, at the clipped box's grid points, through
``grid_sample``), so that the crop covers the clipped box. Unclipped instances (window
``(0, 0, 1, 1)``) go through ``F.interpolate`` exactly as before. A box-size result is cut to the
clipped box's integer pixels by :func:`cut_result_to_box`.

Conventions of the crops (and of ``data/densepose.zarr``): ``labels`` 0 = background, 1..24 the
parts, 255 (:data:`pipeline.densepose.store.MISSING_LABEL`) = missing; ``uv`` is meaningful only
where ``labels`` is 1..24; it is 0 on background (Detectron2's own convention, so quantised IUV
images match Detectron2's byte for byte) and NaN where the label is missing.

Results that were already resampled to the box size -- ``DensePoseChartResult`` from
``apply_net.py dump``, or a decoded IUV image -- are brought onto the ``S x S`` grid by
:func:`chart_result_to_crop`: labels by nearest neighbour (``nearest-exact``: source pixel
``floor((r + 0.5) h / S)``), U, V by *part-aware* bilinear interpolation: the usual bilinear
(``align_corners=False``) weights, restricted to the source pixels that carry the same label as the
target pixel and renormalised. Plain bilinear would average U, V of neighbouring parts (whose charts
are unrelated) and of the background's zeros; inside one part the two are identical.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.core.errors import InputError
from pipeline.template.file import MISSING_LABEL, N_LABELS

__all__ = ["photo_crops", "ChartCrops", "CseCrops", "int_box_xywh", "chart_output_to_crops",
           "cse_output_to_crops", "chart_result_to_crop", "chart_results_to_crops", "resize_chart",
           "resize_window", "cut_result_to_box"]



class ChartCrops(NamedTuple):
    """Chart-model crops.

    labels: (n, H, W) uint8, 0 background, 1..24 parts, 255 missing.
    uv: (n, 2, H, W) float32 in [0, 1]; 0 on background, NaN where missing.
    """

    labels: torch.Tensor
    uv: torch.Tensor


class CseCrops(NamedTuple):
    """CSE-model crops.

    embedding: (n, D, H, W) float32, not normalised.  mask: (n, H, W) bool foreground.
    """

    embedding: torch.Tensor
    mask: torch.Tensor


def photo_crops(photo, boxes, crop: int):
    """(k, S, S, 3) uint8 the photo under each box, on the crops' grid: crop pixel (r, c) is the photo's point
    ``(x0 + (c + 0.5) w / S, y0 + (r + 0.5) h / S)`` (bilinear; outside the photo black), as the IUV crops.

    Args:
        photo: (H, W, 3) uint8 RGB. boxes: (k, 4) float x0, y0, x1, y1 photo pixels. crop: S.
    """
    import cv2

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), crop, crop, 3), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        sx, sy = (x1 - x0) / crop, (y1 - y0) / crop
        m = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])
        out[i] = cv2.warpAffine(photo, m, (crop, crop), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise InputError(f"output size must be positive, got {(h, w)}")
    return int(h), int(w)


def int_box_xywh(box_xyxy) -> tuple[int, int, int, int]:
    """Detectron2's integer box (``converters/base.py: make_int_box`` after XYXY -> XYWH).

    ``x, y`` truncated towards zero, ``w = int(x1 - x0)``, ``h = int(y1 - y0)``, each at least 1
    (its converters resample to ``max(int(w), 1)``). A result of size ``(h, w)`` covers image
    pixels ``[y, y + h) x [x, x + w)``.
    """
    x0, y0, x1, y1 = (float(t) for t in box_xyxy)
    return int(x0), int(y0), max(int(x1 - x0), 1), max(int(y1 - y0), 1)


def cut_result_to_box(labels: torch.Tensor, uv: torch.Tensor, box, clipped) -> tuple[torch.Tensor, torch.Tensor]:
    """A box-size chart result cut to a box inside its own.

    Args:
        labels: (h, w) and uv: (2, h, w), covering the integer pixels of ``box`` (x0, y0, x1, y1).
        clipped: (4,) a box inside ``box`` (:func:`pipeline.densepose.door.clip_boxes`).
    Returns:
        labels (h', w') and uv (2, h', w') (views), the pixels of ``clipped``'s integer box, at least 1 x 1.
    """
    x, y, _, _ = int_box_xywh(box)
    cx, cy, cw, ch = int_box_xywh(clipped)
    h, w = labels.shape
    r0, c0 = min(max(cy - y, 0), h - 1), min(max(cx - x, 0), w - 1)
    rows, cols = slice(r0, min(r0 + ch, h)), slice(c0, min(c0 + cw, w))
    return labels[rows, cols], uv[:, rows, cols]


def resize_window(t: torch.Tensor, window: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resampling of a window of each map onto ``size``.

    Args:
        t: (n, channels, h, w) float.  window: (n, 4) (u0, v0, u1, v1) in each map's unit square; with
            ``(0, 0, 1, 1)`` this is ``F.interpolate(t, size, mode="bilinear", align_corners=False)``
            (up to rounding).  size: S or (H, W).
    Returns:
        (n, channels, H, W) float32: output pixel ``(r, c)`` samples the map at
        ``(u0 + (c + 0.5) (u1 - u0) / W, v0 + (r + 0.5) (v1 - v0) / H)``, edges clamped.
    """
    H, W = _size(size)
    win = torch.as_tensor(window, dtype=torch.float64, device=t.device).reshape(-1, 4)

    def axis(lo, hi, n):  # (n_maps, n) grid_sample coordinates: -1 .. 1 spans the map
        f = (torch.arange(n, dtype=torch.float64, device=t.device) + 0.5) / n
        return 2 * (lo[:, None] + f[None] * (hi - lo)[:, None]) - 1

    gx, gy = axis(win[:, 0], win[:, 2], W), axis(win[:, 1], win[:, 3], H)  # (n, W), (n, H)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (n, H, W, 2) x, y
    out = F.grid_sample(t.double(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.float()


def _resize(t: torch.Tensor, hw: tuple[int, int], window: torch.Tensor | None) -> torch.Tensor:
    """(n, channels, h, w) -> (n, channels, H, W) float32: ``F.interpolate`` (bilinear, ``align_corners=False``), and
    :func:`resize_window` for the rows of ``window`` (n, 4) that are not the whole map."""
    out = F.interpolate(t.float(), hw, mode="bilinear", align_corners=False)
    if window is not None:
        win = torch.as_tensor(window, dtype=torch.float64, device=t.device).reshape(-1, 4)
        part = (win != torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64, device=t.device)).any(dim=1)
        if bool(part.any()):
            out[part] = resize_window(t[part], win[part], hw)
    return out


def chart_output_to_crops(fine_segm: torch.Tensor, coarse_segm: torch.Tensor, u: torch.Tensor,
                          v: torch.Tensor, size: int | tuple[int, int], window=None) -> ChartCrops:
    """Chart predictor output -> labels and U, V on a grid of ``size`` covering each box.

    Args:
        fine_segm, u, v: (n, 25, h, w) float (Detectron2: h = w = 112).
        coarse_segm: (n, 2, h, w) float (more than 2 channels for models trained with coarse parts).
        size: S or (H, W); with ``(int(box_h), int(box_w))`` this is Detectron2's own result.
        window: None, or (n, 4) the part of each box its crop covers (a box clipped to its image;
            see the module docstring).

    Returns:
        :class:`ChartCrops` with labels (n, H, W) uint8 and uv (n, 2, H, W) float32.
    """
    if not (fine_segm.shape == u.shape == v.shape and fine_segm.dim() == 4):
        raise InputError(f"fine_segm, u, v must share a shape (n, 25, h, w), got "
                         f"{tuple(fine_segm.shape)}, {tuple(u.shape)}, {tuple(v.shape)}")
    if coarse_segm.dim() != 4 or coarse_segm.shape[0] != fine_segm.shape[0] \
            or coarse_segm.shape[2:] != fine_segm.shape[2:]:
        raise InputError(f"coarse_segm of shape {tuple(coarse_segm.shape)} does not match "
                         f"fine_segm {tuple(fine_segm.shape)}")
    hw = _size(size)
    if fine_segm.shape[0] == 0:
        return ChartCrops(torch.zeros((0, *hw), dtype=torch.uint8, device=fine_segm.device),
                          torch.zeros((0, 2, *hw), dtype=torch.float32, device=fine_segm.device))

    def resize(t):
        return _resize(t, hw, window)

    foreground = resize(coarse_segm).argmax(dim=1) > 0  # (n, H, W)
    labels = resize(fine_segm).argmax(dim=1) * foreground  # (n, H, W) long
    index = labels.unsqueeze(1)  # (n, 1, H, W)
    uv = torch.cat([resize(u).gather(1, index), resize(v).gather(1, index)], dim=1)  # (n, 2, H, W)
    uv = uv * (labels > 0).unsqueeze(1)  # background: 0, as Detectron2 leaves it
    return ChartCrops(labels.to(torch.uint8), uv)


def cse_output_to_crops(embedding: torch.Tensor, coarse_segm: torch.Tensor,
                        size: int | tuple[int, int], window=None) -> CseCrops:
    """CSE predictor output -> embedding and foreground mask on a grid of ``size`` per box.

    As ``densepose/modeling/cse/utils.py: get_closest_vertices_mask_from_ES``: bilinear resize
    (``align_corners=False``) of both, mask = ``argmax(coarse) > 0``. Embeddings stay unnormalised.

    Args:
        embedding: (n, D, h, w) float.  coarse_segm: (n, 2, h, w) float (or more channels).  size: S or (H, W).
        window: None, or (n, 4) the part of each box its crop covers (see :func:`chart_output_to_crops`).
    """
    if embedding.dim() != 4 or coarse_segm.dim() != 4 or embedding.shape[0] != coarse_segm.shape[0] \
            or embedding.shape[2:] != coarse_segm.shape[2:]:
        raise InputError(f"embedding {tuple(embedding.shape)} and coarse_segm {tuple(coarse_segm.shape)} "
                         "must be (n, D, h, w) and (n, c, h, w) with c >= 2")
    hw = _size(size)
    if embedding.shape[0] == 0:
        return CseCrops(torch.zeros((0, embedding.shape[1], *hw), device=embedding.device),
                        torch.zeros((0, *hw), dtype=torch.bool, device=embedding.device))
    e = _resize(embedding, hw, window)
    mask = _resize(coarse_segm, hw, window).argmax(dim=1) > 0
    return CseCrops(e, mask)


def _source_index(n_out: int, n_in: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear (align_corners=False) and nearest-exact source indices along one axis, as torch.

    Returns (i0, i1, lam, nearest): neighbours, weight of i1, and the nearest-exact index; (n_out,).
    """
    scale = n_in / n_out
    dst = torch.arange(n_out, dtype=torch.float64, device=device)
    src = ((dst + 0.5) * scale - 0.5).clamp(min=0.0)  # torch clamps at 0 for linear modes
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    lam = (src - i0).float()
    nearest = ((dst + 0.5) * scale).floor().long().clamp(max=n_in - 1)
    return i0, i1, lam, nearest


def resize_chart(labels: torch.Tensor, uv: torch.Tensor, size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resamples one chart result to ``size``: nearest labels, part-aware bilinear U, V.

    Args:
        labels: (h, w) integer; values outside 0..24 are missing.
        uv: (2, h, w) float; non-finite values are missing.
        size: S or (H, W).

    Returns:
        labels (H, W) uint8 (255 missing) and uv (2, H, W) float32 (0 on background, NaN missing;
        NaN also where no same-label neighbour has a finite U, V).
    """
    if labels.dim() != 2 or uv.shape != (2, *labels.shape):
        raise InputError(f"expected labels (h, w) and uv (2, h, w), got {tuple(labels.shape)} and {tuple(uv.shape)}")
    H, W = _size(size)
    h, w = labels.shape
    lab = labels.long()
    lab = torch.where((lab >= 0) & (lab < N_LABELS), lab, torch.full_like(lab, MISSING_LABEL))
    uv = uv.float()
    y0, y1, ly, yn = _source_index(H, h, labels.device)
    x0, x1, lx, xn = _source_index(W, w, labels.device)
    out_lab = lab[yn][:, xn]  # (H, W)
    num = torch.zeros((2, H, W), dtype=torch.float32, device=labels.device)
    den = torch.zeros((H, W), dtype=torch.float32, device=labels.device)
    for yi, wy in ((y0, 1 - ly), (y1, ly)):
        for xi, wx in ((x0, 1 - lx), (x1, lx)):
            wgt = wy[:, None] * wx[None, :]  # (H, W)
            val = uv[:, yi][:, :, xi]  # (2, H, W)
            ok = (lab[yi][:, xi] == out_lab) & torch.isfinite(val).all(dim=0)
            wgt = wgt * ok
            num += wgt * torch.where(ok, val, torch.zeros_like(val))
            den += wgt
    out_uv = num / den.clamp(min=1e-12)
    out_uv = torch.where(den > 0, out_uv, torch.full_like(out_uv, float("nan")))
    out_uv = torch.where(out_lab == 0, torch.zeros_like(out_uv), out_uv)
    out_uv = torch.where(out_lab == MISSING_LABEL, torch.full_like(out_uv, float("nan")), out_uv)
    return out_lab.to(torch.uint8), out_uv


def chart_result_to_crop(labels: torch.Tensor, uv: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A box-sized chart result (``DensePoseChartResult``: labels (h, w), uv (2, h, w) at
    ``(int(box_h), int(box_w))``) -> labels (S, S) uint8 and uv (2, S, S) float32; see
    :func:`resize_chart`."""
    return resize_chart(labels, uv, crop)


def chart_results_to_crops(results: list[tuple[torch.Tensor, torch.Tensor]], crop: int) -> ChartCrops:
    """Several box-sized ``(labels, uv)`` results -> :class:`ChartCrops` (n, S, S) / (n, 2, S, S)."""
    if not results:
        return ChartCrops(torch.zeros((0, crop, crop), dtype=torch.uint8), torch.zeros((0, 2, crop, crop)))
    out = [chart_result_to_crop(lab.cpu(), uv.cpu(), crop) for lab, uv in results]
    return ChartCrops(torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out]))
