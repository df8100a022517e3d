"""The synthetic bodies, rendered: posed Anny bodies with exact dense correspondence, as arrays.

Following references/002 and the UP-3D protocol of DP3D: every body (random phenotype, anatomical
pose from :mod:`pipeline.render.poses`) is seen by ``views`` random cameras (:mod:`pipeline.geometry.cameras`); each
view is one instance whose crop is the body's box with a margin, resampled to S × S by casting one
ray per crop pixel (:mod:`pipeline.render.rays`). The exact rendering gives the ground truth under
``gt/``; the DensePose-like output (``labels``, ``uv``, ``embedding``, ``mask``) is the exact
rendering after :mod:`pipeline.render.corruption`. :func:`render_bodies` returns the rows of a densepose store
(layout: :mod:`pipeline.densepose.store`); the synthetic source (:mod:`pipeline.densepose.synthetic`) writes them.

Bodies ``0 .. train_bodies - 1`` form the train split, the next ``test_bodies`` the test split, so
no body is in both; instances are stored body-major (instance ``i`` is view ``i % views`` of body
``i // views``).

Determinism: body ``b`` draws its phenotype, pose and cameras from
``default_rng([seed, 1, b])`` and instance ``i`` its corruption from ``default_rng([seed, 2, i])``,
so the output does not depend on batching, and two runs with the same params are byte-identical.

Size letters: ``n`` instances, ``G`` bodies, ``N`` vertices, ``J`` joints, ``S`` crop side, ``D`` embedding
dims (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.core.config import SyntheticParams
from pipeline.core.errors import InputError
from pipeline.core.store import SPLIT_TEST, SPLIT_TRAIN
from pipeline.geometry.cameras import Cameras, crop_boxes, project, sample_cameras
from pipeline.geometry.charts import build_atlas
from pipeline.geometry.mesh import vertex_normals
from pipeline.render.corruption import Crop, Mirror, chart_mirror, corrupt_inplace
from pipeline.render.poses import anny_pose_parameters, sample_poses
from pipeline.render.rays import BodyMeshes, Hits, SurfaceMaps, cast_crops, surface_maps, vertex_visibility
from pipeline.render.scene import (IMAGE_STREAM, OUTFIT_STREAM, Neighbour, paste_occluder, pixel_normals,
                                   sample_outfit, shaded_crop, to_srgb8)
from pipeline.core.body_model import anny_model
from pipeline.template.file import Template

__all__ = ["PHENOTYPES", "CROWD_POOL", "CROWDED", "HIDDEN", "Bodies", "Crowd", "body_model", "make_bodies",
           "place_crowd", "render_bodies", "cue_charts"]

PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
_BODY_STREAM, _CORRUPTION_STREAM, _CROWD_STREAM = 1, 2, 6  # (3 and 4: images, 5: the network's bodies)
CROWDED, HIDDEN = "crowded", "hidden_pixels"  # render_bodies' two rows that are not store arrays
CROWD_POOL = 1 << 40  # neighbour of instance i: body CROWD_POOL + i, beyond any dataset's bodies
# where a neighbour stands from the instance's body centre: metres along the camera's horizontal right
# axis (either side) and along its horizontal viewing direction (negative: nearer the camera); its turn
# about the vertical axis, degrees
CROWD_SIDE, CROWD_DEPTH, CROWD_TURN = (0.45, 0.9), (-0.8, 0.8), (-90.0, 90.0)


def body_model(template: Template):
    """Anny at the template's topology; refuses a template whose vertices are not Anny's."""
    if template.source != "anny":
        raise InputError(f"densepose.source: synthetic needs an Anny template (template.source: anny), "
                         f"got {template.source!r}")
    model = anny_model(template.topology)
    n_model = int(model.template_vertices.shape[0])
    if n_model != template.n_vertices or not np.array_equal(model.get_triangular_faces().numpy(), template.faces):
        raise InputError(f"the template has {template.n_vertices} vertices and {len(template.faces)} faces, but Anny "
                         f"topology {template.topology!r} has {n_model} vertices: the template must keep Anny's "
                         f"vertex order (rebuild it, or choose a topology clean_mesh keeps whole)")
    return model


@dataclass(frozen=True)
class Bodies:
    """Posed bodies: ``vertices`` (G, N, 3) float64 body-frame metres; ``phenotype`` (G, 6) in [0, 1]
    (:data:`PHENOTYPES`); ``mode`` (G,) pose mode index; ``index`` (G,) global body ids;
    ``rngs`` the bodies' generators, positioned after the pose draw (cameras are drawn next); ``model`` the
    body model that posed them (:func:`body_model`; it poses their neighbours too)."""

    vertices: np.ndarray
    phenotype: np.ndarray
    mode: np.ndarray
    index: np.ndarray
    rngs: list
    model: object = None


def make_bodies(model, index: np.ndarray, p: SyntheticParams, seed: int) -> Bodies:
    """Draws phenotypes and poses of bodies ``index`` (G,) and poses Anny (one batched forward)."""
    rngs = [np.random.default_rng([seed, _BODY_STREAM, int(b)]) for b in index]
    lo = np.array([getattr(p, f"{k}_min") for k in PHENOTYPES])
    hi = np.array([getattr(p, f"{k}_max") for k in PHENOTYPES])
    phen = np.array([lo + (hi - lo) * g.random(len(PHENOTYPES)) for g in rngs])  # (G, 6)
    poses = sample_poses(rngs, np.array([p.walk, p.reach, p.sit, p.bend]), p.pose_noise, p.pose_amount)
    pose = torch.from_numpy(anny_pose_parameters(poses.angles, list(model.bone_labels)))
    kw = {k: torch.from_numpy(phen[:, i].astype(np.float32)) for i, k in enumerate(PHENOTYPES)}
    with torch.no_grad():
        verts = model(pose_parameters=pose, phenotype_kwargs=kw)["vertices"]
    return Bodies(verts.double().numpy(), phen, poses.mode, np.asarray(index), rngs, model)


@dataclass(frozen=True)
class Crowd:
    """The other people: instance ``rows[k]`` (k,) int of a batch has a neighbour, posed body ``CROWD_POOL +
    instance`` placed beside it (:func:`place_crowd`): ``vertices`` (k, N, 3) float64 in the instance's body
    frame, its crop ``hits`` and exact ``maps`` under the instance's camera and box, and ``cover`` (k, S, S)
    bool the crop pixels where the neighbour is in front (of the body, or of the background)."""

    rows: np.ndarray
    index: np.ndarray
    vertices: np.ndarray
    hits: Hits
    maps: SurfaceMaps
    cover: np.ndarray


def _turn(vertices: np.ndarray, up: np.ndarray, degrees: float) -> np.ndarray:
    """(N, 3) ``vertices`` turned about the vertical axis ``up`` (3,) through their mean (Rodrigues)."""
    t = np.deg2rad(degrees)
    k = np.array([[0, -up[2], up[1]], [up[2], 0, -up[0]], [-up[1], up[0], 0]])
    rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    c = vertices.mean(axis=0)
    return (vertices - c) @ rot.T + c


def _horizontal(axis: np.ndarray, up: np.ndarray) -> np.ndarray:
    h = axis - (axis @ up) * up
    return h / max(np.linalg.norm(h), 1e-9)


def place_crowd(bodies: Bodies, body: np.ndarray, cams: Cameras, boxes: np.ndarray, hits: Hits,
                template: Template, p: SyntheticParams, crop: int, seed: int, device: str,
                first_instance: int) -> Crowd | None:
    """Stands another person beside each instance with probability ``p.crowd_prob`` (METHOD.md §2.3).

    Instance ``i`` draws from ``default_rng([seed, 6, i])`` whether it is crowded, the side and distance
    (:data:`CROWD_SIDE`, :data:`CROWD_DEPTH`) and turn (:data:`CROWD_TURN`); the neighbour, body ``CROWD_POOL +
    i`` (its own phenotype and pose), stands on the same floor (lowest points level). ``body`` (n,) local body
    of each instance; ``hits`` the instances' own. None when no instance is crowded.
    """
    up = np.asarray(template.up, np.float64)
    rows, draws = [], []
    for i in range(len(body)):
        g = np.random.default_rng([seed, _CROWD_STREAM, first_instance + i])
        if g.random() < p.crowd_prob:
            rows.append(i)
            side = g.choice([-1.0, 1.0]) * g.uniform(*CROWD_SIDE)
            draws.append((side, g.uniform(*CROWD_DEPTH), g.uniform(*CROWD_TURN)))
    if not rows:
        return None
    rows = np.asarray(rows)
    index = CROWD_POOL + first_instance + rows
    others = make_bodies(bodies.model, index, p, seed).vertices
    placed = np.empty_like(others)
    for k, (i, (side, depth, turn)) in enumerate(zip(rows, draws)):
        own = bodies.vertices[body[i]]
        v = _turn(others[k], up, turn)
        right, ahead = _horizontal(cams.rotation[i][0], up), _horizontal(cams.rotation[i][2], up)
        shift = own.mean(axis=0) - v.mean(axis=0) + side * right + depth * ahead
        shift += ((own @ up).min() - (v @ up).min() - shift @ up) * up  # both on the floor
        placed[k] = v + shift
    their = cast_crops(BodyMeshes(placed, template.faces, device), np.arange(len(rows)), cams.take(rows), boxes[rows],
                       crop)
    maps = surface_maps(their, template.faces, template.face_part, template.chart_uv, template.chart_faces,
                        device=device)
    own_depth = hits.depth[rows]
    cover = (maps.labels > 0) & ((hits.face[rows] < 0) | (their.depth < own_depth))
    return Crowd(rows, index, placed, their, maps, cover)


def render_bodies(bodies: Bodies, template: Template, p: SyntheticParams, crop: int, seed: int,
                  device: str = "cpu", first_instance: int = 0, mirror: Mirror | None = None) -> dict[str, np.ndarray]:
    """Renders ``views`` instances per body: the store's rows (layout: :mod:`pipeline.densepose.store`), body-major.

    ``first_instance``: global index of the first instance (seeds its corruption and crowd generators).
    ``mirror``: the template's :func:`chart_mirror` (measured here when ``mirror_prob`` needs it and it is None).
    Two rows are not store arrays: :data:`CROWDED` (n,) bool the instances with a neighbour, :data:`HIDDEN` (n,)
    int the body pixels it hides.
    """
    views = p.views
    b = len(bodies.index)
    body = np.repeat(np.arange(b), views)  # (n,) local body of each instance
    v = bodies.vertices
    targets = 0.5 * (v.min(axis=1) + v.max(axis=1))  # (G, 3) box centres
    cams = sample_cameras([bodies.rngs[k] for k in body], targets[body],
                          elevation=(p.elevation_min, p.elevation_max), roll=(p.roll_min, p.roll_max),
                          distance=(p.distance_min, p.distance_max), fov=p.fov, image_size=p.image_size,
                          projection=p.projection, up=template.up, forward=template.forward)
    cam_v = cams.to_camera(v[body])  # (n, N, 3)
    pixels = project(cam_v, cams.focal, cams.principal, cams.projection)  # (n, N, 2)
    boxes = crop_boxes(pixels, p.margin)  # (n, 4)

    meshes = BodyMeshes(v, template.faces, device)
    hits = cast_crops(meshes, body, cams, boxes, crop)
    visible = vertex_visibility(meshes, body, cams, p.visibility_tol)
    exact = surface_maps(hits, template.faces, template.face_part, template.chart_uv, template.chart_faces,
                         template.embedding if p.cse else None, device=device)

    n = len(body)
    crowd = None
    if p.crowd_prob:
        crowd = place_crowd(bodies, body, cams, boxes, hits, template, p, crop, seed, device, first_instance)
    images = (_shaded_crops(bodies, template, cams, body, hits, exact, p, seed, first_instance, crowd)
              if p.images else None)
    # the DensePose-like output: the exact maps corrupted in place, one instance at a time (the exact
    # ground truth kept is exact.iuv; no copy of these large arrays is made)
    labels, uv, emb, mask = exact.labels, exact.uv, exact.embedding, exact.mask
    hidden = np.zeros((n, crop, crop), bool)  # the body's pixels a neighbour stands in front of
    crowd_box = np.full((n, 4), np.nan, np.float32)
    if crowd is not None:
        hidden[crowd.rows] = crowd.cover & (labels[crowd.rows] > 0)
        sub = cams.take(crowd.rows)
        their = project(sub.to_camera(crowd.vertices), sub.focal, sub.principal, sub.projection)
        crowd_box[crowd.rows] = crop_boxes(their, p.margin)
        labels[hidden], mask[hidden] = 0, False  # as an occluder's: background in the DensePose-like output
        uv[np.broadcast_to(hidden[:, None], uv.shape)] = 0.0
        if emb is not None:
            emb[np.broadcast_to(hidden[:, None], emb.shape)] = 0.0
    occluder = np.zeros((n, crop, crop), bool)
    if p.corruption.mirror_prob and mirror is None:
        mirror = chart_mirror(template)
    for i in range(n):
        rng = np.random.default_rng([seed, _CORRUPTION_STREAM, first_instance + i])
        corrupt_inplace(Crop(labels[i], uv[i], None if emb is None else emb[i], mask[i], occluder[i]),
                        p.corruption, rng, mirror)
    occluded = _occluded_vertices(occluder | hidden, visible, pixels, boxes)
    rgb = {}
    if images is not None:
        shaded, rngs = images
        rgb = {"rgb": np.stack([to_srgb8(paste_occluder(shaded[i], occluder[i], rngs[i]), rngs[i], p.image_noise)
                                for i in range(n)]),
               "gt/occluder": occluder | hidden, "gt/crowd_box": crowd_box}

    split = np.where(bodies.index[body] < p.train_bodies, SPLIT_TRAIN, SPLIT_TEST).astype(np.uint8)
    joints = template.joint_regressor.astype(np.float64) @ cam_v  # (n, J, 3)
    cse = {"embedding": emb, "mask": mask} if emb is not None else {}
    return {
        "labels": labels, "uv": uv.astype(np.float16), **cse,
        "box": boxes.astype(np.float32), "score": np.ones(n, np.float32),
        "image": (first_instance + np.arange(n)).astype(np.int32), "split": split,
        "gt/vertices": cam_v.astype(np.float32), "gt/visible": visible, "gt/occluded": occluded,
        "gt/joints": joints.astype(np.float32), "gt/iuv": exact.iuv,
        "gt/depth": hits.depth.astype(np.float32),
        "gt/camera": np.concatenate([cams.focal[:, None], cams.principal], axis=1).astype(np.float32),
        "gt/body": bodies.index[body].astype(np.int32), "gt/mode": bodies.mode[body].astype(np.int8), **rgb,
        CROWDED: np.isfinite(crowd_box[:, 0]), HIDDEN: hidden.sum(axis=(1, 2)),
    }


_CUE_CHARTS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def cue_charts(template: Template) -> tuple[np.ndarray, np.ndarray]:
    """(C', 2) chart_uv and (F, 3) chart_faces of the charts the appearance cues are placed in: the project's own
    flattening of the template's parts (:func:`~pipeline.geometry.charts.build_atlas`), where the cues' chart
    coordinates were measured (scene.py), whatever the template's own convention; made once per template."""
    if template.charts == "own":
        return template.chart_uv, template.chart_faces
    if template.hash not in _CUE_CHARTS:
        atlas = build_atlas(np.asarray(template.vertices, np.float64), template.faces, template.face_part)
        _CUE_CHARTS[template.hash] = (atlas.chart_uv.astype(np.float32), atlas.chart_faces)
    return _CUE_CHARTS[template.hash]


def _shaded_crops(bodies: Bodies, template: Template, cams, body: np.ndarray, hits, exact, p: SyntheticParams,
                  seed: int, first_instance: int, crowd: Crowd | None) -> tuple[np.ndarray, list[np.random.Generator]]:
    """(n, S, S, 3) float32 linear RGB of every instance before its occluder is pasted (from the exact maps;
    a neighbour, dressed as its own body id, where it is in front), and each instance's image generator (its
    occluder texture and noise come next)."""
    normals = [vertex_normals(v, template.faces) for v in bodies.vertices]  # (N, 3) per body, body frame
    cues, their_cues = exact, None if crowd is None else crowd.maps  # the U, V the cues are placed in
    if template.charts != "own":  # another convention: the same hits read through the own flattening
        cue_uv, cue_faces = cue_charts(template)
        cues = surface_maps(hits, template.faces, template.face_part, cue_uv, cue_faces)
        if crowd is not None:
            their_cues = surface_maps(crowd.hits, template.faces, template.face_part, cue_uv, cue_faces)
    outfits = [sample_outfit(np.random.default_rng([seed, OUTFIT_STREAM, int(g)])) for g in bodies.index]
    neighbour = {} if crowd is None else {int(i): k for k, i in enumerate(crowd.rows)}
    rngs, out = [], []
    for i, g in enumerate(body):
        rng = np.random.default_rng([seed, IMAGE_STREAM, first_instance + i])
        n_px = pixel_normals(hits.face[i], hits.bary[i], normals[g], template.faces, cams.rotation[i])
        other = None
        if i in neighbour:
            k = neighbour[i]
            o_normals = vertex_normals(crowd.vertices[k], template.faces)
            o_px = pixel_normals(crowd.hits.face[k], crowd.hits.bary[k], o_normals, template.faces, cams.rotation[i])
            other = Neighbour(crowd.maps.labels[k], their_cues.uv[k], o_px,
                              sample_outfit(np.random.default_rng([seed, OUTFIT_STREAM, int(crowd.index[k])])),
                              crowd.cover[k])
        out.append(shaded_crop(exact.labels[i], cues.uv[i], n_px, outfits[g], rng, (p.ambient_min, p.ambient_max),
                               other))
        rngs.append(rng)
    return np.stack(out), rngs


def _occluded_vertices(occluder: np.ndarray, visible: np.ndarray, pixels: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n, N) bool: visible vertices whose crop pixel an occluder covers (``occluder`` (n, S, S))."""
    n, s = occluder.shape[0], occluder.shape[-1]
    cell = _crop_cells(pixels, boxes, s)  # (n, N, 2)
    inside = cell[..., 0] >= 0
    inst = np.broadcast_to(np.arange(n)[:, None], inside.shape)
    covered = np.zeros(inside.shape, bool)
    covered[inside] = occluder[inst[inside], cell[..., 0][inside], cell[..., 1][inside]]
    return covered & visible


def _crop_cells(pixels: np.ndarray, boxes: np.ndarray, crop: int) -> np.ndarray:
    """(n, N, 2) int crop pixel (row, col) holding each image point (n, N, 2); -1 outside the crop."""
    x0, y0, x1, y1 = (boxes[:, k, None] for k in range(4))
    col = np.floor((pixels[..., 0] - x0) / (x1 - x0) * crop).astype(np.int64)
    row = np.floor((pixels[..., 1] - y0) / (y1 - y0) * crop).astype(np.int64)
    inside = (row >= 0) & (row < crop) & (col >= 0) & (col < crop)
    return np.where(inside[..., None], np.stack([row, col], axis=-1), -1)
