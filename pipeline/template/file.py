"""``data/template.npz``, the read side of the ``template`` stage: its layout, the :class:`Template` record,
its checks, save and :func:`load_template` (built by :mod:`pipeline.template.build`; METHOD.md §1).

``data/template.npz`` layout (every array saved without pickle; N vertices, F faces, C chart
points, D embedding dims, J = 14 joints):

=================  ===============  =====================================================
key                shape, dtype     meaning
=================  ===============  =====================================================
vertices           (N, 3) float32   rest-pose vertices, metres
faces              (F, 3) int64     triangles, counter-clockwise seen from outside
face_part          (F,) uint8       DensePose part 1..24 of each face
vertex_part        (N,) uint8       part covering most area around each vertex
chart_part         (C,) uint8       part of each chart point (``All_FaceIndices`` per point)
chart_uv           (C, 2) float32   (U, V) in [0, 1] (``All_U_norm``, ``All_V_norm``)
chart_vertex       (C,) int64       mesh vertex of each chart point (``All_vertices`` - 1)
chart_faces        (F, 3) int64     each face's corners as chart points (``All_Faces`` - 1)
embedding          (N, D) float32   CSE vertex embeddings, rows L2-normalised
joint_regressor    (J, N) float32   rows sum to 1; LSP joint order
joint_names        (J,) str
up, forward        (3,) float32     the body's up and facing directions in rest pose
source, topology   () str           where it came from
hash               () str           content hash of all arrays above
=================  ===============  =====================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.io import load_npz, save_npz

__all__ = ["Template", "check_template", "load_template", "N_PARTS", "PART_NAMES", "SEGMENTS", "COARSE_OF_PART",
           "JOINT_NAMES", "apply_regressor"]

# DensePose's 24 body parts. Part ids follow DensePose (0 is background). Of each front/back pair the
# first id is the back (posterior) side and the second the front, as in DensePose-COCO (torso 1 back,
# 2 front); the head is split into its right (23) and left (24) halves. "Right" and "left" are the
# person's own.
N_PARTS = 24

PART_NAMES = (
    "torso back", "torso front", "right hand", "left hand", "left foot", "right foot",
    "right upper leg back", "left upper leg back", "right upper leg front", "left upper leg front",
    "right lower leg back", "left lower leg back", "right lower leg front", "left lower leg front",
    "left upper arm back", "right upper arm back", "left upper arm front", "right upper arm front",
    "left lower arm back", "right lower arm back", "left lower arm front", "right lower arm front",
    "head right", "head left",
)

# Coarse body segments: (name, back id, front id); hands, feet and the head have no front/back.
SEGMENTS = {
    "torso": (1, 2), "right hand": (3, 3), "left hand": (4, 4), "left foot": (5, 5), "right foot": (6, 6),
    "right upper leg": (7, 9), "left upper leg": (8, 10), "right lower leg": (11, 13), "left lower leg": (12, 14),
    "left upper arm": (15, 17), "right upper arm": (16, 18), "left lower arm": (19, 21),
    "right lower arm": (20, 22), "head": (23, 24),
}

def _coarse_table() -> np.ndarray:
    table = np.zeros(N_PARTS + 1, dtype=np.int64)
    for i, ids in enumerate(SEGMENTS.values(), start=1):
        table[list(ids)] = i
    return table


# The 14 coarse parts: part id 0..24 -> coarse id 0..14 (each pair merged, 0 background).
COARSE_OF_PART = _coarse_table()

# The 14 evaluation joints, LSP order (rows of ``joint_regressor``).
JOINT_NAMES = (
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle",
    "right wrist", "right elbow", "right shoulder", "left shoulder", "left elbow", "left wrist",
    "neck", "head top",
)


@dataclass(frozen=True)
class Template:
    """The template; see the module docstring for shapes and dtypes."""

    vertices: np.ndarray
    faces: np.ndarray
    face_part: np.ndarray
    vertex_part: np.ndarray
    chart_part: np.ndarray
    chart_uv: np.ndarray
    chart_vertex: np.ndarray
    chart_faces: np.ndarray
    embedding: np.ndarray
    joint_regressor: np.ndarray
    joint_names: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    source: str
    topology: str
    hash: str = ""

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array, in a fixed order (the hash covers all but ``hash``)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def content_hash(self) -> str:
        """sha256 (first 16 hex digits) over every array's dtype, shape and bytes, except ``hash``."""
        h = hashlib.sha256()
        for name, a in self.arrays().items():
            if name == "hash":
                continue
            a = np.ascontiguousarray(a)
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Writes the ``.npz`` atomically and deterministically."""
        save_npz(path, self.arrays())


_FIELDS = tuple(f.name for f in dataclasses.fields(Template))


def check_template(t: Template, name: str = "template") -> None:
    """Checks shapes and cross-references of a template; raises ValueError naming the key."""
    n, f, c = len(t.vertices), len(t.faces), len(t.chart_part)

    def need(cond, msg):
        if not cond:
            raise InputError(f"{name}: {msg}")

    need(t.vertices.shape == (n, 3) and np.isfinite(t.vertices).all(), "vertices must be finite (N, 3)")
    need(t.faces.shape == (f, 3) and t.faces.min() >= 0 and t.faces.max() < n, "faces must index vertices")
    need(t.face_part.shape == (f,) and t.face_part.min() >= 1 and t.face_part.max() <= N_PARTS,
         "face_part must hold 1..24 per face")
    need(t.vertex_part.shape == (n,), "vertex_part must be (N,)")
    need(t.chart_uv.shape == (c, 2) and t.chart_vertex.shape == (c,), "chart arrays must share C")
    need(t.chart_uv.min() >= 0 and t.chart_uv.max() <= 1, "chart_uv must lie in [0, 1]")
    need(t.chart_vertex.min() >= 0 and t.chart_vertex.max() < n, "chart_vertex must index vertices")
    need(t.chart_faces.shape == (f, 3) and np.array_equal(t.chart_vertex[t.chart_faces], t.faces),
         "chart_faces must map onto faces through chart_vertex")
    need(np.array_equal(t.chart_part[t.chart_faces], np.repeat(t.face_part[:, None], 3, axis=1)),
         "chart_faces must use chart points of the face's own part")
    need(np.array_equal(np.unique(t.chart_part), np.arange(1, N_PARTS + 1)), "all 24 parts need chart points")
    need(t.embedding.ndim == 2 and t.embedding.shape[0] == n, "embedding must be (N, D)")
    need(t.joint_regressor.shape == (len(JOINT_NAMES), n), "joint_regressor must be (14, N)")
    need(np.allclose(t.joint_regressor.sum(axis=1), 1, atol=1e-4), "joint_regressor rows must sum to 1")


def load_template(path: str | Path) -> Template:
    """Reads and checks ``template.npz``; a changed file (hash mismatch) is an error."""
    data = load_npz(path, required=_FIELDS)
    kw = {k: (str(data[k]) if data[k].ndim == 0 and data[k].dtype.kind == "U" else data[k]) for k in _FIELDS}
    t = Template(**kw)
    check_template(t, str(path))
    if t.content_hash() != t.hash:
        raise InputError(f"{path}: content hash {t.content_hash()} does not match the stored {t.hash}")
    return t


def apply_regressor(regressor: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Joints from vertices. regressor: (J, V); vertices: (..., V, 3) -> (..., J, 3)."""
    return np.einsum("jv,...vc->...jc", regressor, vertices)
