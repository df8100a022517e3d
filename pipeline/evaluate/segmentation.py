"""Measures of a learnt part segmentation (DP3D's LBO-softmax parts) on the template, as pure functions.

Size letters: ``N`` template vertices, ``F`` faces, ``M`` latent parts (legend: :mod:`pipeline`).

A segmentation is the (N, M) soft part weights of :meth:`pipeline.train.model.LiftingModel.segmentation`
(rows sum to 1); a vertex's *label* is its arg-max part (0-based). The baselines' segmentation is (N, 1)
ones: one part for everything, which every function here handles (one part used, entropy 0, regions not
distinct).

- :func:`parts_used`: parts that are the arg-max of at least ``min_share`` (1 %) of the vertices.
- :func:`segmentation_entropy`: how soft the weights are, 0 (one-hot) .. 1 (uniform).
- :func:`largest_component_share`: whether each part is one patch on the mesh or scattered.
- :func:`region_table`: which latent part holds each of 10 coarse DensePose regions (:data:`REGIONS`).
- :func:`distinct_regions`: whether head, torso and each arm have parts of their own.
- :func:`layout_change`: the share of vertices whose arg-max part changed (e.g. since initialisation).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from pipeline.core.errors import InputError
from pipeline.template.file import SEGMENTS

__all__ = ["REGIONS", "GROUPS", "REGION_COLUMNS", "MIN_SHARE", "labels_of", "used_parts", "parts_used",
           "segmentation_entropy", "largest_component_share", "region_table", "distinct_regions", "layout_change",
           "segmentation_metrics"]

MIN_SHARE = 0.01  # a part is used when it is the arg-max of at least 1 % of the vertices


def _ids(*segments: str) -> tuple[int, ...]:
    """Sorted 1-based DensePose part ids of body segments (keys of :data:`pipeline.template.parts.SEGMENTS`)."""
    return tuple(sorted({i for s in segments for i in SEGMENTS[s]}))


# 10 coarse DensePose regions: name -> 1-based DensePose part ids (front and back merged; the hand joins
# the forearm, the foot the lower leg). "Left" and "right" are the person's own.
REGIONS = {
    "head": _ids("head"),
    "torso": _ids("torso"),
    "left upper arm": _ids("left upper arm"),
    "right upper arm": _ids("right upper arm"),
    "left forearm+hand": _ids("left lower arm", "left hand"),
    "right forearm+hand": _ids("right lower arm", "right hand"),
    "left thigh": _ids("left upper leg"),
    "right thigh": _ids("right upper leg"),
    "left lower leg+foot": _ids("left lower leg", "left foot"),
    "right lower leg+foot": _ids("right lower leg", "right foot"),
}

# Limbs made of several regions, for distinct_regions: name -> region names.
GROUPS = {
    "left arm": ("left upper arm", "left forearm+hand"),
    "right arm": ("right upper arm", "right forearm+hand"),
    "left leg": ("left thigh", "left lower leg+foot"),
    "right leg": ("right thigh", "right lower leg+foot"),
}

REGION_COLUMNS = ("region", "vertices", "majority_part", "majority_share")


def _weights(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, np.float64)
    if w.ndim != 2 or w.shape[1] < 1:
        raise InputError(f"weights must be (N, M) with M >= 1, got {w.shape}")
    return w


def labels_of(weights: np.ndarray) -> np.ndarray:
    """(N,) int64 arg-max part (0-based) of (N, M) float part weights (ties: the lower part)."""
    return _weights(weights).argmax(axis=1).astype(np.int64)


def used_parts(weights: np.ndarray, min_share: float = MIN_SHARE) -> np.ndarray:
    """(M,) bool: part k is used when it is the arg-max of at least ``min_share`` of the N vertices.

    Args:
        weights: (N, M) float part weights.
    """
    w = _weights(weights)
    counts = np.bincount(labels_of(w), minlength=w.shape[1])
    return counts >= min_share * len(w)


def parts_used(weights: np.ndarray, min_share: float = MIN_SHARE) -> int:
    """How many of the M parts are used (:func:`used_parts`) by (N, M) float part weights."""
    return int(used_parts(weights, min_share).sum())


def segmentation_entropy(weights: np.ndarray) -> float:
    """Mean over the N vertices of the entropy of their part distribution divided by log M:
    0 for one-hot weights, 1 for uniform ones, 0 when M == 1. Rows are normalised to sum 1 first.

    Args:
        weights: (N, M) float non-negative part weights.
    """
    w = _weights(weights)
    m = w.shape[1]
    if m == 1:
        return 0.0
    p = np.clip(w, 0.0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return float(-plogp.sum(axis=1).mean() / np.log(m))


def largest_component_share(labels: np.ndarray, faces: np.ndarray, m: int) -> np.ndarray:
    """(M,) float64: per part, the share of its vertices (arg-max ``labels``) that lie in its largest
    connected component on the mesh, where two vertices of the part are connected by a mesh edge whose
    ends both have the part (the part's induced subgraph); NaN for a part no vertex has.

    One :func:`scipy.sparse.csgraph.connected_components` call on the graph of the edges whose two ends
    share a label: its components never cross parts, so they are exactly the parts' own components.

    Args:
        labels: (N,) int parts 0..M-1. faces: (F, 3) int vertex ids. m: M, the number of parts.
    """
    labels = np.asarray(labels, np.int64)
    faces = np.asarray(faces, np.int64)
    if labels.ndim != 1 or (len(labels) and (labels.min() < 0 or labels.max() >= m)):
        raise InputError(f"labels must be (N,) in 0..{m - 1}")
    n = len(labels)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).reshape(-1, 2)
    e = e[labels[e[:, 0]] == labels[e[:, 1]]]
    graph = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    count = np.bincount(labels, minlength=m).astype(np.float64)
    largest = np.zeros(m)
    sizes = np.bincount(comp)  # vertices per component; each component lies in one part
    part_of_comp = np.zeros(len(sizes), np.int64)
    part_of_comp[comp] = labels
    np.maximum.at(largest, part_of_comp, sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, largest / count, np.nan)


def region_table(weights: np.ndarray, vertex_part: np.ndarray) -> list[dict]:
    """Which latent part holds each coarse DensePose region (:data:`REGIONS`).

    Args:
        weights: (N, M) float part weights. vertex_part: (N,) int 1-based DensePose part of each vertex.
    Returns:
        10 rows (dicts with :data:`REGION_COLUMNS`): ``region`` name, ``vertices`` in it, ``majority_part``
        (0-based latent part that is the arg-max of most of its vertices; ties: the lower part) and
        ``majority_share`` (the share of its vertices whose arg-max is that part); both None for a
        region without vertices.
    """
    w = _weights(weights)
    vertex_part = np.asarray(vertex_part)
    if vertex_part.shape != (len(w),):
        raise InputError(f"vertex_part must be ({len(w)},), got {vertex_part.shape}")
    labels = labels_of(w)
    rows = []
    for name, ids in REGIONS.items():
        inside = labels[np.isin(vertex_part, ids)]
        if len(inside) == 0:
            rows.append({"region": name, "vertices": 0, "majority_part": None, "majority_share": None})
            continue
        counts = np.bincount(inside, minlength=w.shape[1])
        k = int(counts.argmax())
        rows.append({"region": name, "vertices": len(inside), "majority_part": k,
                     "majority_share": float(counts[k] / len(inside))})
    return rows


def distinct_regions(rows: list[dict], names: tuple[str, ...] = ("head", "torso", "left arm", "right arm")) -> bool:
    """Whether the named regions are held by pairwise different latent parts.

    A name is a region of :data:`REGIONS` or a limb of :data:`GROUPS` (``left arm`` = left upper arm and
    left forearm+hand). Each name's parts are the majority parts of its regions (one part for a region,
    up to two for a limb: an arm may be one part or two); the names are distinct when no part belongs to
    two of them, e.g. the left arm conflicts with the torso when the majority part of its upper arm *or*
    of its forearm+hand is the torso's. A region without vertices (no majority part) is never distinct.

    Args:
        rows: :func:`region_table` rows. names: the regions or limbs to compare.
    """
    majority = {r["region"]: r["majority_part"] for r in rows}
    sets = []
    for name in names:
        regions = GROUPS.get(name, (name,))
        unknown = [r for r in regions if r not in majority]
        if unknown:
            raise InputError(f"unknown region {name!r}: allowed {sorted(REGIONS) + sorted(GROUPS)}")
        parts = {majority[r] for r in regions}
        if None in parts:
            return False
        sets.append(parts)
    return all(not (sets[i] & sets[j]) for i in range(len(sets)) for j in range(i + 1, len(sets)))


def layout_change(weights_before: np.ndarray, weights_after: np.ndarray) -> float:
    """Share of the N vertices whose arg-max part differs between two (N, M) float segmentations."""
    a, b = _weights(weights_before), _weights(weights_after)
    if a.shape != b.shape:
        raise InputError(f"segmentations must have the same (N, M), got {a.shape} and {b.shape}")
    return float((labels_of(a) != labels_of(b)).mean())


def segmentation_metrics(weights: np.ndarray, faces: np.ndarray, vertex_part: np.ndarray,
                         initial: np.ndarray | None = None,
                         min_share: float = MIN_SHARE) -> tuple[dict, list[dict]]:
    """The segmentation keys of ``eval.json`` and the rows of ``segmentation.csv``.

    Args:
        weights: (N, M) float learnt part weights. faces: (F, 3) int template faces.
        vertex_part: (N,) int 1-based DensePose parts. initial: (N, M) float weights at initialisation,
            or None (unknown: ``segmentation_changed_share`` is None).
    Returns:
        {parts_used, segmentation_entropy, segmentation_min_component_share (minimum of
        :func:`largest_component_share` over the used parts), segmentation_changed_share
        (:func:`layout_change` from ``initial``), regions_distinct (:func:`distinct_regions`)}, and the
        :func:`region_table` rows.
    """
    w = _weights(weights)
    rows = region_table(w, vertex_part)
    share = largest_component_share(labels_of(w), faces, w.shape[1])[used_parts(w, min_share)]
    metrics = {
        "parts_used": parts_used(w, min_share),
        "segmentation_entropy": segmentation_entropy(w),
        "segmentation_min_component_share": float(share.min()) if len(share) else None,
        "segmentation_changed_share": None if initial is None else layout_change(initial, w),
        "regions_distinct": distinct_regions(rows),
    }
    return metrics, rows
