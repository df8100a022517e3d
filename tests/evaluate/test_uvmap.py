"""UV position maps: rasterisation, inpainting and read-back."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate.uvmap import atlas_image, barycentric, read_uv_maps, uv_layout, write_uv_maps


def _square_atlas():
    """Every one of the 24 charts is the unit square split into two triangles, over 4 vertices per chart."""
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    chart_uv = np.tile(uv, (24, 1))
    chart_part = np.repeat(np.arange(1, 25), 4)
    chart_vertex = np.arange(96)
    base = np.array([[0, 1, 2], [0, 2, 3]])
    chart_faces = np.concatenate([base + 4 * p for p in range(24)])
    return chart_uv, chart_faces, chart_part, chart_vertex


def test_barycentric_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    tri = rng.uniform(size=(5, 3, 2))
    pts = rng.uniform(size=(7, 2))
    got = barycentric(pts, tri)
    for i, p in enumerate(pts):
        for f, (a, b, c) in enumerate(tri):
            w = np.linalg.solve(np.array([[a[0], b[0], c[0]], [a[1], b[1], c[1]], [1, 1, 1]]), [p[0], p[1], 1])
            np.testing.assert_allclose(got[i, f], w, atol=1e-9)


def test_linear_field_round_trips_exactly_on_a_covered_chart():
    chart_uv, chart_faces, chart_part, chart_vertex = _square_atlas()
    layout = uv_layout(chart_uv, chart_faces, chart_part, chart_vertex, resolution=8)
    assert layout.covered.all()
    np.testing.assert_allclose(layout.texel_weight.sum(-1), 1, atol=1e-6)
    rng = np.random.default_rng(1)
    # values linear in (U, V) within each chart: the rasterised map is exact, so is bilinear read-back
    coef = rng.normal(size=(2, 24, 3, 3))  # per mesh, chart: value = A @ (u, v, 1)
    values = np.einsum("bpdk,pnk->bpnd", coef, np.concatenate([chart_uv.reshape(24, 4, 2), np.ones((24, 4, 1))], -1))
    values = values.reshape(2, 96, 3)
    maps = write_uv_maps(layout, values)
    assert maps.shape == (2, 24, 8, 8, 3)
    np.testing.assert_allclose(read_uv_maps(layout, maps), values, atol=1e-5)
    # texel (r, c) holds the value at U = (c + .5) / R, V = 1 - (r + .5) / R
    u, v = (2 + 0.5) / 8, 1 - (5 + 0.5) / 8
    np.testing.assert_allclose(maps[1, 7, 5, 2], coef[1, 7] @ [u, v, 1], atol=1e-5)


def test_empty_texels_take_the_nearest_texel_of_their_own_chart():
    chart_uv, chart_faces, chart_part, chart_vertex = _square_atlas()
    # chart 1 keeps one triangle only: the texels above the diagonal are empty and get inpainted
    keep = np.ones(len(chart_faces), bool)
    keep[1] = False
    layout = uv_layout(chart_uv, chart_faces[keep], chart_part, chart_vertex, resolution=8)
    assert not layout.covered[0].all() and layout.covered[1:].all()
    values = np.zeros((1, 96, 1), np.float32)
    values[0, 4:] = 100.0  # other charts hold 100: none of it may bleed into chart 1
    values[0, 2] = 1.0  # the corner (1, 1) on the diagonal, next to the empty half
    maps = write_uv_maps(layout, values)
    assert maps[0, 0].max() <= 1.0 + 1e-6
    assert (maps[0, 0][~layout.covered[0]] > 0).any()


def test_template_positions_round_trip(template):
    n = len(template.vertices)
    layout = uv_layout(template.chart_uv, template.chart_faces, template.chart_part, template.chart_vertex,
                       resolution=48, n_vertices=n)
    rng = np.random.default_rng(2)
    verts = template.vertices[None] + rng.normal(size=(2, 1, 3)) * 0.1  # two meshes, shifted
    maps = write_uv_maps(layout, verts)
    err = np.linalg.norm(read_uv_maps(layout, maps) - verts, axis=-1)
    # most vertices come back within two millimetres (DensePose's charts leave part of the square unused); the
    # worst are where the atlas squeezes many centimetres into one texel (hand and face charts), bounded by the
    # texel's footprint
    assert np.median(err) < 2e-3
    assert np.percentile(err, 90) < 2e-2
    assert err.max() < 0.06
    img = atlas_image(maps[0])
    assert img.shape == (4 * 48, 6 * 48, 3)
    np.testing.assert_array_equal(img[48:96, 96:144], maps[0, 8])  # row 1, column 2: part 9


def test_bad_inputs_are_named():
    chart_uv, chart_faces, chart_part, chart_vertex = _square_atlas()
    with pytest.raises(ValueError, match="resolution"):
        uv_layout(chart_uv, chart_faces, chart_part, chart_vertex, resolution=1)
    with pytest.raises(ValueError, match="no chart point"):
        uv_layout(chart_uv, chart_faces, chart_part, chart_vertex, resolution=4, n_vertices=97)
    layout = uv_layout(chart_uv, chart_faces, chart_part, chart_vertex, resolution=4)
    with pytest.raises(ValueError, match="values must be"):
        write_uv_maps(layout, np.zeros((1, 95, 3)))
    with pytest.raises(ValueError, match="maps must be"):
        read_uv_maps(layout, np.zeros((1, 24, 5, 5, 3)))
