"""The ``template`` stage's work: build the canonical body mesh and the tables tying DensePose output to it
(METHOD.md §1), from Anny, SMPL or a CSE model's mesh. The file it writes, ``data/template.npz``, and its
reader live in :mod:`pipeline.template.file`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from pipeline.core.config import TemplateParams
from pipeline.core.errors import InputError
from pipeline.geometry.charts import atlas_from_uv_processed, build_atlas, dominant_vertex_part
from pipeline.geometry.lbo import eigenbasis, unit_rms
from pipeline.geometry.mesh import MeshError, clean_mesh
from pipeline.template.file import JOINT_NAMES, N_PARTS, Template, check_template, load_template
from pipeline.core.body_model import anny_model
from pipeline.template.densepose_charts import densepose_atlas
from pipeline.template.joints import ANNY_JOINT_BONES, SMPL_JOINT_INDEX, head_top, regress_points
from pipeline.template.parts import anny_face_parts

log = logging.getLogger(__name__)

__all__ = ["build_template", "part_atlas", "anny_template", "smpl_template", "cse_template", "cse_embedding"]


def _finish(vertices, faces, face_part, atlas, embedding, joint_regressor, up, forward, source, topology,
            charts) -> Template:
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
        charts=charts,
    )
    check_template(t)
    return dataclasses.replace(t, hash=t.content_hash())


def cse_embedding(vertices: np.ndarray, faces: np.ndarray, dim: int) -> np.ndarray:
    """(N, D) CSE vertex embeddings: the first D non-constant LBO eigenvectors, each column scaled
    to unit RMS, then each row L2-normalised (METHOD.md §1-2)."""
    basis = eigenbasis(vertices, faces, dim + 1, name="template")
    emb = unit_rms(basis.evecs[:, 1:])
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def part_atlas(vertices: np.ndarray, faces: np.ndarray, face_part: np.ndarray, up: np.ndarray, forward: np.ndarray,
               charts: str):
    """The 24 charts of a part-labelled mesh in the convention ``charts`` asks for (``template.charts``)."""
    if charts == "densepose":
        return densepose_atlas(vertices, faces, face_part, up, forward)
    if charts == "own":
        return build_atlas(vertices, faces, face_part, parts=np.arange(1, N_PARTS + 1))
    raise InputError(f"template.charts = {charts!r}: allowed 'densepose' or 'own'")


def anny_template(topology: str = "notoes_collapse10pc", cse_dim: int = 16,
                  components: str = "keep_largest", charts: str = "densepose") -> Template:
    """The open default template: Anny's default body in rest pose, with 24 charts in DensePose's convention
    (``charts="densepose"``) or the project's own flattening (``"own"``)."""
    import torch

    model = anny_model(topology)
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
    atlas = part_atlas(cm.vertices, cm.faces, face_part, up, forward, charts)
    joints = np.array([heads[labels.index(b)] for b in ANNY_JOINT_BONES[:-1]])
    regressor = np.vstack([regress_points(cm.vertices, joints), _head_top_row(cm.vertices, cm.faces, face_part, up)])
    return _finish(cm.vertices, cm.faces, face_part, atlas, cse_embedding(cm.vertices, cm.faces, cse_dim),
                   regressor, up, forward, "anny", topology, charts)


def _head_top_row(vertices, faces, face_part, up) -> np.ndarray:
    head = np.unique(faces[np.isin(face_part, (23, 24))])
    return head_top(vertices, head, up)


def smpl_template(model_path: str | Path, uv_path: str | Path, cse_dim: int = 16) -> Template:
    """SMPL's mean shape with DensePose's own atlas, from user-given files (never bundled)."""
    from pipeline.template.smpl import read_smpl_model, read_uv_processed

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
                   up, forward, "smpl", Path(model_path).name, "densepose")


def cse_template(mesh_path: str | Path, weights_path: str | Path, mesh_name: str, reference: Template) -> Template:
    """The user's CSE mesh (DensePose's mesh file) with the vertex embeddings of a CSE model's weights;
    parts, charts, joints and body axes transferred from ``reference`` (same body, same frame).
    The mesh keeps its vertex order (the embeddings are indexed by it), so it must need no cleaning."""
    from pipeline.template.cse_mesh import (read_checkpoint_embeddings, read_densepose_mesh, transfer_face_parts,
                                  transfer_regressor)
    from pipeline.template.parts import clean_part_labels

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
    return _finish(verts, faces, face_part, atlas, emb, regressor, reference.up, reference.forward, "cse", mesh_name,
                   "own")


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
        return anny_template(params.topology, params.cse_dim, params.components, params.charts)
    if params.source == "smpl":
        return smpl_template(params.smpl_model, params.smpl_uv, params.cse_dim)
    if params.source == "cse":
        return cse_template(params.cse_mesh_file, params.cse_weights, params.cse_mesh, _reference_template(params))
    raise InputError(f"template.source = {params.source!r}: allowed 'anny', 'smpl' or 'cse'")
