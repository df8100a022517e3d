"""From dense correspondence to template-vertex keypoints (METHOD.md §3; DP3D §3.1, supp. B).

Every foreground pixel ``j`` (centre ``p_j`` in image pixels) is assigned a template vertex ``i(j)``:

- IUV: the vertex of the chart point of part ``I_j`` nearest to ``(U_j, V_j)``. IUV is quantised to
  256 levels, so :func:`iuv_lookup_table` precomputes the answer for every ``(I, U, V)`` once
  (``(25, 256, 256)`` -> vertex) and the per-pixel work is one gather.
- CSE: the vertex with the nearest embedding, ``argmin_i |e_j - E_i|²`` (:func:`nearest_embedding`,
  chunked matrix products in torch, on CUDA when present).

Then vertex ``i`` is visible iff some pixel maps to it, its keypoint is the mean centre of those
pixels, and ``count`` is how many there are (a confidence later stages can weigh by).

A predictor's mirror errors (a left foot read as the right one: METHOD.md §2.3) put a vertex's keypoint
where its twin is, or halfway between the two. :func:`drop_inconsistent` removes keypoints that disagree
with the vertex's mesh neighbours: farther than a limit from the median of its visible 1-ring neighbours'
keypoints (neighbours lie a few pixels apart on the image of a smooth surface).

Size letters: ``n`` instances, ``S`` crop side, ``N`` template vertices, ``C`` chart points, ``D`` embedding
dims, ``P`` foreground pixels (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.geometry.charts import ChartLocator
from pipeline.geometry.mesh import edges
from pipeline.template.file import N_LABELS, decode_uv

__all__ = ["VertexKeypoints", "iuv_lookup_table", "iuv_to_vertices", "nearest_embedding",
           "aggregate", "one_ring", "neighbour_median", "crop_scale", "neighbour_distance", "drop_inconsistent",
           "visible_area_share"]


class VertexKeypoints(NamedTuple):
    """xy: (n, N, 2) float32 image pixels (0 where invisible); visible: (n, N) bool;
    count: (n, N) uint16 pixels per vertex (saturating at 65535)."""

    xy: np.ndarray
    visible: np.ndarray
    count: np.ndarray


def iuv_lookup_table(chart_part: np.ndarray, chart_uv: np.ndarray, chart_vertex: np.ndarray) -> np.ndarray:
    """(25, 256, 256) int32: for part ``I`` and quantised ``(U, V)``, the vertex of the nearest chart
    point of that part (U, V decoded at the bin centre); -1 for ``I = 0``.

    Args:
        chart_part: (C,) 1..24. chart_uv: (C, 2) in [0, 1]. chart_vertex: (C,) vertex ids.
    """
    q = decode_uv(np.arange(256))
    grid = np.stack(np.meshgrid(q, q, indexing="ij"), axis=-1).reshape(-1, 2)  # (U, V) for [u, v] order
    locator = ChartLocator(chart_part, chart_uv, chart_vertex, N_LABELS - 1)
    lut = np.full((N_LABELS, 256, 256), -1, dtype=np.int32)
    for p in range(1, N_LABELS):
        lut[p] = locator.vertices_of(p, grid).reshape(256, 256)
    return lut


def iuv_to_vertices(iuv: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(n, S, S) int32 vertex of every pixel (-1 on the background). iuv: (n, S, S, 3) uint8."""
    i = iuv[..., 0]
    if i.max(initial=0) >= N_LABELS:
        raise InputError(f"IUV part index {int(i.max())} outside 0..24")
    # one flat gather: index (I, U, V) -> I * 65536 + U * 256 + V
    flat = (i.astype(np.int32) << 16) | (iuv[..., 1].astype(np.int32) << 8) | iuv[..., 2]
    return lut.reshape(-1).take(flat)


def nearest_embedding(pixels: np.ndarray, vertices: np.ndarray, device: str = "cpu", chunk: int = 4096) -> np.ndarray:
    """(P,) int64 index of the nearest row of ``vertices`` (N, D) for each row of ``pixels`` (P, D),
    by squared Euclidean distance, in chunks of ``chunk`` pixels (small chunks keep the (chunk, N)
    distance block in cache: 2.5x faster than 65536 on CPU)."""
    e = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    e2 = (e * e).sum(1)
    out = np.empty(len(pixels), dtype=np.int64)
    for a in range(0, len(pixels), chunk):
        p = torch.as_tensor(np.asarray(pixels[a:a + chunk], np.float32), device=device)
        # |p - e|² = |p|² - 2 p·e + |e|²; |p|² does not change the argmin
        d = e2[None, :] - 2.0 * p @ e.T
        out[a:a + chunk] = d.argmin(1).cpu().numpy()
    return out


def aggregate(vertex: np.ndarray, boxes: np.ndarray, n_vertices: int) -> VertexKeypoints:
    """Mean pixel centre and pixel count per vertex (crop pixel centres as in
    :func:`pipeline.geometry.cameras.crop_pixel_centres`).

    Args:
        vertex: (n, S, S) int vertex of each pixel, -1 for none. boxes: (n, 4) x0, y0, x1, y1.
    """
    n, s, _ = vertex.shape
    boxes = np.asarray(boxes, np.float64)
    pix = np.flatnonzero(vertex.reshape(-1) >= 0)  # foreground pixels only
    inst, rc = np.divmod(pix, s * s)
    r, c = np.divmod(rc, s)
    x = boxes[inst, 0] + (c + 0.5) * ((boxes[inst, 2] - boxes[inst, 0]) / s)
    y = boxes[inst, 1] + (r + 0.5) * ((boxes[inst, 3] - boxes[inst, 1]) / s)
    flat = inst * n_vertices + vertex.reshape(-1)[pix]
    size = n * n_vertices
    count = np.bincount(flat, minlength=size)
    sx = np.bincount(flat, weights=x, minlength=size)
    sy = np.bincount(flat, weights=y, minlength=size)
    visible = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        xy = np.where(visible[:, None], np.stack([sx, sy], 1) / count[:, None], 0.0)
    return VertexKeypoints(xy.reshape(n, n_vertices, 2).astype(np.float32), visible.reshape(n, n_vertices),
                           np.minimum(count, 65535).reshape(n, n_vertices).astype(np.uint16))


def one_ring(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(N, K) int64 each vertex's mesh neighbours, padded with -1 (K: the largest degree)."""
    e, _ = edges(faces)
    both = np.concatenate([e, e[:, ::-1]])
    both = both[np.lexsort((both[:, 1], both[:, 0]))]
    degree = np.bincount(both[:, 0], minlength=n_vertices)
    out = np.full((n_vertices, max(int(degree.max(initial=0)), 1)), -1, np.int64)
    slot = np.arange(len(both)) - np.repeat(np.cumsum(degree) - degree, degree)
    out[both[:, 0], slot] = both[:, 1]
    return out


def neighbour_median(xy: np.ndarray, visible: np.ndarray, ring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The coordinate-wise median of each vertex's visible 1-ring neighbours' keypoints, and how many there are.

    Args:
        xy: (n, N, 2) float keypoints. visible: (n, N) bool. ring: (N, K) :func:`one_ring`.
    Returns:
        centre (n, N, 2) of the dtype of xy, NaN where no neighbour is visible; (n, N) int visible neighbours.
    """
    nb_vis = np.where(ring >= 0, visible[:, ring.clip(0)], False)  # (n, N, K)
    nb_xy = np.where(nb_vis[..., None], xy[:, ring.clip(0)], np.nan)  # (n, N, K, 2), the dtype of xy
    # np.nanmedian, 6x faster: NaNs sort last, the median of m values is the mean of sorted[(m-1)//2] and [m//2]
    m = nb_vis.sum(axis=-1)
    ordered = np.sort(nb_xy, axis=2)
    k = ordered.shape[2] - 1
    lo = np.take_along_axis(ordered, np.clip((m - 1) // 2, 0, k)[:, :, None, None], 2)[:, :, 0]
    hi = np.take_along_axis(ordered, np.clip(m // 2, 0, k)[:, :, None, None], 2)[:, :, 0]
    return np.where(m[..., None] > 0, (lo + hi) / 2, np.nan), m


def _offset(kp: VertexKeypoints, ring: np.ndarray) -> np.ndarray:
    """(n, N) float (of xy) image-pixel distance of each keypoint to :func:`neighbour_median`, NaN where the vertex is
    invisible or has fewer than two visible neighbours (one neighbour cannot outvote an outlier)."""
    centre, m = neighbour_median(kp.xy, kp.visible, ring)
    d = np.linalg.norm(kp.xy - centre, axis=-1)
    return np.where(kp.visible & (m >= 2), d, np.nan)


def crop_scale(boxes: np.ndarray, crop: int) -> np.ndarray:
    """(n,) float (the boxes' dtype) image pixels per crop pixel of boxes (n, 4) x0, y0, x1, y1 resampled to
    S = ``crop``."""
    boxes = np.asarray(boxes)
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / crop


def neighbour_distance(kp: VertexKeypoints, ring: np.ndarray, boxes: np.ndarray, crop: int) -> np.ndarray:
    """(n, N) float crop-pixel distance of each keypoint to the median of its visible 1-ring neighbours'
    keypoints (METHOD.md §3.3); NaN where the vertex is invisible or has fewer than two visible neighbours.

    Args:
        ring: (N, K) :func:`one_ring`. boxes: (n, 4) x0, y0, x1, y1 (crop pixels to image pixels).
    """
    return _offset(kp, ring) / crop_scale(boxes, crop)[:, None]


def drop_inconsistent(kp: VertexKeypoints, ring: np.ndarray, boxes: np.ndarray, crop: int,
                      limit: float) -> tuple[VertexKeypoints, np.ndarray]:
    """``kp`` without the keypoints farther than ``limit`` crop pixels from the median of their visible
    neighbours' keypoints (vertices with fewer than two visible neighbours are kept), and the (n, N) bool
    dropped ones.

    Args:
        ring: (N, K) :func:`one_ring`. boxes: (n, 4) x0, y0, x1, y1 (crop pixels to image pixels).
    """
    with np.errstate(invalid="ignore"):  # NaN: not judged, kept
        drop = _offset(kp, ring) > limit * crop_scale(boxes, crop)[:, None]
    return VertexKeypoints(np.where(drop[..., None], 0.0, kp.xy).astype(np.float32), kp.visible & ~drop,
                           np.where(drop, 0, kp.count).astype(np.uint16)), drop


def visible_area_share(visible: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(n,) float32 share of the template's surface area whose vertices are visible."""
    return (visible.astype(np.float64) @ areas / areas.sum()).astype(np.float32)
