"""Reconstruction metrics of the ``evaluate`` stage (METHOD.md §6, DP3D §4.1), as pure functions.

Size letters: ``B`` instances of a batch, ``N`` template vertices, ``J`` joints (14), ``F`` faces, ``P`` points
(legend: :mod:`pipeline`).
Inputs are camera-frame metres (OpenCV axes: x right, y down, z away from the camera) unless said
otherwise; errors come back in metres and the stage reports millimetres.

- Predictions arrive in the *image frame* of the keypoints: x, y image pixels and z in the same
  pixel units, depth known up to a constant. :func:`image_to_camera` undoes the orthographic camera
  ``image = f (x, y) + (cx, cy)`` (f pixels per metre).
- Orthographic depth is only known up to a constant, so :func:`vertex_errors` subtracts each shape's
  mean depth from predicted and true shapes before measuring (the MPJPE of DP3D §4.1, over all
  vertices, visible or not).
- :func:`flip_depth` mirrors a shape in depth; the per-instance better of a prediction and its flip
  is a diagnostic of the orthographic mirror ambiguity, not the headline.
- :func:`flat_reference` keeps the true image-plane positions and puts every depth at 0: the MPJPE
  of this shape is what "no 3D at all" (with perfect x, y) scores.
- :func:`re14` aligns the 14 regressed joints with a similarity transform (rotation, translation
  and scale; Umeyama through ``roma``) to the true joints, then averages the joint distances.
- :func:`s2s` is the surface-to-surface error: point-to-nearest-face distances both ways.
- :func:`xy_z_errors` splits the vertex error of depth-centred shapes into its image-plane part
  ``|(dx, dy)|`` and its depth part ``|dz|``.
- :func:`batch_vertex_errors` gives the stage all of these per-vertex errors at once, bit for bit, without
  copying the (B, N, 3) shapes.
- :func:`view_azimuth` is the body's view azimuth from a rigid (rotation + translation) alignment of
  the canonical template's torso to the true torso; :func:`azimuth_bins` groups it in 45° bins and
  :func:`binned_share` gives the share of a per-instance flag in each bin.
- :func:`visible_share_bins` groups instances by the share of the template they show (:data:`VISIBLE_SHARE_EDGES`)
  and :func:`group_means` averages a per-instance value in each group (pose mode, visible share).
- :func:`torso_forward_z` is the depth component of the torso's back-to-front direction: its sign says
  whether the chest faces the camera, and :func:`same_facing` compares it between two shapes.

View azimuth (degrees, (-180, 180]): where the camera stands around the body, measured in the body's
frame as the azimuth of :func:`pipeline.geometry.cameras.look_at` (the synthetic cameras' azimuth): the
direction from the body to the camera (-z, the optical axis) in body axes, projected onto the body's
horizontal plane, from the body's forward towards its left. 0: the body faces the camera; +90: the
camera is on the body's left, its *left* side faces the camera (the body has turned to its right,
clockwise seen from above); -90: its *right* side faces the camera; ±180: its back does. Camera
elevation and roll do not change it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import roma
import torch

from pipeline.core.errors import InputError

__all__ = ["image_to_camera", "centre_depth", "flip_depth", "flat_reference", "vertex_errors", "VertexErrors",
           "batch_vertex_errors", "similarity_align", "re14", "part_sums", "closest_point_on_triangles",
           "point_to_mesh_distance", "s2s", "PartSums", "xy_z_errors", "view_azimuth", "AZIMUTH_CENTRES",
           "azimuth_bins", "azimuth_key", "binned_share", "VISIBLE_SHARE_EDGES", "VISIBLE_SHARE_KEYS",
           "visible_share_bins", "group_means", "torso_forward_z", "same_facing", "roc_auc"]

AZIMUTH_CENTRES = (0, 45, 90, 135, 180, -135, -90, -45)  # degrees: centres of the 45° azimuth bins
# visible-share bins [0, 0.3), [0.3, 0.5), [0.5, 0.7), [0.7, 1] and their metrics keys (percent)
VISIBLE_SHARE_EDGES = (0.0, 0.3, 0.5, 0.7, 1.0)
VISIBLE_SHARE_KEYS = tuple(f"vis{round(100 * a):02d}-{round(100 * b):02d}"
                           for a, b in zip(VISIBLE_SHARE_EDGES[:-1], VISIBLE_SHARE_EDGES[1:]))


def image_to_camera(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Image-frame shapes to camera-frame metres under an orthographic camera.

    Args:
        points: (B, N, 3) float, x and y image pixels, z in the same pixel units.
        camera: (B, 3) float, per instance f (pixels per metre), cx, cy (pixels).
    Returns:
        (B, N, 3) float64 metres: ((x - cx) / f, (y - cy) / f, z / f).
    """
    points = np.asarray(points, np.float64)
    camera = np.asarray(camera, np.float64)
    if points.ndim != 3 or points.shape[-1] != 3 or camera.shape != (len(points), 3):
        raise InputError(f"points must be (B, N, 3) and camera (B, 3), got {points.shape} and {camera.shape}")
    if not (camera[:, 0] > 0).all():
        raise InputError("camera focal lengths f must be > 0")
    f = camera[:, None, :1]  # (B, 1, 1)
    c = np.concatenate([camera[:, 1:], np.zeros((len(camera), 1))], axis=1)[:, None]  # (B, 1, 3)
    out = points - c
    out /= f
    return out


def centre_depth(points: np.ndarray) -> np.ndarray:
    """(B, N, 3) float64 shapes with each shape's mean depth (z) subtracted."""
    points = np.array(points, np.float64)
    points[..., 2] -= points[..., 2].mean(axis=-1, keepdims=True)
    return points


def flip_depth(points: np.ndarray) -> np.ndarray:
    """(B, N, 3) float64 shapes mirrored in depth about their mean depth (the orthographic twin)."""
    out = centre_depth(points)
    out[..., 2] *= -1
    return out


def flat_reference(true: np.ndarray) -> np.ndarray:
    """(B, N, 3) float64: the true shapes with every depth set to 0 (METHOD.md §6)."""
    out = np.array(true, np.float64)
    out[..., 2] = 0.0
    return out


def vertex_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(B, N) float64 distances between depth-centred predicted and true vertices.

    Args:
        pred, true: (B, N, 3) float, camera-frame metres (depth offsets do not matter).
    """
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise InputError(f"pred and true must both be (B, N, 3), got {pred.shape} and {true.shape}")
    return np.linalg.norm(centre_depth(pred) - centre_depth(true), axis=-1)


def xy_z_errors(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertex error of depth-centred shapes split into its image-plane and depth parts.

    Args:
        pred, true: (B, N, 3) float, camera-frame metres (depth offsets do not matter).
    Returns:
        xy: (B, N) float64 ``|(dx, dy)|``; z: (B, N) float64 ``|dz|`` after each shape's mean depth is
        subtracted (``xy**2 + z**2`` is the squared :func:`vertex_errors`).
    """
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise InputError(f"pred and true must both be (B, N, 3), got {pred.shape} and {true.shape}")
    d = centre_depth(pred) - centre_depth(true)
    return np.linalg.norm(d[..., :2], axis=-1), np.abs(d[..., 2])


class VertexErrors(NamedTuple):
    """Per-vertex errors of a batch, each (B, N) float64 metres (:func:`batch_vertex_errors`)."""

    all: np.ndarray   # :func:`vertex_errors` of the prediction
    flip: np.ndarray  # ... of its depth mirror (:func:`flip_depth`)
    flat: np.ndarray  # ... of the flat reference (:func:`flat_reference`)
    xy: np.ndarray    # the image-plane part of ``all`` (:func:`xy_z_errors`)
    z: np.ndarray     # its depth part


def batch_vertex_errors(pred: np.ndarray, true: np.ndarray) -> VertexErrors:
    """Every per-vertex error of the evaluate stage at once, bit for bit ``vertex_errors(pred, true)``,
    ``vertex_errors(flip_depth(pred), true)``, ``vertex_errors(flat_reference(true), true)`` and
    ``xy_z_errors(pred, true)``, from (B, N) arrays only: no (B, N, 3) copy of the shapes (same sums in the same
    order; the flat reference's error is ``|true z - mean|``, the square root of its square).

    Args:
        pred, true: (B, N, 3) float64, camera-frame metres (depth offsets do not matter).
    """
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise InputError(f"pred and true must both be (B, N, 3), got {pred.shape} and {true.shape}")
    # in place where it can: at most six (B, N) arrays alive
    pz, tz = (p[..., 2] - p[..., 2].mean(axis=-1, keepdims=True) for p in (pred, true))  # centre_depth's z
    dz = pz - tz
    flip = np.negative(pz, out=pz)
    flip -= flip.mean(axis=-1, keepdims=True)  # flip_depth's z centred again: its mean is not exactly 0
    flip -= tz
    flip *= flip
    xy = pred[..., 0] - true[..., 0]
    xy *= xy
    square = pred[..., 1] - true[..., 1]
    square *= square
    xy += square  # dx**2 + dy**2
    flip += xy
    total = np.multiply(dz, dz, out=square)
    total += xy
    return VertexErrors(all=np.sqrt(total, out=total), flip=np.sqrt(flip, out=flip), flat=np.abs(tz, out=tz),
                        xy=np.sqrt(xy, out=xy), z=np.abs(dz, out=dz))


def view_azimuth(canonical: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(B,) float64 view azimuth in degrees, (-180, 180] (module docstring for the convention).

    The rotation R taking ``canonical`` onto ``points`` (rigid Procrustes, no scale, reflections
    excluded; ``roma``) puts the body's axes in the camera frame; the camera direction in body axes
    is ``d = R^T (0, 0, -1)``, and the azimuth is ``atan2(d . left, d . forward)`` with the canonical
    ``forward = (0, 0, -1)`` and ``left = (1, 0, 0)``.

    Args:
        canonical: (P, 3) float points of the template in the canonical camera-facing frame of
            :func:`pipeline.train.model.canonical_template` (body facing -z, up -y, its left +x), e.g. the torso.
        points: (B, P, 3) float the same points, camera frame (x right, y down, z away from the camera).
    """
    pts = torch.as_tensor(np.asarray(points, np.float64))
    can = torch.as_tensor(np.asarray(canonical, np.float64))
    if pts.ndim != 3 or pts.shape[1:] != can.shape or can.shape[-1] != 3:
        raise InputError(f"canonical must be (P, 3) and points (B, P, 3), got {tuple(can.shape)} and "
                         f"{tuple(pts.shape)}")
    r, _ = roma.rigid_points_registration(can.expand_as(pts), pts)
    r = r.numpy()
    return np.degrees(np.arctan2(-r[:, 2, 0], r[:, 2, 2]))


def azimuth_bins(azimuth: np.ndarray) -> np.ndarray:
    """(B,) int64 index into :data:`AZIMUTH_CENTRES` of the 45° bin of each (B,) float azimuth (degrees)."""
    return np.mod(np.round(np.asarray(azimuth, np.float64) / 45.0), 8).astype(np.int64)


def azimuth_key(centre: int) -> str:
    """The metrics key of an azimuth bin: ``az+000``, ``az+045``, ..., ``az+180``, ``az-135``, ..."""
    return f"az{int(centre):+04d}"


def binned_share(flags: np.ndarray, bins: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Share of true ``flags`` in each bin.

    Args:
        flags: (B,) bool. bins: (B,) int in 0..n_bins-1.
    Returns:
        shares: (n_bins,) float64, NaN for an empty bin; counts: (n_bins,) int64 instances per bin.
    """
    flags, bins = np.asarray(flags, bool), np.asarray(bins, np.int64)
    if flags.shape != bins.shape or flags.ndim != 1:
        raise InputError(f"flags and bins must both be (B,), got {flags.shape} and {bins.shape}")
    counts = np.bincount(bins, minlength=n_bins).astype(np.int64)
    hits = np.bincount(bins, flags.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / counts, np.nan), counts


def visible_share_bins(share: np.ndarray) -> np.ndarray:
    """(n,) int64 index into :data:`VISIBLE_SHARE_KEYS` of the bin of each (n,) float visible share: bin ``k`` holds
    ``VISIBLE_SHARE_EDGES[k] <= share < VISIBLE_SHARE_EDGES[k + 1]``, the last one 1 too, so the bins partition [0, 1].
    Shares are compared with the edges in their own precision (a float32 share of 0.7 is in [0.7, 1]).

    Raises:
        InputError: a share that is NaN or outside [0, 1] (not a share: the bins would hide it).
    """
    share = np.asarray(share)
    share = share if share.dtype.kind == "f" else share.astype(np.float64)
    if share.ndim != 1:
        raise InputError(f"visible shares must be (n,), got shape {share.shape}")
    bad = np.flatnonzero(~((share >= 0) & (share <= 1)))  # NaN too
    if len(bad):
        raise InputError(f"visible shares must lie in [0, 1], got {share[bad[0]]} at instance {bad[0]} "
                         f"({len(bad)} instances in all)")
    return np.digitize(share, np.asarray(VISIBLE_SHARE_EDGES[1:-1], share.dtype)).astype(np.int64)


def group_means(values: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a per-instance value in each group of instances.

    Args:
        values: (n,) float. groups: (n,) int in 0..n_groups-1 (a pose mode, a visible-share bin).
    Returns:
        means: (n_groups,) float64, NaN for an empty group; counts: (n_groups,) int64 instances per group.
    Raises:
        InputError: shapes that differ, or a group outside 0..n_groups-1.
    """
    values, groups = np.asarray(values, np.float64), np.asarray(groups)
    if values.shape != groups.shape or values.ndim != 1 or groups.dtype.kind not in "iu":
        raise InputError(f"values and groups must both be (n,), groups integers; got {values.shape} {values.dtype} "
                         f"and {groups.shape} {groups.dtype}")
    outside = (groups < 0) | (groups >= n_groups)
    if outside.any():
        i = np.flatnonzero(outside)[0]
        raise InputError(f"group {groups[i]} of instance {i} is outside 0..{n_groups - 1}")
    groups = groups.astype(np.int64)
    counts = np.bincount(groups, minlength=n_groups).astype(np.int64)
    sums = np.bincount(groups, values, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), counts


def torso_forward_z(points: np.ndarray, front: np.ndarray, back: np.ndarray) -> np.ndarray:
    """(B,) float64 depth (z) component of the torso's back-to-front vector: mean of the ``front`` torso
    vertices minus mean of the ``back`` ones (DensePose parts 2 and 1). Negative: the chest faces the
    camera.

    By vertex identity rather than surface normals or a rigid fit: a depth mirror keeps the z of every
    face normal (it mirrors the positions and turns the mesh inside out), and a rotation fitted to a
    mirrored torso (thin in depth) keeps it facing as it was, so neither would see the mirror; this
    vector flips sign under it.

    Args:
        points: (B, N, 3) float camera frame. front, back: (N,) bool masks of the torso's front and back.
    """
    points = np.asarray(points, np.float64)
    front, back = np.asarray(front, bool), np.asarray(back, bool)
    if points.ndim != 3 or front.shape != points.shape[1:2] or back.shape != front.shape:
        raise InputError(f"points must be (B, N, 3) and front, back (N,), got {points.shape}, {front.shape}, "
                         f"{back.shape}")
    if not front.any() or not back.any():
        raise InputError("the torso needs front and back vertices")
    return points[:, front, 2].mean(axis=1) - points[:, back, 2].mean(axis=1)


def same_facing(pred: np.ndarray, true: np.ndarray, front: np.ndarray, back: np.ndarray) -> np.ndarray:
    """(B,) bool: the predicted torso faces the same way as the true one (towards or away from the
    camera): :func:`torso_forward_z` has the same sign.

    Args:
        pred, true: (B, N, 3) float camera frame. front, back: (N,) bool torso masks.
    """
    return np.sign(torso_forward_z(pred, front, back)) == np.sign(torso_forward_z(true, front, back))


def similarity_align(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(B, P, 3) float64: ``x`` moved onto ``y`` by the best rotation, translation and scale.

    Minimises ``sum_i |s R x_i + t - y_i|^2`` per instance (Umeyama; reflections excluded).

    Args:
        x, y: (B, P, 3) float corresponding points, P >= 3.
    """
    xt = torch.as_tensor(np.asarray(x, np.float64))
    yt = torch.as_tensor(np.asarray(y, np.float64))
    if xt.shape != yt.shape or xt.ndim != 3 or xt.shape[-1] != 3:
        raise InputError(f"x and y must both be (B, P, 3), got {tuple(xt.shape)} and {tuple(yt.shape)}")
    r, t, s = roma.rigid_points_registration(xt, yt, compute_scaling=True)
    aligned = s[:, None, None] * torch.einsum("bij,bpj->bpi", r, xt) + t[:, None]
    return aligned.numpy()


def re14(pred_joints: np.ndarray, true_joints: np.ndarray) -> np.ndarray:
    """(B,) float64 mean joint distance after similarity-aligning predicted to true joints.

    Args:
        pred_joints, true_joints: (B, J, 3) float (the 14 LSP joints from the regressor).
    """
    aligned = similarity_align(pred_joints, true_joints)
    return np.linalg.norm(aligned - np.asarray(true_joints, np.float64), axis=-1).mean(axis=-1)


class PartSums(NamedTuple):
    """Error sums and vertex counts per DensePose part or segment (index 0 unused when parts are 1-based):
    arrays of ``n_parts``, 25 for the 24 fine parts, 15 for the 14 coarse segments (``eval.parts``)."""

    sum_all: np.ndarray    # (n_parts,) float64
    count_all: np.ndarray  # (n_parts,) int64
    sum_visible: np.ndarray
    count_visible: np.ndarray


def part_sums(errors: np.ndarray, vertex_part: np.ndarray, visible: np.ndarray, n_parts: int) -> PartSums:
    """Sums of vertex errors by part, over all and over visible vertices.

    Args:
        errors: (B, N) float. vertex_part: (N,) int in 0..n_parts-1. visible: (B, N) bool.
        n_parts: the length of the returned arrays (25 for the fine parts 1..24, 15 for the coarse ones).
    """
    errors = np.asarray(errors, np.float64)
    visible = np.asarray(visible, bool)
    part = np.broadcast_to(np.asarray(vertex_part, np.int64), errors.shape)
    every = part.ravel()
    return PartSums(np.bincount(every, errors.ravel(), n_parts),
                    np.bincount(every, minlength=n_parts).astype(np.int64),
                    np.bincount(part[visible], errors[visible], n_parts),
                    np.bincount(part[visible], minlength=n_parts).astype(np.int64))


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).sum(-1)


def closest_point_on_triangles(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                               eps: float = 1e-20) -> torch.Tensor:
    """Closest points on triangles ``(a, b, c)`` to points ``p`` (Ericson, *Real-Time Collision
    Detection* §5.1.5, branch-free). All arguments broadcast: (..., 3) -> (..., 3).

    ``eps`` guards the divisions of degenerate (zero-area) triangles.
    """
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    bp = p - b
    d3, d4 = _dot(ab, bp), _dot(ac, bp)
    cp = p - c
    d5, d6 = _dot(ab, cp), _dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2

    def safe(num, den):
        return num / torch.where(den.abs() > eps, den, torch.full_like(den, eps))

    denom = va + vb + vc
    out = a + ab * safe(vb, denom)[..., None] + ac * safe(vc, denom)[..., None]  # inside the face
    # Voronoi regions, lowest priority first so that the earlier tests of Ericson's order win.
    in_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    out = torch.where(in_bc[..., None], b + (c - b) * safe(d4 - d3, (d4 - d3) + (d5 - d6))[..., None], out)
    in_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    out = torch.where(in_ac[..., None], a + ac * safe(d2, d2 - d6)[..., None], out)
    in_c = (d6 >= 0) & (d5 <= d6)
    out = torch.where(in_c[..., None], c.expand_as(out), out)
    in_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    out = torch.where(in_ab[..., None], a + ab * safe(d1, d1 - d3)[..., None], out)
    in_b = (d3 >= 0) & (d4 <= d3)
    out = torch.where(in_b[..., None], b.expand_as(out), out)
    in_a = (d1 <= 0) & (d2 <= 0)
    return torch.where(in_a[..., None], a.expand_as(out), out)


def point_to_mesh_distance(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                           chunk: int = 2048, pairs: int = 1 << 18) -> torch.Tensor:
    """Distance of each point to the nearest point of a triangle mesh's surface (exact).

    The distance to the nearest *vertex* bounds the answer from above, and ``|p - centre| - radius``
    (each face's bounding sphere) bounds each face's distance from below, so only the faces whose
    lower bound is below the upper bound can hold the nearest point. Points are grouped by how
    many such faces they have (rounded up to a power of two) and each tests exactly its group's
    count of faces with the smallest lower bounds: exact, and most points test a few dozen faces.

    Args:
        points: (P, 3) float. vertices: (N, 3) float. faces: (F, 3) long.
        chunk: points per block (memory ~ chunk * (F + N)). pairs: point-face pairs per batch.
    Returns:
        (P,) distances, in the units and dtype of ``points``.
    """
    tri = vertices[faces]  # (F, 3, 3)
    centre = tri.mean(dim=1)
    radius = (tri - centre[:, None]).norm(dim=-1).amax(dim=1)
    n_faces = len(faces)
    out = torch.empty(len(points), dtype=points.dtype, device=points.device)
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk]
        upper = torch.cdist(p, vertices).amin(dim=1)  # (P,) distance to the nearest vertex (this chunk's points)
        lower = (torch.cdist(p, centre) - radius).clamp_min(0)  # (P, F)
        need = (lower <= upper[:, None]).sum(dim=1).clamp_min(1)  # faces that may hold the nearest point
        bucket = torch.clamp(2 ** torch.ceil(torch.log2(need.double())), max=n_faces).long()
        d = torch.empty(len(p), dtype=p.dtype, device=p.device)
        for kk in torch.unique(bucket).tolist():
            rows_k = torch.nonzero(bucket == kk).flatten()
            step = max(1, pairs // kk)
            for b in range(0, len(rows_k), step):  # bound the (step, kk, 3, 3) temporaries
                rows = rows_k[b:b + step]
                idx = torch.topk(lower[rows], kk, dim=1, largest=False).indices
                cand = tri[idx]  # (len(rows), kk, 3, 3)
                q = closest_point_on_triangles(p[rows, None], cand[:, :, 0], cand[:, :, 1], cand[:, :, 2])
                d[rows] = (q - p[rows, None]).norm(dim=-1).amin(dim=1)
        out[s:s + chunk] = d
    return out


def s2s(vertices_a: np.ndarray, vertices_b: np.ndarray, faces: np.ndarray, faces_b: np.ndarray | None = None,
        device: str = "cpu") -> np.ndarray:
    """Surface-to-surface error between meshes: the mean over A's vertices of their distance to B's
    surface and over B's vertices to A's surface, averaged (Madadi et al. 2021, references/001).

    Args:
        vertices_a: (B, Na, 3) float. vertices_b: (B, Nb, 3) float.
        faces: (Fa, 3) int faces of A, also of B unless ``faces_b`` (Fb, 3) is given.
    Returns:
        (B,) float64, in the units of the vertices.
    """
    # float32: an order of magnitude faster than float64 on CPU, and exact to well under a micrometre
    va = torch.as_tensor(np.asarray(vertices_a, np.float32), device=device)
    vb = torch.as_tensor(np.asarray(vertices_b, np.float32), device=device)
    fa = torch.as_tensor(np.asarray(faces, np.int64), device=device)
    fb = fa if faces_b is None else torch.as_tensor(np.asarray(faces_b, np.int64), device=device)
    if va.ndim != 3 or vb.ndim != 3 or len(va) != len(vb):
        raise InputError(f"vertices must be (B, N, 3) with the same B, got {tuple(va.shape)} and {tuple(vb.shape)}")
    out = np.empty(len(va))
    for i in range(len(va)):
        ab = point_to_mesh_distance(va[i], vb[i], fb).mean()
        ba = point_to_mesh_distance(vb[i], va[i], fa).mean()
        out[i] = float(0.5 * (ab + ba))
    return out


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """The ROC AUC: P(score of a positive > score of a negative), ties counted half (the Mann–Whitney U over n₁ n₀).

    Args:
        score: (P,) float. positive: (P,) bool, both classes present.
    Raises:
        ValueError: one class is empty.
    """
    from scipy.stats import rankdata

    positive = np.asarray(positive, bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc needs both positives and negatives")
    r = rankdata(np.asarray(score, np.float64))
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
