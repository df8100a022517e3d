"""The user's CSE mesh as the template: DensePose's mesh file plus the checkpoint's vertex embeddings.

A DensePose CSE model predicts, per pixel, an embedding that is compared with the embeddings of the
vertices of one mesh (``smpl_27554`` for people: SMPL with each edge split once, 6890 + 20664
vertices). Those vertex embeddings are learnt with the model: they live in its weights, under
``roi_heads.embedder.embedder_<mesh>.`` (Detectron2's ``densepose/modeling/cse/embedder.py``):

- ``VertexDirectEmbedder``: ``embeddings`` (N, D), the vertex embeddings themselves;
- ``VertexFeatureEmbedder``: ``features``, one row of features per vertex, and ``embeddings``, one
  row of D per feature, the (N, D) vertex embeddings being ``features @ embeddings``;

each row then L2-normalised (``normalize_embeddings``, norms clamped at 1e-6). Weights files are
Detectron2 model-zoo ``.pkl`` (``{"model": {name: ndarray}}``, pickled) or ``.pth`` (``torch.save``),
both read without Detectron2 through :func:`pipeline.core.pickles.read_pickle`. The mesh file is
DensePose's mesh pickle, a dict with ``vertices`` (N, 3) and ``faces`` (F, 3) (``load_mesh_data``
in ``densepose/structures/mesh.py``).

Size letters: ``N`` vertices of the CSE mesh (``N'`` of the reference template), ``F`` faces, ``D``
embedding dims, ``J`` joints (legend: :mod:`pipeline`).

A CSE mesh comes without DensePose's 24 parts, joints or body axes. They are transferred from a
*reference* template of the same body in the same frame (for ``smpl_27554``: the SMPL template of
``template.source: smpl``): each face takes the part of the nearest reference surface point, the
labels are cleaned into one disk per part and parameterised into charts, and the joint regressor's
weight on each reference vertex moves to the nearest vertex of the CSE mesh.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from pipeline.core.errors import InputError
from pipeline.core.pickles import as_array, read_pickle
from pipeline.geometry.mesh import MeshError

__all__ = ["EMBEDDER_PREFIX", "read_densepose_mesh", "read_checkpoint_embeddings", "normalize_embeddings",
           "transfer_face_parts", "transfer_regressor", "surface_samples"]

EMBEDDER_PREFIX = "roi_heads.embedder.embedder_"


def read_densepose_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads DensePose's mesh pickle: ((N, 3) float64 vertices, (F, 3) int64 faces).

    Raises:
        FileNotFoundError, ValueError: naming the file and what is wrong with it.
    """
    raw = read_pickle(path, "a DensePose mesh file (e.g. smpl_27554.pkl; set template.cse_mesh_file)")
    if not isinstance(raw, dict) or not {"vertices", "faces"} <= set(raw):
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise InputError(f"{path}: a DensePose mesh file holds a dict with 'vertices' and 'faces', got {got}")
    vertices = np.asarray(as_array(raw["vertices"]), np.float64)
    faces = np.asarray(as_array(raw["faces"]))
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputError(f"{path}: vertices {vertices.shape} and faces {faces.shape} must be (N, 3) and (F, 3)")
    if faces.dtype.kind not in "iu":
        raise InputError(f"{path}: faces must be integer vertex indices, got {faces.dtype}")
    return vertices, faces.astype(np.int64)


def normalize_embeddings(e: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(N, D) rows divided by their norm clamped at ``eps``, as Detectron2's ``normalize_embeddings``."""
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), eps)


def _state_dict(raw, path) -> dict:
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise InputError(f"{path}: model weights hold a dict (or {{'model': dict}}), got {type(raw).__name__}")
    return state


def read_checkpoint_embeddings(path: str | Path, mesh_name: str) -> np.ndarray:
    """(N, D) float32 L2-normalised vertex embeddings of ``mesh_name`` from a CSE model's weights.

    Raises:
        FileNotFoundError; ValueError naming the file: unreadable, not a CSE model, no embedder for
            this mesh (the meshes it has are listed), or an embedder of unexpected shapes.
    """
    state = _state_dict(read_pickle(path, "CSE model weights (set template.cse_weights)"), path)
    prefix = f"{EMBEDDER_PREFIX}{mesh_name}."
    own = {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    if "embeddings" not in own:
        meshes = sorted({k[len(EMBEDDER_PREFIX):].split(".")[0] for k in state
                         if isinstance(k, str) and k.startswith(EMBEDDER_PREFIX)})
        have = f"it has embedders for {meshes}" if meshes else "it has no CSE embedder: not a CSE model"
        raise InputError(f"{path}: no vertex embeddings for mesh {mesh_name!r} ({prefix}embeddings); {have}")
    emb = np.asarray(as_array(own["embeddings"]), np.float64)
    if "features" in own:  # VertexFeatureEmbedder
        feat = np.asarray(as_array(own["features"]), np.float64)
        if feat.ndim != 2 or emb.ndim != 2 or feat.shape[1] != emb.shape[0]:
            raise InputError(f"{path}: {prefix}features {feat.shape} and embeddings {emb.shape} do not multiply")
        emb = feat @ emb
    if emb.ndim != 2:
        raise InputError(f"{path}: {prefix}embeddings must be (N, D), got {emb.shape}")
    if not np.isfinite(emb).all():
        raise InputError(f"{path}: {prefix}embeddings hold NaN or infinite values")
    return normalize_embeddings(emb).astype(np.float32)


def surface_samples(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Four points on each face: its centroid and one point towards each corner.

    Returns:
        ((4 F, 3) points, (4 F,) index of the face of each point).
    """
    tri = np.asarray(vertices, np.float64)[faces]  # (F, 3, 3)
    weights = np.vstack([np.full(3, 1 / 3), np.eye(3) * 0.4 + 0.2])  # (4, 3) barycentrics, rows sum to 1
    pts = np.einsum("sk,fkc->fsc", weights, tri).reshape(-1, 3)
    return pts, np.repeat(np.arange(len(faces)), len(weights))


def transfer_face_parts(vertices: np.ndarray, faces: np.ndarray, ref_vertices: np.ndarray, ref_faces: np.ndarray,
                        ref_face_part: np.ndarray, name: str = "CSE mesh", max_offset: float = 0.02) -> np.ndarray:
    """(F,) part of each face: the part of the reference surface point nearest to its centroid.

    Args:
        vertices, faces: the mesh to label.  ref_*: the reference template's mesh and face parts.
        max_offset: the largest median distance between the two surfaces, as a share of the
            reference's height, before they are taken to be in different frames (an error).
    Raises:
        MeshError: the meshes do not overlap (another body, frame or unit).
    """
    pts, face = surface_samples(ref_vertices, ref_faces)
    tree = cKDTree(pts)
    centroids = np.asarray(vertices, np.float64)[faces].mean(axis=1)
    dist, idx = tree.query(centroids)
    size = float(np.ptp(ref_vertices, axis=0).max())
    offset = float(np.median(dist)) / size
    if offset > max_offset:
        raise MeshError(f"{name}: its surface lies a median {100 * offset:.1f}% of the body's height from the "
                        f"reference template's (allowed {100 * max_offset:.0f}%): the reference must be the same "
                        "body in the same frame and units (template.parts_from)")
    return np.asarray(ref_face_part)[face[idx]].astype(np.int64)


def transfer_regressor(regressor: np.ndarray, ref_vertices: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """(J, N) joint regressor on ``vertices``: each reference vertex's weight moves to its nearest vertex.

    Rows still sum to one; joints are reproduced exactly when the mesh contains the reference's
    vertices (``smpl_27554`` contains SMPL's), and within half an edge otherwise.

    Args:
        regressor: (J, N') on the reference.  ref_vertices: (N', 3).  vertices: (N, 3).
    """
    _, nearest = cKDTree(np.asarray(vertices, np.float64)).query(np.asarray(ref_vertices, np.float64))
    out = np.zeros((len(regressor), len(vertices)))
    np.add.at(out.T, nearest, np.asarray(regressor, np.float64).T)
    return out
