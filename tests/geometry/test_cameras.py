"""Cameras: frames, projection, boxes and crop geometry."""

from __future__ import annotations

import numpy as np

from pipeline.geometry.cameras import crop_boxes, crop_pixel_centres, look_at, project, sample_cameras

UP, FORWARD = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])  # Anny: Z up, facing -Y; left is +X


def test_look_at_frames_are_rotations_facing_the_target():
    rng = np.random.default_rng(0)
    n = 50
    target = rng.normal(size=(n, 3))
    rot, centre = look_at(target, rng.uniform(0, 360, n), rng.uniform(-60, 60, n), rng.uniform(-30, 30, n),
                          rng.uniform(2, 5, n), UP, FORWARD)
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)  # no mirror
    cam_target = np.einsum("nij,nj->ni", rot, target - centre)
    assert np.allclose(cam_target[:, :2], 0, atol=1e-9) and (cam_target[:, 2] > 0).all()


def test_front_view_sees_left_on_the_right_and_up_at_the_top():
    rot, centre = look_at(np.zeros((1, 3)), [0.0], [0.0], [0.0], [3.0], UP, FORWARD)
    assert np.allclose(centre[0], [0, -3, 0])  # in front of the body
    pts = np.array([[[0.2, 0, 0], [0, 0, 0.5]]])  # the body's left, the top of the head
    cam = np.einsum("nij,nvj->nvi", rot, pts - centre[:, None])
    px = project(cam, np.array([100.0]), np.array([[256.0, 256.0]]), "orthographic")[0]
    assert px[0, 0] > 256 and np.isclose(px[0, 1], 256)  # left of the body: right of the image
    assert px[1, 1] < 256  # up: smaller row


def test_projection_models():
    cam = np.array([[[0.5, -0.25, 2.0]]])
    f, c = np.array([100.0]), np.array([[10.0, 20.0]])
    assert np.allclose(project(cam, f, c, "orthographic"), [[[60.0, -5.0]]])
    assert np.allclose(project(cam, f, c, "perspective"), [[[35.0, 7.5]]])


def test_boxes_and_crop_pixel_centres():
    pts = np.array([[[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]]])
    box = crop_boxes(pts, 0.1)
    assert np.allclose(box, [[8.0, 16.0, 32.0, 64.0]])
    x, y = crop_pixel_centres(box, 4)
    assert np.allclose(x, [[11.0, 17.0, 23.0, 29.0]]) and np.allclose(y, [[22.0, 34.0, 46.0, 58.0]])


def test_sample_cameras_ranges_and_determinism():
    def draw():
        rngs = [np.random.default_rng([1, i]) for i in range(20)]
        return sample_cameras(rngs, np.zeros((20, 3)), elevation=(10, 20), roll=(0, 0), distance=(3, 4), fov=40,
                              image_size=512, projection="orthographic", up=UP, forward=FORWARD)

    a, b = draw(), draw()
    assert np.array_equal(a.rotation, b.rotation) and np.array_equal(a.focal, b.focal)
    toward = a.centre / np.linalg.norm(a.centre, axis=1, keepdims=True)
    elev = np.degrees(np.arcsin(toward @ UP))
    assert (elev >= 10 - 1e-9).all() and (elev <= 20 + 1e-9).all()
    dist = np.linalg.norm(a.centre, axis=1)
    assert (dist >= 3).all() and (dist <= 4).all()
    # orthographic pixels per metre = perspective focal / distance
    f = 256 / np.tan(np.radians(20))
    assert np.allclose(a.focal * dist, f)
