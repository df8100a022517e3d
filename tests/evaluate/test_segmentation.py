"""Segmentation measures on hand-made meshes and weights, and on the template with known layouts."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate import segmentation as sg


def _soft(labels: np.ndarray, m: int, peak: float = 0.6) -> np.ndarray:
    """(N, M) float64 weights: ``peak`` on each vertex's label, the rest spread evenly (M >= 2)."""
    w = np.full((len(labels), m), (1 - peak) / (m - 1))
    w[np.arange(len(labels)), labels] = peak
    return w


def _strip(columns: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2 x ``columns`` strip of vertices (column c: vertices 2c, 2c + 1), two triangles per square.

    Returns: (2 columns, 3) float vertices, (2 (columns - 1), 3) int faces."""
    vertices = np.array([[c, r, 0.0] for c in range(columns) for r in (0, 1)])
    faces = [f for c in range(columns - 1) for f in ([2 * c, 2 * c + 2, 2 * c + 1], [2 * c + 1, 2 * c + 2, 2 * c + 3])]
    return vertices, np.array(faces)


def _region_labels(vertex_part: np.ndarray) -> np.ndarray:
    """(N,) int64 index into REGIONS of each vertex's DensePose part."""
    labels = np.full(len(vertex_part), -1)
    for k, ids in enumerate(sg.REGIONS.values()):
        labels[np.isin(vertex_part, ids)] = k
    assert (labels >= 0).all()
    return labels


def test_regions_cover_the_24_parts_once():
    ids = [i for v in sg.REGIONS.values() for i in v]
    assert sorted(ids) == list(range(1, 25)) and len(sg.REGIONS) == 10
    assert sg.REGIONS["left forearm+hand"] == (4, 19, 21) and sg.REGIONS["right lower leg+foot"] == (6, 11, 13)


def test_parts_used_counts_the_one_percent_rule():
    labels = np.repeat(np.arange(5), [880, 100, 10, 9, 1])  # 1000 vertices: 10 is 1 %, 9 is not
    w = _soft(labels, 6)  # part 5 is never the arg-max
    assert sg.parts_used(w) == 3
    np.testing.assert_array_equal(sg.used_parts(w), [True, True, True, False, False, False])
    assert sg.parts_used(w, min_share=0.0) == 6  # every part passes a zero threshold
    assert sg.parts_used(w, min_share=0.2) == 1
    assert sg.parts_used(np.ones((7, 1))) == 1


def test_entropy_is_zero_for_one_hot_and_one_for_uniform():
    labels = np.arange(12) % 4
    assert sg.segmentation_entropy(np.eye(4)[labels]) == pytest.approx(0, abs=1e-12)
    assert sg.segmentation_entropy(np.full((12, 4), 0.25)) == pytest.approx(1, abs=1e-12)
    # half on two of four parts: log 2 / log 4
    assert sg.segmentation_entropy(np.tile([0.5, 0.5, 0, 0], (3, 1))) == pytest.approx(0.5, abs=1e-12)
    # rows not summing to 1 are normalised; a single part is 0
    assert sg.segmentation_entropy(np.full((5, 3), 7.0)) == pytest.approx(1, abs=1e-12)
    assert sg.segmentation_entropy(np.ones((5, 1))) == 0.0
    # the mean over vertices: half one-hot, half uniform
    w = np.vstack([np.eye(4)[labels[:6]], np.full((6, 4), 0.25)])
    assert sg.segmentation_entropy(w) == pytest.approx(0.5, abs=1e-12)


def test_a_part_in_two_distant_patches_has_component_share_below_one():
    _, faces = _strip(10)
    column = np.repeat(np.arange(10), 2)
    # part 0: columns 0-1 (4 vertices) and 5-9 (10); part 1: columns 2-4 (6, one patch); part 2: nothing
    labels = np.where((column <= 1) | (column >= 5), 0, 1)
    share = sg.largest_component_share(labels, faces, 3)
    np.testing.assert_allclose(share[:2], [10 / 14, 1.0])
    assert np.isnan(share[2])
    # one part everywhere: one patch; a vertex in no face is a component of its own
    np.testing.assert_allclose(sg.largest_component_share(np.zeros(20, int), faces, 1), [1.0])
    np.testing.assert_allclose(sg.largest_component_share(np.zeros(21, int), faces, 1), [20 / 21])
    with pytest.raises(ValueError, match="labels"):
        sg.largest_component_share(labels, faces, 1)


def test_parts_touching_only_at_a_corner_of_another_part_are_not_joined():
    # checkerboard columns: part 0 on even columns, 1 on odd: every column its own patch
    _, faces = _strip(6)
    labels = np.repeat(np.arange(6) % 2, 2)
    np.testing.assert_allclose(sg.largest_component_share(labels, faces, 2), [1 / 3, 1 / 3])


def test_region_table_of_the_regions_themselves_is_pure_and_distinct(template):
    labels = _region_labels(template.vertex_part)
    rows = sg.region_table(np.eye(10)[labels], template.vertex_part)
    assert [r["region"] for r in rows] == list(sg.REGIONS)
    assert [r["majority_part"] for r in rows] == list(range(10))
    assert all(r["majority_share"] == 1.0 for r in rows)
    assert sum(r["vertices"] for r in rows) == len(template.vertices)
    assert sg.distinct_regions(rows)
    assert sg.distinct_regions(rows, ("head", "torso", "left arm", "right arm", "left leg", "right leg"))
    m, rows2 = sg.segmentation_metrics(_soft(labels, 10), template.faces, template.vertex_part)
    assert rows2 == rows and m["parts_used"] == 10 and m["regions_distinct"] is True
    assert m["segmentation_min_component_share"] == 1.0  # every region is one patch on the template
    assert m["segmentation_changed_share"] is None and 0 < m["segmentation_entropy"] < 1


def test_region_table_of_the_24_densepose_parts(template):
    vp = template.vertex_part
    rows = sg.region_table(np.eye(24)[vp - 1], vp)
    for row, ids in zip(rows, sg.REGIONS.values()):
        counts = np.array([(vp == i).sum() for i in ids])
        assert row["majority_part"] == ids[counts.argmax()] - 1  # 0-based
        assert row["majority_share"] == pytest.approx(counts.max() / counts.sum())
    assert sg.distinct_regions(rows)


def test_one_part_for_everything_is_not_distinct(template):
    w = np.ones((len(template.vertices), 1))
    m, rows = sg.segmentation_metrics(w, template.faces, template.vertex_part, initial=w)
    assert all(r["majority_part"] == 0 and r["majority_share"] == 1.0 for r in rows)
    assert m == {"parts_used": 1, "segmentation_entropy": 0.0, "segmentation_min_component_share": 1.0,
                 "segmentation_changed_share": 0.0, "regions_distinct": False}


def _rows(**majority) -> list[dict]:
    """region_table-like rows: every region part 0 unless given (keyword names with _ for spaces)."""
    parts = {name: majority.get(name.replace(" ", "_").replace("+", "_"), 0) for name in sg.REGIONS}
    return [{"region": k, "vertices": 1, "majority_part": v, "majority_share": 1.0} for k, v in parts.items()]


def test_an_arm_conflicts_through_either_of_its_regions():
    distinct = dict(head=1, torso=2, left_upper_arm=3, left_forearm_hand=4, right_upper_arm=5, right_forearm_hand=6)
    assert sg.distinct_regions(_rows(**distinct))
    assert sg.distinct_regions(_rows(**dict(distinct, left_forearm_hand=3)))  # one part for the whole arm
    assert not sg.distinct_regions(_rows(**dict(distinct, left_forearm_hand=2)))  # forearm held by the torso
    assert not sg.distinct_regions(_rows(**dict(distinct, right_upper_arm=1)))  # upper arm held by the head
    assert not sg.distinct_regions(_rows(**dict(distinct, right_forearm_hand=4)))  # the arms share a part
    assert sg.distinct_regions(_rows(**dict(distinct, right_forearm_hand=4)), ("head", "torso"))
    rows = _rows(**distinct)
    rows[0] = dict(rows[0], vertices=0, majority_part=None, majority_share=None)  # no head vertex
    assert not sg.distinct_regions(rows)
    with pytest.raises(ValueError, match="unknown region 'tail'"):
        sg.distinct_regions(_rows(), ("head", "tail"))


def test_layout_change_counts_relabelled_vertices():
    labels = np.arange(20) % 4
    after = labels.copy()
    after[:5] = (after[:5] + 1) % 4
    assert sg.layout_change(_soft(labels, 4), _soft(after, 4)) == 0.25
    assert sg.layout_change(_soft(labels, 4), _soft(labels, 4, peak=0.9)) == 0.0  # softer, same arg-max
    with pytest.raises(ValueError, match="same"):
        sg.layout_change(_soft(labels, 4), _soft(labels, 5))
