"""Reconstruction metrics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from pipeline.evaluate import metrics as m


@pytest.fixture()
def shapes():
    """(4, 30, 3) random 'true' shapes in metres, depths around 4 m."""
    rng = np.random.default_rng(0)
    true = rng.normal(size=(4, 30, 3)) * 0.4
    true[..., 2] += 4.0
    return true


def test_image_to_camera_inverts_the_orthographic_camera(shapes):
    camera = np.array([[100.0, 256, 250], [50.0, 10, 20], [200.0, 0, 0], [1.0, 5, 5]])
    f, c = camera[:, None, :1], camera[:, None, 1:]
    image = np.concatenate([f * shapes[..., :2] + c, f * shapes[..., 2:]], axis=-1)
    np.testing.assert_allclose(m.image_to_camera(image, camera), shapes, atol=1e-12)
    with pytest.raises(ValueError, match="focal"):
        m.image_to_camera(image, camera * [0, 1, 1])


def test_depth_offset_gives_zero_mpjpe(shapes):
    pred = shapes.copy()
    pred[..., 2] += np.array([1.0, -3.0, 0.5, 100.0])[:, None]
    np.testing.assert_allclose(m.vertex_errors(pred, shapes), 0, atol=1e-12)
    # an x shift is not forgiven: every vertex is off by exactly the shift
    pred[..., 0] += 0.01
    np.testing.assert_allclose(m.vertex_errors(pred, shapes), 0.01, atol=1e-12)


def test_flat_reference_equals_the_depth_only_error(shapes):
    err = m.vertex_errors(m.flat_reference(shapes), shapes)
    z = shapes[..., 2]
    np.testing.assert_allclose(err, np.abs(z - z.mean(axis=1, keepdims=True)), atol=1e-12)


def test_depth_flip_is_the_mirror_and_involutive(shapes):
    flipped = m.flip_depth(shapes)
    np.testing.assert_allclose(m.vertex_errors(m.flip_depth(flipped), shapes), 0, atol=1e-12)
    # the mirror's error is twice each centred depth; the flat shape lies halfway
    z = m.centre_depth(shapes)[..., 2]
    np.testing.assert_allclose(m.vertex_errors(flipped, shapes), 2 * np.abs(z), atol=1e-12)


def test_re14_is_zero_for_a_similarity_transform(shapes):
    joints = shapes[:, :14]
    r = Rotation.from_euler("xyz", [[30, -20, 75], [0, 90, 0], [170, 5, -45], [1, 2, 3]], degrees=True).as_matrix()
    scale = np.array([0.5, 2.0, 1.0, 3.7])
    moved = scale[:, None, None] * np.einsum("bij,bpj->bpi", r, joints) + np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(m.re14(moved, joints), 0, atol=1e-9)
    # a mirror image is not a similarity transform: RE14 stays > 0
    assert (m.re14(joints * [1, 1, -1], joints) > 1e-3).all()


def test_re14_by_hand():
    # Umeyama by hand: cross-covariance diag(4, 2, 0) gives R = I, t = 0, s = (4 + 2) / 10 = 0.6;
    # residuals 0.2 (x points, 2 * 0.6 - 1) and 0.4 (y points, 1 - 0.6): mean 0.3
    true = np.array([[[-1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0]]])
    pred = true * [2, 1, 1]
    np.testing.assert_allclose(m.similarity_align(pred, true), true * [1.2, 0.6, 1], atol=1e-12)
    np.testing.assert_allclose(m.re14(pred, true), [0.3], atol=1e-12)


def test_part_sums_by_hand():
    errors = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    visible = np.array([[True, False, True, False], [False, False, True, True]])
    s = m.part_sums(errors, np.array([1, 1, 2, 2]), visible, 3)
    np.testing.assert_allclose(s.sum_all, [0, 33, 77])
    np.testing.assert_array_equal(s.count_all, [0, 4, 4])
    np.testing.assert_allclose(s.sum_visible, [0, 1, 73])
    np.testing.assert_array_equal(s.count_visible, [0, 1, 3])


def _naive_point_triangle(p, a, b, c):
    """Distance from p to triangle abc: the plane projection if it falls inside, else the nearest edge."""
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n)
    q = p - np.dot(p - a, n) * n
    inside = all(np.dot(np.cross(v1 - v0, q - v0), n) >= 0 for v0, v1 in ((a, b), (b, c), (c, a)))
    if inside:
        return abs(np.dot(p - a, n))

    def seg(v0, v1):
        t = np.clip(np.dot(p - v0, v1 - v0) / np.dot(v1 - v0, v1 - v0), 0, 1)
        return np.linalg.norm(p - (v0 + t * (v1 - v0)))

    return min(seg(a, b), seg(b, c), seg(c, a))


def test_point_to_mesh_distance_matches_a_naive_loop():
    rng = np.random.default_rng(1)
    mesh = trimesh.creation.icosphere(subdivisions=1)
    verts = mesh.vertices + rng.normal(size=mesh.vertices.shape) * 0.05  # irregular triangles
    pts = rng.normal(size=(60, 3)) * 0.8
    v, f, p = torch.as_tensor(verts), torch.as_tensor(mesh.faces), torch.as_tensor(pts)
    tri = verts[mesh.faces]
    ref = np.array([min(_naive_point_triangle(q, *t) for t in tri) for q in pts])
    np.testing.assert_allclose(m.point_to_mesh_distance(p, v, f).numpy(), ref, atol=1e-9)
    # small blocks and batches give the same
    np.testing.assert_allclose(m.point_to_mesh_distance(p, v, f, chunk=7, pairs=5).numpy(), ref, atol=1e-9)
    # brute force over every face agrees
    tri_t = torch.as_tensor(tri)
    q = m.closest_point_on_triangles(p[:, None], tri_t[None, :, 0], tri_t[None, :, 1], tri_t[None, :, 2])
    np.testing.assert_allclose((q - p[:, None]).norm(dim=-1).amin(dim=1).numpy(), ref, atol=1e-9)


def test_s2s_identical_is_zero_and_a_shift_is_its_length():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v, f = np.asarray(sphere.vertices)[None], np.asarray(sphere.faces)
    assert m.s2s(v, v, f)[0] == pytest.approx(0, abs=1e-7)
    d = 0.01
    assert m.s2s(v * (1 + d), v, f)[0] == pytest.approx(d, rel=0.02)  # each vertex moves d along its normal
    # a flat grid shifted along its normal by d: exactly d both ways
    grid = trimesh.creation.box(extents=(1.0, 1.0, 1.0)).subdivide().subdivide()
    top = grid.vertices[:, 2] > 0.49
    keep = top[grid.faces].all(axis=1)
    sheet = trimesh.Trimesh(grid.vertices, grid.faces[keep], process=False)
    sheet.remove_unreferenced_vertices()
    sv, sf = np.asarray(sheet.vertices)[None], np.asarray(sheet.faces)
    assert m.s2s(sv + [0, 0, d], sv, sf)[0] == pytest.approx(d, rel=1e-5)
    with pytest.raises(ValueError, match="same B"):
        m.s2s(sv, np.concatenate([sv, sv]), sf)


def test_xy_z_split_of_a_pure_depth_error_has_no_image_plane_part(shapes):
    rng = np.random.default_rng(1)
    pred = shapes.copy()
    pred[..., 2] += rng.normal(size=shapes.shape[:2]) * 0.05 + 3.0  # depth error (and an offset)
    xy, z = m.xy_z_errors(pred, shapes)
    np.testing.assert_allclose(xy, 0, atol=1e-12)
    dz = pred[..., 2] - shapes[..., 2]
    np.testing.assert_allclose(z, np.abs(dz - dz.mean(axis=1, keepdims=True)), atol=1e-12)
    np.testing.assert_allclose(z, m.vertex_errors(pred, shapes), atol=1e-12)
    # an image-plane shift (3, 4) mm: xy 5 mm, z 0; the parts add up in quadrature
    xy, z = m.xy_z_errors(shapes + [0.003, 0.004, 0.0], shapes)
    np.testing.assert_allclose(xy, 0.005, atol=1e-12)
    np.testing.assert_allclose(z, 0, atol=1e-12)
    rnd = shapes + rng.normal(size=shapes.shape) * 0.01
    xy, z = m.xy_z_errors(rnd, shapes)
    np.testing.assert_allclose(np.hypot(xy, z), m.vertex_errors(rnd, shapes), atol=1e-12)


@pytest.mark.parametrize("n", [7, 1229, 9001])  # 9001: past numpy's 8192-element reduction buffers
def test_batch_vertex_errors_are_bit_for_bit_the_separate_ones(n):
    rng = np.random.default_rng(n)
    true = rng.normal(size=(3, n, 3)) * rng.choice([1e-4, 0.4, 10.0], size=(3, n, 3)) + [0.0, 0.0, 4.0]
    pred = true + rng.normal(size=true.shape) * 0.05 + [0.0, 0.0, 2.5]
    kept = pred.copy(), true.copy()
    e = m.batch_vertex_errors(pred, true)
    xy, z = m.xy_z_errors(pred, true)
    for got, expected in ((e.all, m.vertex_errors(pred, true)), (e.flip, m.vertex_errors(m.flip_depth(pred), true)),
                          (e.flat, m.vertex_errors(m.flat_reference(true), true)), (e.xy, xy), (e.z, z)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(pred, kept[0])  # inputs untouched
    np.testing.assert_array_equal(true, kept[1])
    with pytest.raises(ValueError, match="pred and true"):
        m.batch_vertex_errors(pred[:, :-1], true)


def _turned(canonical: np.ndarray, azimuth_deg: np.ndarray, elevation_deg: float = 0.0) -> np.ndarray:
    """(B, P, 3): the canonical body seen by a camera at ``azimuth_deg`` (the body turned about its up
    axis, -y, by minus that), ``elevation_deg`` above it (a rotation about the camera's x axis), 4 m away."""
    yaw = Rotation.from_rotvec(-np.radians(azimuth_deg)[:, None] * [0.0, -1.0, 0.0]).as_matrix()
    tilt = Rotation.from_rotvec([np.radians(elevation_deg), 0, 0]).as_matrix()
    return np.einsum("ij,bjk,pk->bpi", tilt, yaw, canonical) + [0.1, -0.2, 4.0]


@pytest.fixture(scope="module")
def canonical_body(template):
    """(N, 3) float64 canonical template (metres), torso mask, front and back torso masks."""
    from pipeline.template.file import canonical_template

    c, scale = canonical_template(template.vertices, template.up, template.forward)
    vp = template.vertex_part
    return c.astype(np.float64) * scale, np.isin(vp, (1, 2)), vp == 2, vp == 1


def test_view_azimuth_of_the_turned_template(canonical_body, template):
    body, torso, _, _ = canonical_body
    angles = np.array([0.0, 30.0, 45.0, 90.0, 135.0, 179.0, -179.0, -45.0, -90.0, -120.0])
    for elevation in (0.0, 25.0, -40.0):
        az = m.view_azimuth(body[torso], _turned(body, angles, elevation)[:, torso])
        np.testing.assert_allclose(np.mod(az - angles + 180, 360) - 180, 0, atol=1.0)
    # noise on the torso does not move it by a degree
    noise = np.random.default_rng(0).normal(size=(len(angles), torso.sum(), 3)) * 0.005
    noisy = _turned(body, angles)[:, torso] + noise
    assert np.abs(np.mod(m.view_azimuth(body[torso], noisy) - angles + 180, 360) - 180).max() < 1.0
    # the convention: at +90 the body's left side faces the camera (smaller depth), at -90 its right side
    right = np.isin(template.vertex_part, (16, 18, 20, 22, 3))
    left = np.isin(template.vertex_part, (15, 17, 19, 21, 4))
    shapes = _turned(body, np.array([90.0, -90.0]))
    assert shapes[0, left, 2].mean() < shapes[0, right, 2].mean() - 0.2
    assert shapes[1, right, 2].mean() < shapes[1, left, 2].mean() - 0.2
    # the same convention as the synthetic cameras: a look_at camera at azimuth a sees view azimuth a
    from pipeline.geometry.cameras import look_at

    rot, centre = look_at(np.zeros((len(angles), 3)), angles, np.full(len(angles), 20.0), np.full(len(angles), 5.0),
                          np.full(len(angles), 3.0), template.up, template.forward)
    seen = np.einsum("nij,vj->nvi", rot, template.vertices - template.vertices.mean(0))
    az = m.view_azimuth(body[torso], seen[:, torso])
    np.testing.assert_allclose(np.mod(az - angles + 180, 360) - 180, 0, atol=1.0)
    with pytest.raises(ValueError, match="canonical"):
        m.view_azimuth(body[torso], shapes)


def test_azimuth_bins_keys_and_shares():
    az = np.array([0.0, 22.0, 23.0, -22.4, 44.0, 157.6, 179.0, -179.0, -100.0, -157.4, -67.4, -67.6])
    np.testing.assert_array_equal(m.azimuth_bins(az), [0, 0, 1, 0, 1, 4, 4, 4, 6, 5, 7, 6])
    assert [m.azimuth_key(c) for c in m.AZIMUTH_CENTRES] == ["az+000", "az+045", "az+090", "az+135", "az+180",
                                                             "az-135", "az-090", "az-045"]
    share, count = m.binned_share(np.array([True, False, True, True]), np.array([0, 0, 2, 2]), 4)
    np.testing.assert_array_equal(count, [2, 0, 2, 0])
    np.testing.assert_allclose(share, [0.5, np.nan, 1.0, np.nan])


def test_a_mirrored_torso_faces_the_wrong_way(canonical_body):
    body, _, front, back = canonical_body
    angles = np.array([0.0, 60.0, -60.0, 150.0, 180.0, -120.0])
    true = _turned(body, angles)
    z = m.torso_forward_z(true, front, back)
    np.testing.assert_array_equal(z < 0, np.abs(angles) < 90)  # the chest towards the camera: negative
    np.testing.assert_array_equal(m.same_facing(true, true, front, back), True)
    np.testing.assert_array_equal(m.same_facing(m.flip_depth(true), true, front, back), False)
    # a body turned by half a turn faces the other way too; a small turn does not change the facing
    np.testing.assert_array_equal(m.same_facing(_turned(body, angles + 180), true, front, back), False)
    np.testing.assert_array_equal(m.same_facing(_turned(body, angles + 10), true, front, back), True)


def test_visible_share_bins_partition_zero_to_one():
    share = np.array([0.0, 0.2999, 0.3, 0.4999, 0.5, 0.6999, 0.7, 1.0])
    np.testing.assert_array_equal(m.visible_share_bins(share), [0, 0, 1, 1, 2, 2, 3, 3])
    assert m.VISIBLE_SHARE_KEYS == ("vis00-30", "vis30-50", "vis50-70", "vis70-100")
    # in the shares' own precision: a float32 0.3 or 0.7 (0.30000001, 0.69999999) is on its edge
    np.testing.assert_array_equal(m.visible_share_bins(np.float32([0.3, 0.5, 0.7])), [1, 2, 3])
    every = np.random.default_rng(0).random(1000)
    bins = m.visible_share_bins(every)
    for k, (lo, hi) in enumerate(zip(m.VISIBLE_SHARE_EDGES[:-1], m.VISIBLE_SHARE_EDGES[1:])):
        assert ((every >= lo) & (every < hi) == (bins == k)).all()  # each share in exactly one bin
    for bad in ([0.5, np.nan], [1.01], [-0.1]):
        with pytest.raises(ValueError, match="visible shares must lie in"):
            m.visible_share_bins(np.array(bad))


def test_group_means_and_the_breakdown_by_hand():
    from pipeline.evaluate.measures import error_breakdown

    mean, count = m.group_means(np.array([1.0, 2.0, 3.0, 5.0]), np.array([0, 0, 2, 2], np.int8), 4)
    np.testing.assert_array_equal(count, [2, 0, 2, 0])
    np.testing.assert_array_equal(mean, [1.5, np.nan, 4.0, np.nan])
    with pytest.raises(ValueError, match="group 4 of instance 1 is outside 0..3"):
        m.group_means(np.zeros(2), np.array([0, 4]), 4)
    # per-instance mean vertex errors (metres) and the flat reference's; a group's MPJPE is its instances' alone
    err = np.array([[0.1, 0.3], [0.2, 0.2], [0.05, 0.05], [0.4, 0.0]])  # (n, N) vertex errors
    flat = np.array([0.4, 0.8, 0.1, 0.0])
    table = error_breakdown(err.mean(1), flat, np.array([0, 1, 0, 3]), ("walk", "reach", "sit", "bend"))
    assert table == {
        "walk": {"instances": 2, "mpjpe_mm": pytest.approx(1000 * err[[0, 2]].mean()),  # 125 mm
                 "flat_mpjpe_mm": pytest.approx(250.0), "ratio": pytest.approx(0.5)},
        "reach": {"instances": 1, "mpjpe_mm": pytest.approx(200.0), "flat_mpjpe_mm": pytest.approx(800.0),
                  "ratio": pytest.approx(0.25)},
        "sit": {"instances": 0, "mpjpe_mm": None, "flat_mpjpe_mm": None, "ratio": None},
        "bend": {"instances": 1, "mpjpe_mm": pytest.approx(200.0), "flat_mpjpe_mm": 0.0, "ratio": None}}
