"""Triangle-mesh checks, cleaning and small geometric helpers.

Size letters: ``N`` vertices, ``F`` faces, ``E`` edges (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from pipeline.core.errors import InputError, UserError

log = logging.getLogger(__name__)

__all__ = [
    "MeshError",
    "vertex_areas",
    "CleanMesh",
    "check_mesh",
    "clean_mesh",
    "face_areas",
    "face_normals",
    "vertex_normals",
    "edges",
    "face_adjacency",
    "boundary_loops",
]


class MeshError(UserError, ValueError):
    """A mesh cannot be used: NaN vertices, bad indices, non-manifold edges, ..."""


class CleanMesh(NamedTuple):
    """A cleaned mesh and how it relates to the input.

    vertices: (N', 3) float64; faces: (F', 3) int64;
    vertex_index: (N',) int64, the input vertex of each kept vertex;
    face_index: (F',) int64, the input face of each kept face;
    report: counts of what was removed.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_index: np.ndarray
    face_index: np.ndarray
    report: dict


def check_mesh(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """Checks shapes, finiteness and index range; returns float64 vertices and int64 faces.

    Args:
        vertices: (N, 3) float. faces: (F, 3) int, 0-based.
        name: what the mesh is, for error messages (e.g. the file it came from).
    """
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
        raise MeshError(f"{name}: vertices must have shape (N, 3) with N >= 3, got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1:
        raise MeshError(f"{name}: faces must have shape (F, 3) with F >= 1, got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        if not np.all(np.mod(f, 1) == 0):
            raise MeshError(f"{name}: faces must hold integer vertex indices")
    v = v.astype(np.float64)
    f = f.astype(np.int64)
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise MeshError(f"{name}: {int(bad.sum())} vertices are NaN or infinite (first: vertex {int(np.argmax(bad))})")
    if f.min() < 0 or f.max() >= len(v):
        raise MeshError(f"{name}: face indices must lie in [0, {len(v) - 1}], got [{f.min()}, {f.max()}]")
    return v, f


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) float64 triangle areas."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,) float64 a third of the area of each vertex's incident faces (sums to the surface area)."""
    area = face_areas(np.asarray(vertices, np.float64), faces)
    out = np.zeros(len(vertices))
    for k in range(3):
        np.add.at(out, faces[:, k], area / 3)
    return out


def face_normals(vertices: np.ndarray, faces: np.ndarray, eps: float = 1e-20) -> np.ndarray:
    """(F, 3) unit face normals (right-hand rule on the face's vertex order)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), eps)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, eps: float = 1e-20) -> np.ndarray:
    """(N, 3) unit vertex normals, the area-weighted mean of incident face normals."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)  # (F, 3), length 2 * area
    out = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(out, faces[:, i], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), eps)


def edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges and how many faces use each.

    Returns:
        edges: (E, 2) int64 with edges[:, 0] < edges[:, 1]; counts: (E,) int64.
    """
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.sort(e, axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq, counts


def face_adjacency(faces: np.ndarray) -> sp.csr_matrix:
    """(F, F) sparse matrix, 1 where two faces share an edge."""
    n_f = len(faces)
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    fid = np.tile(np.arange(n_f), 3)
    _, inv = np.unique(e, axis=0, return_inverse=True)
    inc = sp.csr_matrix((np.ones(len(fid)), (inv.ravel(), fid)), shape=(inv.max() + 1, n_f))
    adj = (inc.T @ inc).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.data[:] = 1
    return adj


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered boundary loops of a manifold triangle mesh (each an int64 array of vertex ids).

    A boundary edge is used by exactly one face; loops follow the faces' orientation.
    """
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    half = e[counts[inv.ravel()] == 1]  # directed boundary half-edges
    nxt = {int(a): int(b) for a, b in half}
    if len(nxt) != len(half):
        raise MeshError("boundary is not manifold: a vertex starts two boundary edges")
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, components: str = "keep_largest",
               name: str = "mesh", area_eps: float = 1e-14) -> CleanMesh:
    """Makes a mesh fit for the template: one connected, edge-manifold component.

    Steps: check shapes and finiteness; drop degenerate faces (repeated index or area below
    ``area_eps``, reported); refuse non-manifold edges (used by more than two faces); keep the
    largest connected component (``components="keep_largest"``) or refuse several
    (``"refuse"``); drop unreferenced vertices and remap indices.

    Args:
        vertices: (N, 3) float. faces: (F, 3) int.
        components: "keep_largest" or "refuse".
        name: what the mesh is, for messages.
    Raises:
        MeshError: naming the mesh and what is wrong.
    """
    if components not in ("keep_largest", "refuse"):
        raise InputError(f"components must be 'keep_largest' or 'refuse', got {components!r}")
    v, f = check_mesh(vertices, faces, name)
    report = {"input_vertices": len(v), "input_faces": len(f)}
    face_index = np.arange(len(f))

    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    degenerate = repeated | (face_areas(v, f) <= area_eps)
    report["degenerate_faces"] = int(degenerate.sum())
    if degenerate.any():
        log.warning("%s: dropping %d degenerate faces (first: face %d)", name, degenerate.sum(),
                    int(np.argmax(degenerate)))
        f, face_index = f[~degenerate], face_index[~degenerate]
    if len(f) == 0:
        raise MeshError(f"{name}: every face is degenerate")

    e, counts = edges(f)
    nm = counts > 2
    report["non_manifold_edges"] = int(nm.sum())
    if nm.any():
        raise MeshError(f"{name}: {int(nm.sum())} non-manifold edges (used by more than two faces), "
                        f"e.g. edge {tuple(int(x) for x in e[np.argmax(nm)])}; repair the mesh first")

    n_comp, label = connected_components(face_adjacency(f), directed=False)
    report["components"] = int(n_comp)
    if n_comp > 1:
        sizes = np.bincount(label)
        if components == "refuse":
            raise MeshError(f"{name}: {n_comp} connected components (face counts {sorted(sizes.tolist(), reverse=True)[:5]}...); "
                            "set template.components: keep_largest to keep the largest one")
        keep = label == np.argmax(sizes)
        log.warning("%s: %d components, keeping the largest (%d of %d faces)", name, n_comp, keep.sum(), len(f))
        f, face_index = f[keep], face_index[keep]
    report["dropped_faces"] = report["input_faces"] - len(f)

    used = np.unique(f)
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    report["dropped_vertices"] = len(v) - len(used)
    return CleanMesh(v[used], remap[f], used.astype(np.int64), face_index.astype(np.int64), report)
