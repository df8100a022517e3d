"""A confidence in [0, 1] per keypoint (METHOD.md §3.3), stored as ``confidence`` in keypoints.zarr and used
by the trainer as a weight of the re-projection loss when ``loss.confidence`` is on.

From what every correspondence source has (chart or CSE, synthetic, network, Detectron2, precomputed): with
``P_i`` the pixels of vertex ``i``,

- **repair**: ``u_i`` the share of ``P_i`` that the IUV repair did not make (iuv.zarr's ``filled``: a
  neighbour's label, inpainted U, V, a filled hole);
- **agreement with the mesh**: ``a_i = exp(-(d_i / σ)²)``, ``d_i`` the distance in crop pixels from the
  keypoint to the median of its visible 1-ring neighbours' keypoints
  (:func:`pipeline.keypoints.lookup.neighbour_distance`), ``σ`` = ``keypoints.confidence_sigma``; a keypoint
  with fewer than two visible neighbours has no one to agree with and takes ``d_i = σ`` (``a_i = 1/e``: such
  keypoints are twice as often more than 5 crop pixels off); ``σ = 0`` turns the term off (``a_i = 1``);

and ``c_i = u_i a_i`` (0 where the vertex is invisible).

Size letters: ``n`` instances, ``S`` crop side, ``N`` template vertices (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import numpy as np

from pipeline.keypoints.lookup import VertexKeypoints, neighbour_distance

__all__ = ["unfilled_share", "agreement", "keypoint_confidence"]


def unfilled_share(vertex: np.ndarray, filled: np.ndarray, n_vertices: int) -> np.ndarray:
    """(n, N) float64 share of each vertex's pixels that the repair did not make; 0 where no pixel maps to it.

    Args:
        vertex: (n, S, S) int vertex of each pixel, -1 for none. filled: (n, S, S) bool pixels the repair made.
    """
    n = len(vertex)
    pix = np.flatnonzero(vertex.reshape(-1) >= 0)
    flat = (pix // vertex[0].size) * n_vertices + vertex.reshape(-1)[pix]
    size = n * n_vertices
    total = np.bincount(flat, minlength=size)
    kept = np.bincount(flat, weights=~np.asarray(filled, bool).reshape(-1)[pix], minlength=size)
    return (kept / np.maximum(total, 1)).reshape(n, n_vertices)


def agreement(distance: np.ndarray, sigma: float) -> np.ndarray:
    """``exp(-(d / σ)²)`` of crop-pixel distances ``distance`` (n, N) float, ``d = σ`` where NaN (fewer than
    two visible neighbours); all 1 when ``sigma`` is 0 (the term off). Returns (n, N) float64."""
    if sigma <= 0:
        return np.ones(np.shape(distance))
    d = np.where(np.isnan(distance), sigma, distance)
    return np.exp(-((d / sigma) ** 2))


def keypoint_confidence(kp: VertexKeypoints, vertex: np.ndarray, filled: np.ndarray, ring: np.ndarray,
                        boxes: np.ndarray, crop: int, sigma: float) -> np.ndarray:
    """(n, N) float16 confidence ``c = u a`` of each keypoint of ``kp`` (module docstring), 0 where invisible.

    Args:
        kp: the keypoints (after :func:`pipeline.keypoints.lookup.drop_inconsistent`, if it runs).
        vertex: (n, S, S) int vertex of each pixel, -1 for none. filled: (n, S, S) bool pixels the repair made.
        ring: (N, K) :func:`pipeline.keypoints.lookup.one_ring`. boxes: (n, 4) x0, y0, x1, y1 image pixels.
        crop: S. sigma: ``keypoints.confidence_sigma``, crop pixels (0: no agreement term).
    """
    n_v = kp.visible.shape[1]
    with np.errstate(invalid="ignore"):
        a = agreement(neighbour_distance(kp, ring, boxes, crop), sigma)
    c = unfilled_share(vertex, filled, n_v) * a
    return np.where(kp.visible, np.clip(c, 0.0, 1.0), 0.0).astype(np.float16)
