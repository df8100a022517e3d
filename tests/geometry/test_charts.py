import numpy as np
import pytest
import trimesh

from pipeline.geometry.charts import (SQUARE_BULGE, atlas_from_uv_processed, boundary_self_intersects, build_atlas,
                                      oriented_loop, parameterize_disk, refined_atlas, signed_uv_areas,
                                      square_chart)
from pipeline.geometry.mesh import MeshError
from pipeline.template.file import COARSE_OF_PART, N_PARTS


def coverage(uv_tri: np.ndarray, res: int = 160) -> np.ndarray:
    """How many triangles cover each point of a res x res grid in [0,1]² (points on edges excluded)."""
    g = (np.arange(res) + 0.5) / res
    p = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    a, b, c = uv_tri[:, 0], uv_tri[:, 1], uv_tri[:, 2]

    def cross(o, d, q):  # (T, P)
        return (d[:, None, 0] - o[:, None, 0]) * (q[None, :, 1] - o[:, None, 1]) - \
               (d[:, None, 1] - o[:, None, 1]) * (q[None, :, 0] - o[:, None, 0])

    eps = 1e-9
    inside = (cross(a, b, p) > eps) & (cross(b, c, p) > eps) & (cross(c, a, p) > eps)
    return inside.sum(axis=0)


def test_every_face_in_exactly_one_part_and_all_24_parts(template):
    t = template
    assert t.face_part.shape == (len(t.faces),)
    assert np.array_equal(np.unique(t.face_part), np.arange(1, N_PARTS + 1))
    # each face's three chart points belong to its part, and map back to its vertices
    assert np.all(t.chart_part[t.chart_faces] == t.face_part[:, None])
    assert np.array_equal(t.chart_vertex[t.chart_faces], t.faces)
    # a chart point per (part, vertex) pair, no duplicates
    pairs = np.stack([t.chart_part, t.chart_vertex], 1)
    assert len(np.unique(pairs, axis=0)) == len(pairs)


@pytest.fixture(scope="module")
def own_template():
    """The default Anny body with the project's own charts (``template.charts: own``)."""
    from pipeline.template.build import anny_template

    return anny_template("notoes_collapse10pc", cse_dim=4, charts="own")


@pytest.mark.parametrize("charts", ["densepose", "own"])
def test_no_flipped_or_overlapping_triangles_in_any_chart(template, own_template, charts):
    from pipeline.template.densepose_layout import ORIENTATION

    t = template if charts == "densepose" else own_template
    assert t.charts == charts
    for p in range(1, N_PARTS + 1):
        sel = t.face_part == p
        uv = t.chart_uv.astype(np.float64)
        area = signed_uv_areas(uv, t.chart_faces[sel])
        sign = ORIENTATION[p] if charts == "densepose" else 1  # DensePose's charts turn either way, per part
        assert np.all(sign * area > 0), f"part {p}: {np.sum(sign * area <= 0)} flipped triangles"
        tri = uv[t.chart_faces[sel]]
        assert tri.min() >= 0 and tri.max() <= 1
        tri = tri if sign > 0 else tri[:, ::-1]  # counter-clockwise for the coverage count
        assert coverage(tri).max() <= 1, f"part {p}: overlapping triangles"
        pts = uv[np.unique(t.chart_faces[sel])]
        if charts == "own":  # the own chart fills the unit square's extent; DensePose's have their outlines
            assert np.allclose(pts.min(0), 0) and np.allclose(pts.max(0), 1)


def test_parts_mean_what_densepose_means(template):
    """Left parts lie on the body's left (+X for Anny), front parts face forward, the head is on top."""
    t = template
    v = t.vertices.astype(np.float64)
    left = np.cross(t.up, t.forward)
    centre = {p: v[np.unique(t.faces[t.face_part == p])].mean(0) for p in range(1, 25)}
    for p_left, p_right in [(4, 3), (5, 6), (8, 7), (10, 9), (12, 11), (14, 13), (15, 16), (17, 18),
                            (19, 20), (21, 22), (24, 23)]:
        assert centre[p_left] @ left > centre[p_right] @ left, (p_left, p_right)
    for back, front in [(1, 2), (7, 9), (8, 10), (11, 13), (12, 14)]:
        assert centre[front] @ t.forward > centre[back] @ t.forward, (back, front)
    heights = {p: centre[p] @ t.up for p in centre}
    assert heights[23] > heights[1] > heights[7] > heights[11] > heights[5]
    assert heights[15] > heights[19] > heights[4]
    assert COARSE_OF_PART[1] == COARSE_OF_PART[2] and COARSE_OF_PART[23] == 14


def test_build_atlas_on_another_mesh():
    """The chart builder works for any mesh and labelling: a sphere cut into 6 patches by octant."""
    m = trimesh.creation.icosphere(subdivisions=3)
    c = m.triangles_center
    lab = 1 + (c[:, 2] > 0) + 2 * (np.arctan2(c[:, 1], c[:, 0]) // (2 * np.pi / 3) + 1).astype(int)
    atlas = build_atlas(m.vertices, m.faces, lab)
    assert set(atlas.methods) == set(np.unique(lab).tolist())
    for p in np.unique(lab):
        f = atlas.chart_faces[lab == p]
        assert np.all(signed_uv_areas(atlas.chart_uv, f) > 0)
        assert coverage(atlas.chart_uv[f]).max() <= 1


def test_non_disk_part_is_refused_with_its_name():
    m = trimesh.creation.icosphere(subdivisions=2)
    band = np.abs(m.triangles_center[:, 2]) < 0.3  # an annulus: two boundary loops
    lab = np.where(band, 1, 2)
    lab[m.triangles_center[:, 2] < -0.3] = 3
    with pytest.raises(MeshError, match="part 1: has 2 boundary loops"):
        build_atlas(m.vertices, m.faces, lab)
    with pytest.raises(MeshError, match=r"parts \[7\] have no faces"):
        build_atlas(m.vertices, m.faces, lab, parts=[1, 2, 3, 7])


def test_fallback_gives_a_fold_free_map_for_a_bumpy_disk():
    """A hemisphere with a tall spike: whichever map is used, no triangle folds."""
    m = trimesh.creation.icosphere(subdivisions=3)
    keep = m.triangles_center[:, 2] > 0
    used, f = np.unique(m.faces[keep], return_inverse=True)
    v = m.vertices[used].copy()
    top = np.argmax(v[:, 2])
    v[top, 2] += 5.0
    uv, method = parameterize_disk(v, f.reshape(-1, 3))
    assert method in ("lscm", "harmonic", "tutte")
    assert np.all(signed_uv_areas(uv, f.reshape(-1, 3)) > 0)


def test_boundary_self_intersection():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    assert not boundary_self_intersects(square, np.arange(4))
    bowtie = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], float)
    assert boundary_self_intersects(bowtie, np.arange(4))


def test_uv_processed_tables_round_trip(template):
    t = template
    faces, atlas = atlas_from_uv_processed(t.chart_vertex + 1, t.chart_faces + 1, t.face_part,
                                           t.chart_uv[:, 0], t.chart_uv[:, 1])
    assert np.array_equal(faces, t.faces)
    assert np.array_equal(atlas.chart_part, t.chart_part)
    assert np.allclose(atlas.chart_uv, t.chart_uv)


def _hemisphere():
    """(vertices, faces, loop): the upper half of an icosphere, a disk with its rim as border."""
    m = trimesh.creation.icosphere(subdivisions=3)
    keep = m.vertices[m.faces].mean(axis=1)[:, 2] > 0.0
    sub = m.submesh([np.flatnonzero(keep)], append=True)
    v, f = np.asarray(sub.vertices, np.float64), np.asarray(sub.faces, np.int64)
    return v, f, oriented_loop(f)


def test_square_chart_puts_corners_and_landmarks_where_asked():
    v, f, loop = _hemisphere()
    b = len(loop)
    corners = np.array([0, b // 4, b // 2, 3 * b // 4])
    stop = b // 8  # halfway round side 0 in vertex count, asked at a quarter of the side
    uv, method = square_chart(v, f, loop, corners, stops=[(stop, 0, 0.25)])
    assert np.all(signed_uv_areas(uv, f) > 0)  # fold-free, counter-clockwise like the loop
    square = (np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) + SQUARE_BULGE) / (1 + 2 * SQUARE_BULGE)
    assert np.allclose(uv[loop[corners]], square, atol=1e-9)
    assert uv[loop[stop], 0] == pytest.approx((0.25 + SQUARE_BULGE) / (1 + 2 * SQUARE_BULGE), abs=1e-9)
    # onto an outline: the corners land on the outline's corners
    outline = np.array([[0.1, 0.0], [0.9, 0.05], [1.0, 0.95], [0.05, 1.0]])
    uv, method = square_chart(v, f, loop, corners, outline, np.arange(4))
    assert method in ("harmonic", "tutte") and np.allclose(uv[loop[corners]], outline)
    with pytest.raises(MeshError, match="increasing"):
        square_chart(v, f, loop, corners[::-1])
    with pytest.raises(MeshError, match="not inside side"):
        square_chart(v, f, loop, corners, stops=[(stop, 2, 0.5)])


def test_refined_atlas_reads_surface_points_and_keeps_seams_shared():
    """Two triangles of two charts sharing the mesh edge 1-2: level 1 is the atlas itself; level 2 adds each edge's
    midpoint once (the shared edge's midpoint is one point, in both charts, at each chart's own U, V); a chart
    coordinate between two vertices then reads the surface point between them, not a vertex."""
    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    chart_vertex = np.array([0, 1, 2, 1, 2, 3])  # chart points 0-2: part 1; 3-5: part 2
    chart_part = np.array([1, 1, 1, 2, 2, 2])
    chart_uv = np.array([[0, 0], [1, 0], [0, 1], [0.2, 0.2], [0.8, 0.2], [0.5, 0.9]])
    chart_faces = np.array([[0, 1, 2], [3, 4, 5]])
    part, uv, point, points = refined_atlas(chart_part, chart_uv, chart_vertex, chart_faces, vertices, 1)
    assert len(part) == 6 and len(points) == 4

    def rows(part, uv, xyz):
        return sorted(map(tuple, np.column_stack([part, uv, xyz]).round(6).tolist()))
    assert rows(part, uv, points[point]) == rows(chart_part, chart_uv, vertices[chart_vertex])  # the atlas itself
    part, uv, point, points = refined_atlas(chart_part, chart_uv, chart_vertex, chart_faces, vertices, 2)
    assert len(points) == 4 + 5 and len(part) == 12  # 5 edges' midpoints; 6 rows per chart
    middle = np.flatnonzero(np.all(np.isclose(points, [0.5, 0.5, 0]), axis=1))
    assert len(middle) == 1  # the shared edge's midpoint is one point ...
    rows = np.flatnonzero(point == middle[0])
    assert sorted(part[rows].tolist()) == [1, 2]  # ... in both charts, at each chart's own U, V
    assert np.allclose(uv[rows[part[rows] == 1]], [0.5, 0.5]) and np.allclose(uv[rows[part[rows] == 2]], [0.5, 0.2])
    from pipeline.geometry.charts import ChartLocator
    loc = ChartLocator(part, uv, point, n_parts=2)
    assert np.allclose(points[loc.vertices_of(1, np.array([[0.48, 0.02]]))], [0.5, 0, 0])  # between vertices 0 and 1
    with pytest.raises(ValueError, match="level"):
        refined_atlas(chart_part, chart_uv, chart_vertex, chart_faces, vertices, 0)
