"""Vertex-to-joint regressors for the 14 evaluation joints (their names: :mod:`pipeline.template.file`).

Size letters: ``J`` joints (14), ``N`` vertices (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

__all__ = ["ANNY_JOINT_BONES", "SMPL_JOINT_INDEX", "regress_points", "head_top"]

# Anny bone whose head is each joint (head top: None, taken from the surface).
ANNY_JOINT_BONES = (
    "foot.R", "lowerleg01.R", "upperleg01.R", "upperleg01.L", "lowerleg01.L", "foot.L",
    "wrist.R", "lowerarm01.R", "upperarm01.R", "upperarm01.L", "lowerarm01.L", "wrist.L",
    "neck02", None,
)

# SMPL's 24 joints (J_regressor rows) giving each LSP joint (head top: None, from the surface).
SMPL_JOINT_INDEX = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, None)


def regress_points(vertices: np.ndarray, points: np.ndarray, k: int = 16) -> np.ndarray:
    """(J, N) float64 regressor whose rows sum to 1 and reproduce ``points`` from ``vertices``.

    Each point is written as a non-negative combination of its ``k`` nearest vertices that sums to
    one (NNLS with the sum as a heavily weighted extra equation): the joint then moves with the
    surface around it, as SMPL's regressor does.

    Args:
        vertices: (N, 3) float. points: (J, 3) float joint positions (inside the body).
    """
    vertices = np.asarray(vertices, np.float64)
    out = np.zeros((len(points), len(vertices)))
    for j, p in enumerate(np.asarray(points, np.float64)):
        near = np.argsort(np.linalg.norm(vertices - p, axis=1), kind="stable")[:k]
        a = np.vstack([vertices[near].T, 100.0 * np.ones((1, len(near)))])
        b = np.concatenate([p, [100.0]])
        w, _ = nnls(a, b)
        out[j, near] = w / w.sum()
    return out


def head_top(vertices: np.ndarray, head_vertices: np.ndarray, up: np.ndarray, k: int = 8) -> np.ndarray:
    """(N,) float64 regressor row: the mean of the ``k`` highest head vertices along ``up``."""
    h = np.asarray(head_vertices)
    top = h[np.argsort(-(vertices[h] @ up), kind="stable")[:k]]
    row = np.zeros(len(vertices))
    row[top] = 1.0 / len(top)
    return row

