import numpy as np
import pytest

from pipeline.geometry.cameras import crop_pixel_centres
from pipeline.geometry.mesh import vertex_areas
from pipeline.keypoints.lookup import (VertexKeypoints, aggregate, drop_inconsistent, iuv_lookup_table,
                                       iuv_to_vertices, nearest_embedding, one_ring, visible_area_share)
from pipeline.template.file import decode_uv


@pytest.fixture(scope="module")
def lut(template):
    return iuv_lookup_table(template.chart_part, template.chart_uv, template.chart_vertex)


def naive_vertex(template, i, u, v):
    """The chart point of part i nearest to the decoded (u, v), by a loop over all chart points."""
    best, best_d = -1, np.inf
    uu, vv = decode_uv(np.array([u, v], np.uint8))
    for k in range(len(template.chart_part)):
        if template.chart_part[k] != i:
            continue
        d = (template.chart_uv[k, 0] - uu) ** 2 + (template.chart_uv[k, 1] - vv) ** 2
        if d < best_d:
            best, best_d = template.chart_vertex[k], d
    return best, best_d


def test_lookup_table_matches_a_naive_search(template, lut):
    rng = np.random.default_rng(0)
    for _ in range(200):
        i, u, v = int(rng.integers(1, 25)), int(rng.integers(0, 256)), int(rng.integers(0, 256))
        want, d = naive_vertex(template, i, u, v)
        got = lut[i, u, v]
        if got != want:  # a tie: the other chart point must be exactly as near
            k = np.flatnonzero((template.chart_part == i) & (template.chart_vertex == got))
            uu, vv = decode_uv(np.array([u, v], np.uint8))
            assert np.isclose(((template.chart_uv[k] - [uu, vv]) ** 2).sum(1).min(), d)
    assert np.all(lut[0] == -1) and lut.min(initial=0) >= -1 and lut[1:].min() >= 0


def test_chart_points_map_back_to_their_vertex(template, lut):
    """Quantising a chart point's own (U, V) lands on it unless another point shares its bin."""
    q = np.floor(np.clip(template.chart_uv * 255, 0, 255)).astype(np.uint8)
    iuv = np.stack([template.chart_part, q[:, 0], q[:, 1]], -1)[None, :, None, :]  # (1, C, 1, 3)
    got = iuv_to_vertices(iuv, lut)[0, :, 0]
    same = got == template.chart_vertex
    assert same.mean() > 0.97
    # where it differs, the chosen vertex's chart point is within one quantisation bin
    for k in np.flatnonzero(~same):
        pts = template.chart_uv[(template.chart_part == template.chart_part[k]) & (template.chart_vertex == got[k])]
        assert np.abs(pts - template.chart_uv[k]).max() < 2 / 255


def test_aggregate_matches_a_loop():
    rng = np.random.default_rng(1)
    n, s, nv = 3, 6, 5
    vertex = rng.integers(-1, nv, size=(n, s, s))
    boxes = np.array([[0, 0, 6, 6], [10, 20, 22, 26], [5.5, 1, 8.5, 4]], float)
    kp = aggregate(vertex, boxes, nv)
    xs, ys = crop_pixel_centres(boxes, s)
    for k in range(n):
        for i in range(nv):
            pts = [(xs[k, c], ys[k, r]) for r in range(s) for c in range(s) if vertex[k, r, c] == i]
            assert kp.visible[k, i] == bool(pts) and kp.count[k, i] == len(pts)
            if pts:
                assert np.allclose(kp.xy[k, i], np.mean(pts, 0), atol=1e-4)
            else:
                assert np.all(kp.xy[k, i] == 0)
    assert np.allclose(xs[0], np.arange(6) + 0.5) and np.allclose(ys[1], 20 + (np.arange(6) + 0.5))


def test_nearest_embedding_matches_brute_force():
    rng = np.random.default_rng(2)
    e = rng.normal(size=(50, 8)).astype(np.float32)
    p = rng.normal(size=(1000, 8)).astype(np.float32)
    want = np.argmin(((p[:, None] - e[None]) ** 2).sum(-1), 1)
    assert np.array_equal(nearest_embedding(p, e, chunk=128), want)


def test_visible_area_share(template):
    areas = vertex_areas(template.vertices, template.faces)
    vis = np.zeros((2, len(areas)), bool)
    vis[1] = True
    share = visible_area_share(vis, areas)
    assert share[0] == 0 and share[1] == pytest.approx(1.0)
    assert areas.sum() == pytest.approx(1.7, rel=0.25)  # a human body has about 1.7 m² of skin


def test_bad_part_index_is_an_error(lut):
    with pytest.raises(ValueError, match="part index 30"):
        iuv_to_vertices(np.full((1, 2, 2, 3), 30, np.uint8), lut)


def test_one_ring_lists_each_vertex_neighbours_once(template):
    ring = one_ring(template.faces, template.n_vertices)
    pairs = {(int(a), int(b)) for f in template.faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    pairs |= {(b, a) for a, b in pairs}
    listed = {(v, int(w)) for v in range(template.n_vertices) for w in ring[v] if w >= 0}
    assert listed == pairs and all(len(set(r[r >= 0])) == (r >= 0).sum() for r in ring)


def test_drop_inconsistent_removes_a_keypoint_that_strays_from_its_neighbours(template):
    ring = one_ring(template.faces, template.n_vertices)
    v = template.vertices
    xy = (v[:, [0, 2]] * np.array([60.0, -60.0]) + 80.0)[None].astype(np.float32)  # a front view, 60 px/m
    kp = VertexKeypoints(xy.copy(), np.ones((1, template.n_vertices), bool), np.ones((1, template.n_vertices),
                                                                                      np.uint16))
    boxes = np.array([[0.0, 0.0, 160.0, 160.0]])  # crop 112: 1.43 image px a crop px
    same, gone = drop_inconsistent(kp, ring, boxes, 112, 6.0)
    assert not gone.any() and np.array_equal(same.xy, kp.xy)  # a smooth surface: neighbours a few px apart
    stray = kp.xy.copy()
    stray[0, 100] += 40.0  # one keypoint 28 crop px off (its twin's place)
    out, gone = drop_inconsistent(VertexKeypoints(stray, kp.visible, kp.count), ring, boxes, 112, 6.0)
    assert gone[0, 100] and gone.sum() == 1  # its neighbours' medians ignore it
    assert not out.visible[0, 100] and np.all(out.xy[0, 100] == 0) and out.count[0, 100] == 0
    hidden = kp.visible.copy()
    hidden[0, ring[100][ring[100] >= 0]] = False  # no visible neighbour: nothing to compare with, kept
    out, gone = drop_inconsistent(VertexKeypoints(stray, hidden, kp.count), ring, boxes, 112, 6.0)
    assert not gone[0, 100] and out.visible[0, 100]
