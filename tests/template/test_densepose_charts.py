"""The open template's charts in DensePose's convention (template.charts: densepose, the default): fold-free,
covering each part, laid out as DensePose lays its charts out, and the refused combination."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.errors import InputError
from pipeline.densepose.door import check_chart_convention
from pipeline.geometry.charts import signed_uv_areas
from pipeline.render.corruption import chart_mirror
from pipeline.template.densepose_charts import border_neighbours, longest_run
from pipeline.template.densepose_layout import (END_TIP, LIMB_PROXIMAL_AT_U1, ORIENTATION, ORIENTATION_SHARE, OUTLINE,
                                                OUTLINE_CORNERS, PROXIMAL)
from pipeline.template.file import N_PARTS, SEGMENTS


def _part_uv(t, p):
    """{vertex: (U, V)} of part p's chart points."""
    sel = np.flatnonzero(t.chart_part == p)
    return {int(t.chart_vertex[k]): t.chart_uv[k].astype(np.float64) for k in sel}


def _shared(t, p, q):
    """(k, 2), (k, 2): the (U, V) in p's and in q's chart of the vertices on the seam of parts p and q."""
    a, b = _part_uv(t, p), _part_uv(t, q)
    common = sorted(set(a) & set(b))
    return np.array([a[v] for v in common]).reshape(-1, 2), np.array([b[v] for v in common]).reshape(-1, 2)


def test_densepose_charts_are_the_default_and_recorded(template):
    assert template.charts == "densepose"


def test_densepose_charts_are_fold_free_cover_their_part_and_keep_densepose_orientation(template):
    t = template
    uv = t.chart_uv.astype(np.float64)
    assert uv.min() >= 0 and uv.max() <= 1
    for p in range(1, N_PARTS + 1):
        faces = t.chart_faces[t.face_part == p]
        assert len(faces), p
        area = signed_uv_areas(uv, faces)
        # every face of the part is in its chart, none folded, none flat, all turning DensePose's way
        assert np.all(np.sign(area) == ORIENTATION[p]), f"part {p}: folded or wrongly oriented faces"
        assert np.abs(area).min() > 1e-9 * np.abs(area).sum(), f"part {p}: a flat face"
        # the chart covers DensePose's extent: its points span most of the unit square in both axes
        pts = uv[np.unique(faces)]
        assert np.all(np.ptp(pts, axis=0) > 0.6), f"part {p}: chart spans only {np.ptp(pts, axis=0)}"


def test_densepose_charts_orientation_table_is_mirror_consistent():
    """Left/right twins of the limbs have opposite orientation signs (their charts are the same, the mirror
    reverses the surface), as measured; every measured share is decisive."""
    for name, (back, front) in SEGMENTS.items():
        if name.startswith("left") and back != front:
            twin = SEGMENTS[name.replace("left", "right")]
            assert ORIENTATION[back] == -ORIENTATION[twin[0]] and ORIENTATION[front] == -ORIENTATION[twin[1]]
    assert all(s > 0.75 or s < 0.25 for s in ORIENTATION_SHARE.values())
    for p in OUTLINE:
        poly = np.asarray(OUTLINE[p])
        assert poly.min() >= 0 and poly.max() <= 1 and OUTLINE_CORNERS[p][0] == 0
        area = 0.5 * np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
        assert area > 0.5, f"part {p}: outline area {area}"


def test_densepose_charts_limbs_meet_their_neighbours_on_densepose_edges(template):
    """A limb's border with its proximal segment lies on U = 0 (or U = 1 where DensePose puts it there), its
    border with its front/back twin on the V = 0 and V = 1 sides."""
    t = template
    for p, segment in PROXIMAL.items():
        if p in (3, 4, 5, 6, 23, 24) or p in SEGMENTS["torso"]:
            continue
        own = next(s for s, ids in SEGMENTS.items() if p in ids)
        twin = [q for q in SEGMENTS[own] if q != p][0]
        prox = np.concatenate([_shared(t, p, q)[0] for q in SEGMENTS[segment] if len(_shared(t, p, q)[0])])
        u = np.median(prox[:, 0])
        assert (u > 0.8) if p in LIMB_PROXIMAL_AT_U1 else (u < 0.2), f"part {p}: proximal seam at U {u:.2f}"
        v = _shared(t, p, twin)[0][:, 1]
        # on the V = 0 and V = 1 sides of DensePose's outline (which leaves the square's corners in places)
        assert np.mean(np.abs(v - 0.5)) > 0.25 and v.min() < 0.3 and v.max() > 0.7, f"part {p}: twin seam {v}"


def test_densepose_charts_torso_and_head_layout(template):
    t = template
    for torso in SEGMENTS["torso"]:
        head = np.concatenate([_shared(t, torso, q)[0] for q in SEGMENTS["head"]])
        left_leg = np.concatenate([_shared(t, torso, q)[0] for q in SEGMENTS["left upper leg"]])
        right_leg = np.concatenate([_shared(t, torso, q)[0] for q in SEGMENTS["right upper leg"]])
        assert np.median(head[:, 0]) < 0.25  # neck at small U
        assert np.median(left_leg[:, 0]) > 0.75 and np.median(right_leg[:, 0]) > 0.75  # hips at large U
        assert np.median(left_leg[:, 1]) < np.median(right_leg[:, 1])  # left at small V
    # head halves: the face midline is 23's U = 1 edge and 24's U = 0 edge; the neck is V = 0
    fwd = t.forward.astype(np.float64)
    r, l = _shared(t, 23, 24)
    common = sorted(set(_part_uv(t, 23)) & set(_part_uv(t, 24)))
    front = t.vertices[common].astype(np.float64) @ fwd > np.median(t.vertices[common] @ fwd)
    assert np.median(r[front, 0]) > 0.6 and np.median(l[front, 0]) < 0.4
    neck = np.concatenate([_shared(t, 23, q)[0] for q in SEGMENTS["torso"]])
    assert np.median(neck[:, 1]) < 0.2


def test_densepose_charts_hands_point_their_fingers_up_and_feet_their_toes_sideways(template):
    """The fingertip / toe tip (the vertex farthest from the wrist or ankle) lies where DensePose's fingers and
    toes point (hands: V = 1; foot 5: U = 1; foot 6: U = 0), nearer there than the wrist or ankle seam."""
    t = template
    for p, target in END_TIP.items():
        uv = _part_uv(t, p)
        seam = [v for q in SEGMENTS[PROXIMAL[p]] for v in sorted(set(uv) & set(_part_uv(t, q)))]
        verts = np.array(sorted(uv))
        x = t.vertices.astype(np.float64)
        tip = verts[np.argmax(np.linalg.norm(x[verts] - x[seam].mean(axis=0), axis=1))]
        wrist = np.mean([uv[v] for v in seam], axis=0)
        # a flat end chart keeps its ankle or wrist on the border, so its tip lies inside, not on the edge
        assert np.linalg.norm(uv[tip] - target) < 0.4, f"part {p}: tip at {uv[tip]}, DensePose's at {target}"
        assert np.linalg.norm(uv[tip] - target) < np.linalg.norm(wrist - target)


def test_densepose_charts_twins_are_mirror_images_so_mirror_errors_can_be_simulated(template):
    m = chart_mirror(template)
    # limbs: the twin's chart is the same (axis 2); head halves: U mirrored (axis 0)
    assert m.axis[7] == 2 and m.axis[13] == 2 and m.axis[15] == 2
    assert m.axis[23] == 0


def test_longest_run_and_border_neighbours():
    assert longest_run(np.array([True, False, True, False, True, True])) == (4, 3)  # wraps round
    assert longest_run(np.zeros(3, bool)) is None
    assert longest_run(np.ones(3, bool)) == (0, 3)
    # two triangles: part 1 = face 0, part 2 = face 1, sharing edge 1-2
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    nb = border_neighbours(faces, np.array([1, 2]), 1, np.array([0, 1, 2]))
    assert nb.tolist() == [0, 2, 0]


@pytest.mark.parametrize("source", ["precomputed", "detectron2"])
def test_real_chart_output_is_refused_with_own_charts(source):
    with pytest.raises(InputError, match="template.charts: densepose"):
        check_chart_convention("own", source, "chart")
    check_chart_convention("densepose", source, "chart")
    check_chart_convention("own", source, "cse")  # CSE output does not use the charts
    check_chart_convention("own", "synthetic", "chart")  # the project's own data follow its template


def test_own_charts_are_kept_for_comparison():
    from pipeline.template.build import anny_template

    own = anny_template("notoes_collapse10pc", cse_dim=4, charts="own")
    assert own.charts == "own"
    for p in range(1, N_PARTS + 1):
        area = signed_uv_areas(own.chart_uv.astype(np.float64), own.chart_faces[own.face_part == p])
        assert np.all(area > 0)


def _disk_mesh(height):
    """A triangulated unit disk (its rim the border) lifted by ``height(x, y)``: vertices (N, 3), faces (F, 3)."""
    from scipy.spatial import Delaunay
    rings = [np.zeros((1, 2))] + [r * np.column_stack([np.cos(a), np.sin(a)])
                                  for r in np.linspace(0.15, 1.0, 7)
                                  for a in [np.linspace(0, 2 * np.pi, int(48 * r) + 6, endpoint=False)]]
    xy = np.concatenate(rings)
    faces = Delaunay(xy).simplices.astype(np.int64)
    return np.column_stack([xy, height(xy[:, 0], xy[:, 1])]), faces


def test_an_end_chart_whose_tip_lies_at_its_centre_warns_that_its_turn_is_arbitrary(caplog):
    """A dense hand flattened from its wrist puts every fingertip near the chart's centre (Anny's `notoes`: 0.03
    from it), where no turn brings the tip nearer DensePose's fingers: the template says so instead of turning it
    silently; a tip off the centre (the default template's hands and feet: 0.18) picks its turn without a word."""
    from pipeline.template.densepose_charts import _end_chart
    dome = _disk_mesh(lambda x, y: 2.0 * (1.0 - x ** 2 - y ** 2))  # the tip (the pole) maps to the centre
    with caplog.at_level("WARNING", logger="pipeline.template.densepose_charts"):
        uv, _ = _end_chart(*dome, 3, "part 3")
    assert "part 3" in caplog.text and "turn is arbitrary" in caplog.text
    assert np.isfinite(uv).all() and uv.min() >= 0 and uv.max() <= 1
    caplog.clear()
    bump = _disk_mesh(lambda x, y: 2.0 * np.exp(-((x - 0.6) ** 2 + y ** 2) / 0.05))  # the tip off the centre
    with caplog.at_level("WARNING", logger="pipeline.template.densepose_charts"):
        uv, _ = _end_chart(*bump, 3, "part 3")
    assert caplog.text == ""
    tip = int(np.argmax(np.linalg.norm(bump[0] - bump[0][np.linalg.norm(bump[0][:, :2], axis=1) > 0.99].mean(0),
                                       axis=1)))
    assert uv[tip, 1] > 0.5  # turned towards DensePose's fingers (V = 1)
