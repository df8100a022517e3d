"""The template: a canonical body mesh and the tables tying DensePose output to it (METHOD.md §1).

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
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.charts import atlas_from_uv_processed, build_atlas, dominant_vertex_part
from pipeline.config import TemplateParams
from pipeline.io import load_npz, save_npz
from pipeline.joints import (ANNY_JOINT_BONES, JOINT_NAMES, SMPL_JOINT_INDEX, head_top,
                             regress_points)
from pipeline.lbo import eigenbasis, unit_rms
from pipeline.mesh import MeshError, clean_mesh
from pipeline.parts import N_PARTS, anny_face_parts
from pipeline.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Template", "build_template", "anny_template", "smpl_template", "cse_template", "cse_embedding",
           "load_template"]


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


def _finish(vertices, faces, face_part, atlas, embedding, joint_regressor, up, forward, source, topology) -> Template:
    """Casts to the stored dtypes, checks consistency and stamps the hash."""
    t = Template(
        vertices=np.asarray(vertices, np.float32),
        faces=np.asarray(faces, np.int64),
        face_part=np.asarray(face_part, np.uint8),
        vertex_part=dominant_vertex_part(vertices, faces, face_part).astype(np.uint8),
        chart_part=np.asarray(atlas.chart_part, np.uint8),
        chart_uv=np.asarray(atlas.chart_uv, np.float32),
        chart_vertex=np.asarray(atlas.chart_vertex, np.int64),
        chart_faces=np.asarray(atlas.chart_faces, np.int64),
        embedding=np.asarray(embedding, np.float32),
        joint_regressor=np.asarray(joint_regressor, np.float32),
        joint_names=np.asarray(JOINT_NAMES),
        up=np.asarray(up, np.float32),
        forward=np.asarray(forward, np.float32),
        source=source,
        topology=topology,
    )
    check_template(t)
    return dataclasses.replace(t, hash=t.content_hash())


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


def cse_embedding(vertices: np.ndarray, faces: np.ndarray, dim: int) -> np.ndarray:
    """(N, D) CSE vertex embeddings: the first D non-constant LBO eigenvectors, each column scaled
    to unit RMS, then each row L2-normalised (METHOD.md §1-2)."""
    basis = eigenbasis(vertices, faces, dim + 1, name="template")
    emb = unit_rms(basis.evecs[:, 1:])
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _anny_model(topology: str):
    try:
        import anny
    except ImportError as e:  # pragma: no cover - anny is a pinned requirement
        raise ImportError("template.source: anny needs the 'anny' package (pip install -r requirements.txt)") from e
    return anny.Anny(topology=topology)


def anny_template(topology: str = "notoes_collapse10pc", cse_dim: int = 16,
                  components: str = "keep_largest") -> Template:
    """The open default template: Anny's default body in rest pose, with our 24-part atlas."""
    import torch

    model = _anny_model(topology)
    with torch.no_grad():
        out = model(return_bone_ends=False)
    verts = out["vertices"][0].double().numpy()
    heads = out["rest_bone_heads"][0].double().numpy()
    faces = model.get_triangular_faces().numpy()
    cm = clean_mesh(verts, faces, components=components, name=f"anny topology {topology}")
    bones = model.vertex_bone_indices.numpy()[cm.vertex_index]
    weights = model.vertex_bone_weights.numpy()[cm.vertex_index]
    labels = list(model.bone_labels)
    up, forward = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
    face_part = anny_face_parts(cm.vertices, cm.faces, labels, bones, weights, forward=forward,
                                left=np.cross(up, forward))
    atlas = build_atlas(cm.vertices, cm.faces, face_part, parts=np.arange(1, N_PARTS + 1))
    joints = np.array([heads[labels.index(b)] for b in ANNY_JOINT_BONES[:-1]])
    regressor = np.vstack([regress_points(cm.vertices, joints), _head_top_row(cm.vertices, cm.faces, face_part, up)])
    return _finish(cm.vertices, cm.faces, face_part, atlas, cse_embedding(cm.vertices, cm.faces, cse_dim),
                   regressor, up, forward, "anny", topology)


def _head_top_row(vertices, faces, face_part, up) -> np.ndarray:
    head = np.unique(faces[np.isin(face_part, (23, 24))])
    return head_top(vertices, head, up)


def smpl_template(model_path: str | Path, uv_path: str | Path, cse_dim: int = 16) -> Template:
    """SMPL's mean shape with DensePose's own atlas, from user-given files (never bundled)."""
    from pipeline.smpl import read_smpl_model, read_uv_processed

    smpl = read_smpl_model(model_path)
    uv = read_uv_processed(uv_path)
    faces, atlas = atlas_from_uv_processed(uv["All_vertices"], uv["All_Faces"], uv["All_FaceIndices"],
                                           uv["All_U_norm"], uv["All_V_norm"])
    verts = smpl["v_template"]
    if faces.max() >= len(verts):
        raise InputError(f"{uv_path}: All_vertices refers to vertex {faces.max() + 1}, "
                         f"but {model_path} has {len(verts)} vertices")
    cm = clean_mesh(verts, faces, components="refuse", name=str(model_path))
    if cm.report["dropped_faces"] or cm.report["dropped_vertices"]:
        raise MeshError(f"{model_path}: the SMPL mesh needs cleaning ({cm.report}); it cannot keep DensePose's atlas")
    face_part = atlas.chart_part[atlas.chart_faces[:, 0]]
    up, forward = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    jr = smpl["J_regressor"]
    rows = [jr[i] / jr[i].sum() for i in SMPL_JOINT_INDEX[:-1]]
    regressor = np.vstack(rows + [_head_top_row(verts, faces, face_part, up)])
    return _finish(verts, faces, face_part, atlas, cse_embedding(verts, faces, cse_dim), regressor,
                   up, forward, "smpl", Path(model_path).name)


def cse_template(mesh_path: str | Path, weights_path: str | Path, mesh_name: str, reference: Template) -> Template:
    """The user's CSE mesh (DensePose's mesh file) with the vertex embeddings of a CSE model's weights;
    parts, charts, joints and body axes transferred from ``reference`` (same body, same frame).
    The mesh keeps its vertex order (the embeddings are indexed by it), so it must need no cleaning."""
    from pipeline.cse_mesh import (read_checkpoint_embeddings, read_densepose_mesh, transfer_face_parts,
                                  transfer_regressor)
    from pipeline.parts import clean_part_labels

    verts, faces = read_densepose_mesh(mesh_path)
    emb = read_checkpoint_embeddings(weights_path, mesh_name)
    if len(emb) != len(verts):
        raise InputError(f"{weights_path}: the embedder of {mesh_name!r} has {len(emb)} vertices, but {mesh_path} "
                         f"has {len(verts)}: the mesh file and the weights must be of the same mesh")
    cm = clean_mesh(verts, faces, components="refuse", name=str(mesh_path))
    if cm.report["dropped_faces"] or cm.report["dropped_vertices"]:
        raise MeshError(f"{mesh_path}: the CSE mesh needs cleaning ({cm.report}); it cannot keep the vertex order "
                        "its embeddings are indexed by")
    face_part = transfer_face_parts(verts, faces, reference.vertices, reference.faces, reference.face_part,
                                    name=str(mesh_path))
    face_part = clean_part_labels(faces, face_part)
    atlas = build_atlas(verts, faces, face_part, parts=np.arange(1, N_PARTS + 1))
    regressor = transfer_regressor(reference.joint_regressor, reference.vertices, verts)
    return _finish(verts, faces, face_part, atlas, emb, regressor, reference.up, reference.forward, "cse", mesh_name)


def _reference_template(params: TemplateParams) -> Template:
    """The template a CSE mesh borrows its parts from (``template.parts_from``)."""
    if params.parts_from == "smpl":
        return smpl_template(params.smpl_model, params.smpl_uv, params.cse_dim)
    if params.parts_from == "":
        raise InputError("template.source: cse needs template.parts_from: 'smpl' (the SMPL template of "
                         "template.smpl_model and template.smpl_uv, for smpl_27554) or the path of a template .npz "
                         "of the same body in the same frame, to give the CSE mesh its 24 parts and joints")
    return load_template(params.parts_from)


def build_template(params: TemplateParams) -> Template:
    """The template the params ask for."""
    if params.source == "anny":
        return anny_template(params.topology, params.cse_dim, params.components)
    if params.source == "smpl":
        return smpl_template(params.smpl_model, params.smpl_uv, params.cse_dim)
    if params.source == "cse":
        return cse_template(params.cse_mesh_file, params.cse_weights, params.cse_mesh, _reference_template(params))
    raise InputError(f"template.source = {params.source!r}: allowed 'anny', 'smpl' or 'cse'")
