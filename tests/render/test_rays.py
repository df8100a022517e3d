"""Warp ray casting: exact correspondence on known geometry, visibility against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.geometry.cameras import Cameras, crop_boxes, crop_pixel_centres, project, sample_cameras
from pipeline.render.rays import (BodyMeshes, cast_crops, surface_maps, surface_maps_reference,
                                  vertex_visibility, warp_device)

UP, FORWARD = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])


def _identity_cameras(n, projection="orthographic", focal=100.0, principal=(0.0, 0.0)):
    return Cameras(np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 3)), np.full(n, focal),
                   np.tile(np.asarray(principal, float), (n, 1)), projection)


def _quad(z=2.0, half=1.0):
    """A square in the plane z (camera frame = body frame here), split along its diagonal."""
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    return v, f


def test_plane_gives_exact_iuv():
    """A square facing the camera: every pixel hits it; part = its triangle; U, V and the embedding are
    the linear functions the corners define; depth is the plane's."""
    v, f = _quad()
    s = 16
    meshes = BodyMeshes(v[None], f)
    cams = _identity_cameras(1)
    box = np.array([[-90.0, -80.0, 90.0, 85.0]])  # inside the square (100 px per metre); no centre on the diagonal
    hits = cast_crops(meshes, np.array([0]), cams, box, s)
    assert (hits.face >= 0).all()
    assert np.allclose(hits.depth, 2.0, atol=1e-5)
    x, y = crop_pixel_centres(box, s)
    X, Y = np.meshgrid(x[0] / 100, y[0] / 100)  # metres; rows follow y
    face_part = np.array([3, 7], np.uint8)
    chart_uv = (v[:, :2] + 1) / 2  # U = (x + 1) / 2, V = (y + 1) / 2
    emb = np.stack([v[:, 0], v[:, 1], np.ones(4)], axis=1)  # embedding = (x, y, 1)
    maps = surface_maps(hits, f, face_part, chart_uv, f, emb)
    above = Y < X  # triangle 0 (corners 0, 1, 2) lies below the diagonal y = x
    assert np.array_equal(maps.labels[0], np.where(above, 3, 7))
    assert np.allclose(maps.uv[0, 0], (X + 1) / 2, atol=1e-5) and np.allclose(maps.uv[0, 1], (Y + 1) / 2, atol=1e-5)
    assert np.allclose(maps.embedding[0, 0], X, atol=2e-3) and np.allclose(maps.embedding[0, 2], 1, atol=1e-3)
    assert np.array_equal(maps.iuv[0, ..., 1], np.floor(255 * maps.uv[0, 0]).astype(np.uint8))
    ref = surface_maps_reference(hits, f, face_part, chart_uv, f, emb)
    assert np.array_equal(ref.labels, maps.labels) and np.allclose(ref.uv, maps.uv, atol=1e-6)
    assert np.array_equal(ref.iuv, maps.iuv)


def test_background_and_perspective():
    v, f = _quad(z=4.0, half=0.5)
    meshes = BodyMeshes(v[None], f)
    cams = _identity_cameras(1, "perspective", focal=100.0)
    box = np.array([[-40.0, -40.0, 40.0, 40.0]])  # the square spans +-12.5 px at z = 4
    hits = cast_crops(meshes, np.array([0]), cams, box, 32)
    x, _ = crop_pixel_centres(box, 32)
    inside = np.abs(x[0]) < 12.5
    assert np.array_equal(hits.face[0] >= 0, inside[None, :] & inside[:, None])
    assert np.allclose(hits.depth[0][hits.face[0] >= 0], 4.0, atol=1e-5)  # z, not ray length
    maps = surface_maps(hits, f, np.array([1, 2], np.uint8), np.zeros((4, 2)), f)
    assert maps.embedding is None and (maps.labels[0][hits.face[0] < 0] == 0).all()


def _brute_force_visible(vertices, faces, centre_dir, tol, perspective_centre=None):
    """Naive reference: per vertex, per face, Moller-Trumbore in plain Python loops."""
    vis = np.ones(len(vertices), bool)
    for k, p in enumerate(vertices):
        if perspective_centre is None:
            d, max_t = centre_dir, np.inf
        else:
            d = perspective_centre - p
            max_t = np.linalg.norm(d)
            d = d / max_t
        o = p + tol * d
        for a, b, c in faces:
            e1, e2 = vertices[b] - vertices[a], vertices[c] - vertices[a]
            h = np.cross(d, e2)
            det = e1 @ h
            if abs(det) < 1e-12:
                continue
            s = o - vertices[a]
            u = (s @ h) / det
            q = np.cross(s, e1)
            w = (d @ q) / det
            t = (e2 @ q) / det
            if u >= 0 and w >= 0 and u + w <= 1 and 0 < t < max_t - tol:
                vis[k] = False
                break
    return vis


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_visibility_matches_brute_force(projection):
    rng = np.random.default_rng(3)
    # a few random triangles in front of a grid of points: some points hidden, some not
    tri = rng.uniform(-1, 1, (12, 3)) * [1, 1, 0.3] + [0, 0, 2]
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9), [3.0]), -1).reshape(-1, 3)
    verts = np.vstack([tri, grid])
    faces = np.arange(12).reshape(4, 3)
    cams = _identity_cameras(1, projection)
    vis = vertex_visibility(BodyMeshes(verts[None], faces), np.array([0]), cams, tol=1e-3)[0]
    ref = _brute_force_visible(verts, faces, np.array([0, 0, -1.0]), 1e-3,
                               None if projection == "orthographic" else np.zeros(3))
    assert np.array_equal(vis, ref)
    assert 0 < (~vis[12:]).sum() < len(grid)  # the case tests something


def _body_cameras(template, n, projection="orthographic"):
    v = template.vertices.astype(np.float64)
    rngs = [np.random.default_rng([5, i]) for i in range(n)]
    centre = 0.5 * (v.min(0) + v.max(0))
    cams = sample_cameras(rngs, np.tile(centre, (n, 1)), elevation=(-20, 40), roll=(-10, 10), distance=(3, 4),
                          fov=40, image_size=512, projection=projection, up=template.up, forward=template.forward)
    cam_v = cams.to_camera(np.broadcast_to(v, (n, *v.shape)))
    px = project(cam_v, cams.focal, cams.principal, cams.projection)
    return v, cams, cam_v, px


@pytest.mark.parametrize("projection", ["orthographic", "perspective"])
def test_visibility_agrees_with_a_depth_buffer(template, projection):
    """>= 99% of vertices: visible iff the high-resolution depth at its pixel is not nearer than its
    own depth by more than the tolerance (disagreements are pixel discretisation at grazing angles:
    they shrink as the depth buffer's resolution grows)."""
    n, s, tol = 4, 1000, 0.01
    v, cams, cam_v, px = _body_cameras(template, n, projection)
    boxes = crop_boxes(px, 0.05)
    meshes = BodyMeshes(v[None], template.faces)
    body = np.zeros(n, int)
    vis = vertex_visibility(meshes, body, cams, tol=tol)
    hits = cast_crops(meshes, body, cams, boxes, s)
    col = np.clip(((px[..., 0] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]) * s).astype(int), 0, s - 1)
    row = np.clip(((px[..., 1] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) * s).astype(int), 0, s - 1)
    depth = hits.depth[np.arange(n)[:, None], row, col]
    fg = hits.face[np.arange(n)[:, None], row, col] >= 0
    zbuf_visible = ~fg | (cam_v[..., 2] <= depth + tol)
    agree = (zbuf_visible == vis).mean()
    assert agree >= 0.99, agree
    assert 0.3 < vis.mean() < 0.8


def test_surface_maps_kernel_matches_numpy(template):
    n, s = 3, 48
    v, cams, cam_v, px = _body_cameras(template, n)
    hits = cast_crops(BodyMeshes(v[None], template.faces), np.zeros(n, int), cams, crop_boxes(px, 0.1), s)
    args = (hits, template.faces, template.face_part, template.chart_uv, template.chart_faces, template.embedding)
    a, b = surface_maps(*args), surface_maps_reference(*args)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.mask, b.mask)
    assert np.allclose(a.uv, b.uv, atol=1e-6)
    assert np.allclose(a.embedding.astype(np.float32), b.embedding.astype(np.float32), atol=1e-3)
    assert (np.abs(a.iuv.astype(int) - b.iuv.astype(int)) <= 1).all()  # float rounding at bin edges
    assert set(np.unique(a.labels)) - {0} <= set(range(1, 25)) and a.mask.mean() > 0.2


def test_same_rays_on_cuda_when_present(template):
    dev = warp_device("auto")
    if dev == "cpu":
        pytest.skip("no CUDA device: the CUDA path is covered by the benchmark on a GPU machine")
    n, s = 2, 64
    v, cams, cam_v, px = _body_cameras(template, n)
    boxes = crop_boxes(px, 0.1)
    a = cast_crops(BodyMeshes(v[None], template.faces, "cpu"), np.zeros(n, int), cams, boxes, s)
    b = cast_crops(BodyMeshes(v[None], template.faces, dev), np.zeros(n, int), cams, boxes, s)
    assert (a.face == b.face).mean() > 0.995


def test_front_and_back_views_show_the_right_parts_on_the_right_side(template):
    """Rest pose seen from the front: torso front (2) not back (1), the left hand (4) on the image's
    right; from the back: the reverse (DensePose part ids, METHOD.md §1)."""
    from pipeline.geometry.cameras import look_at

    v = template.vertices.astype(np.float64)
    centre = 0.5 * (v.min(0) + v.max(0))
    rot, cen = look_at(np.tile(centre, (2, 1)), [0.0, 180.0], [0.0, 0.0], [0.0, 0.0], [3.0, 3.0],
                       template.up, template.forward)
    cams = Cameras(rot, cen, np.full(2, 200.0), np.full((2, 2), 256.0), "orthographic")
    px = project(cams.to_camera(np.broadcast_to(v, (2, *v.shape))), cams.focal, cams.principal, cams.projection)
    hits = cast_crops(BodyMeshes(v[None], template.faces), np.zeros(2, int), cams, crop_boxes(px, 0.05), 112)
    labels = surface_maps(hits, template.faces, template.face_part, template.chart_uv, template.chart_faces).labels
    cols = np.arange(112)[None, :]
    front, back = labels
    assert (front == 2).sum() > 200 and (front == 1).sum() < 20
    assert (back == 1).sum() > 200 and (back == 2).sum() < 20
    left_hand, right_hand = 4, 3
    assert np.broadcast_to(cols, front.shape)[front == left_hand].mean() > 70
    assert np.broadcast_to(cols, front.shape)[front == right_hand].mean() < 42
    assert np.broadcast_to(cols, back.shape)[back == left_hand].mean() < 42
