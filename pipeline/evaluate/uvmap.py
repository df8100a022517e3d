"""UV position maps: a mesh stored as an image whose texels hold 3D positions (METHOD.md §7).

Each of the 24 DensePose charts gets an ``R x R`` grid of texels over its ``(U, V)`` square; texel
``(r, c)`` has its centre at ``U = (c + 0.5) / R``, ``V = 1 - (r + 0.5) / R`` (V up, as in the
DensePose texture atlas). A map is written by rasterising every face into its chart with
barycentric interpolation of per-vertex values (3D positions, or offsets from the template as in
references/001), then inpainting the empty texels between the triangles with the value of the
nearest covered texel *of the same chart* (charts never bleed into each other). It is read back by
bilinear sampling at each chart point's ``(U, V)`` and averaging the chart points of a vertex
(a vertex on a chart border has one per chart).

Which texel blends which vertices depends only on the template's atlas, so it is computed once
(:func:`uv_layout`) and writing a batch of maps is a gather (:func:`write_uv_maps`).

The last axis of the per-vertex values and of the maps, written ``channels`` below, holds each value's
channels (3 for positions).

Size letters: ``n`` meshes (instances), ``N`` vertices, ``C`` chart points, ``R`` texels per chart side
(legend: :mod:`pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from pipeline.core.errors import InputError
from pipeline.template.file import N_PARTS

__all__ = ["UVLayout", "uv_layout", "write_uv_maps", "read_uv_maps", "atlas_image", "ATLAS_GRID"]

ATLAS_GRID = (4, 6)  # rows, columns of charts in an atlas image (parts 1..24 row by row)


@dataclass(frozen=True)
class UVLayout:
    """Which vertices each texel blends, for one atlas at one resolution.

    resolution: R.
    texel_vertex: (24, R, R, 3) int64 mesh vertices blended at each texel (chart p + 1 at index p).
    texel_weight: (24, R, R, 3) float32 their barycentric weights (rows sum to 1).
    covered: (24, R, R) bool texel centre inside a face (or holding a chart point); the rest inpainted.
    chart_part, chart_uv, chart_vertex: the atlas's chart points, (C,), (C, 2), (C,), for reading.
    n_vertices: N.
    """

    resolution: int
    texel_vertex: np.ndarray
    texel_weight: np.ndarray
    covered: np.ndarray
    chart_part: np.ndarray
    chart_uv: np.ndarray
    chart_vertex: np.ndarray
    n_vertices: int


def _texel_of(uv: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) int of the texels containing points uv (P, 2)."""
    col = np.clip(np.floor(uv[:, 0] * r), 0, r - 1).astype(np.int64)
    row = np.clip(np.floor((1.0 - uv[:, 1]) * r), 0, r - 1).astype(np.int64)
    return row, col


def barycentric(points: np.ndarray, tri: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """(P, F, 3) barycentric coordinates of 2D points (P, 2) in triangles (F, 3, 2).

    Degenerate triangles (area below ``eps``) get coordinates of -inf (never inside).
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]  # (F, 2)
    v0, v1 = b - a, c - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]  # (F,) twice the signed area
    ok = np.abs(den) > eps
    d = points[:, None, :] - a[None]  # (P, F, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        w1 = (d[..., 0] * v1[:, 1] - v1[:, 0] * d[..., 1]) / den
        w2 = (v0[:, 0] * d[..., 1] - d[..., 0] * v0[:, 1]) / den
    out = np.stack([1.0 - w1 - w2, w1, w2], axis=-1)
    out[:, ~ok] = -np.inf
    return out


def uv_layout(chart_uv: np.ndarray, chart_faces: np.ndarray, chart_part: np.ndarray, chart_vertex: np.ndarray,
              resolution: int, n_vertices: int | None = None) -> UVLayout:
    """Rasterises the atlas once: for every texel, the face it lies in and its barycentric weights.

    Args:
        chart_uv: (C, 2) float in [0, 1]. chart_faces: (F, 3) int chart points of each face.
        chart_part: (C,) int 1..24. chart_vertex: (C,) int mesh vertex of each chart point.
        resolution: R, texels per chart side (>= 2).
        n_vertices: N (default: ``chart_vertex.max() + 1``).
    Raises:
        ValueError: a bad resolution, or a vertex that no chart point carries (it could not be read).
    """
    r = int(resolution)
    if r < 2:
        raise InputError(f"resolution = {resolution!r}: must be >= 2")
    chart_uv = np.asarray(chart_uv, np.float64)
    chart_faces = np.asarray(chart_faces, np.int64)
    chart_part = np.asarray(chart_part, np.int64)
    chart_vertex = np.asarray(chart_vertex, np.int64)
    n = int(chart_vertex.max()) + 1 if n_vertices is None else int(n_vertices)
    missing = np.setdiff1d(np.arange(n), chart_vertex)
    if len(missing):
        raise InputError(f"{len(missing)} vertices (first {missing[0]}) have no chart point")
    face_part = chart_part[chart_faces[:, 0]]
    centres = (np.arange(r) + 0.5) / r
    grid = np.stack(np.meshgrid(centres, 1.0 - centres, indexing="xy"), axis=-1).reshape(-1, 2)  # (R*R, 2) u, v

    texel_vertex = np.zeros((N_PARTS, r * r, 3), np.int64)
    texel_weight = np.zeros((N_PARTS, r * r, 3), np.float64)
    covered = np.zeros((N_PARTS, r * r), bool)
    for p in range(1, N_PARTS + 1):
        faces = np.flatnonzero(face_part == p)
        if len(faces):
            bary = barycentric(grid, chart_uv[chart_faces[faces]])  # (R*R, Fp, 3)
            worst = bary.min(axis=-1)  # > -tol inside
            best = worst.argmax(axis=1)  # the face a texel is most inside of
            inside = worst[np.arange(len(grid)), best] >= -1e-9
            w = np.clip(bary[np.arange(len(grid)), best], 0, None)
            texel_vertex[p - 1] = chart_vertex[chart_faces[faces[best]]]
            texel_weight[p - 1] = w / np.maximum(w.sum(-1, keepdims=True), 1e-12)
            covered[p - 1] = inside
        # Chart points in texels no face covers (faces thinner than a texel) hold their vertex.
        pts = np.flatnonzero(chart_part == p)
        row, col = _texel_of(chart_uv[pts], r)
        flat = row * r + col
        free = ~covered[p - 1, flat]
        texel_vertex[p - 1, flat[free]] = chart_vertex[pts[free], None]
        texel_weight[p - 1, flat[free]] = (1.0, 0.0, 0.0)
        covered[p - 1, flat[free]] = True

    # Inpaint: every empty texel copies the blend of the nearest covered texel of its chart.
    texel_vertex = texel_vertex.reshape(N_PARTS, r, r, 3)
    texel_weight = texel_weight.reshape(N_PARTS, r, r, 3)
    covered = covered.reshape(N_PARTS, r, r)
    for p in range(N_PARTS):
        if not covered[p].any():
            raise InputError(f"chart {p + 1} has no chart point")
        _, (ri, ci) = distance_transform_edt(~covered[p], return_indices=True)
        texel_vertex[p] = texel_vertex[p, ri, ci]
        texel_weight[p] = texel_weight[p, ri, ci]
    return UVLayout(r, texel_vertex, texel_weight.astype(np.float32), covered, chart_part, chart_uv.astype(np.float32),
                    chart_vertex, n)


def write_uv_maps(layout: UVLayout, values: np.ndarray) -> np.ndarray:
    """Per-vertex values to UV maps.

    Args:
        values: (n, N, channels) float, e.g. vertex positions or offsets from the template.
    Returns:
        (n, 24, R, R, channels) float32; chart p + 1 at index p, row 0 at V = 1.
    """
    values = np.asarray(values, np.float32)
    if values.ndim != 3 or values.shape[1] != layout.n_vertices:
        raise InputError(f"values must be (n, {layout.n_vertices}, channels), got {values.shape}")
    gathered = values[:, layout.texel_vertex]  # (n, 24, R, R, 3, channels)
    return np.einsum("bprckd,prck->bprcd", gathered, layout.texel_weight)


def read_uv_maps(layout: UVLayout, maps: np.ndarray) -> np.ndarray:
    """UV maps back to per-vertex values: bilinear samples at the chart points, averaged per vertex.

    Bilinear interpolation reproduces fields linear in (U, V) exactly, also at chart edges.

    Args:
        maps: (n, 24, R, R, channels) float.
    Returns:
        (n, N, channels) float32.
    """
    maps = np.asarray(maps, np.float32)
    r = layout.resolution
    if maps.ndim != 5 or maps.shape[1:4] != (N_PARTS, r, r):
        raise InputError(f"maps must be (n, {N_PARTS}, {r}, {r}, channels), got {maps.shape}")
    x = layout.chart_uv[:, 0] * r - 0.5  # continuous texel column of each chart point, in [-0.5, R - 0.5]
    y = (1.0 - layout.chart_uv[:, 1]) * r - 0.5
    # Within half a texel of a chart's edge, extrapolate linearly from the two outermost texels
    # rather than clamping (clamping would read the value half a texel inside).
    x0 = np.clip(np.floor(x), 0, r - 2).astype(np.int64)
    y0 = np.clip(np.floor(y), 0, r - 2).astype(np.int64)
    x1, y1 = x0 + 1, y0 + 1
    fx, fy = (x - x0)[None, :, None], (y - y0)[None, :, None]
    p = layout.chart_part - 1
    top = maps[:, p, y0, x0] * (1 - fx) + maps[:, p, y0, x1] * fx  # (n, C, channels)
    bottom = maps[:, p, y1, x0] * (1 - fx) + maps[:, p, y1, x1] * fx
    samples = top * (1 - fy) + bottom * fy
    count = np.bincount(layout.chart_vertex, minlength=layout.n_vertices).astype(np.float32)
    out = np.zeros((len(maps), layout.n_vertices, maps.shape[-1]), np.float32)
    np.add.at(out, (slice(None), layout.chart_vertex), samples)
    return out / count[None, :, None]


def atlas_image(maps: np.ndarray) -> np.ndarray:
    """(4 R, 6 R, channels): the 24 charts of one map (24, R, R, channels) tiled row by row (parts 1..6 on top)."""
    rows, cols = ATLAS_GRID
    _, r, _, d = maps.shape
    return maps.reshape(rows, cols, r, r, d).transpose(0, 2, 1, 3, 4).reshape(rows * r, cols * r, d)
