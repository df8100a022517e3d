"""The keypoints' confidence on hand-made keypoints of the template: filled pixels and keypoints that stray from
their mesh neighbours lower it, exactly as the formula says."""

import warnings

import numpy as np
import pytest

from pipeline.keypoints.confidence import agreement, keypoint_confidence, unfilled_share
from pipeline.keypoints.lookup import VertexKeypoints, neighbour_distance, neighbour_median, one_ring

CROP = 112
BOXES = np.array([[0.0, 0.0, 160.0, 160.0]])  # 160 / 112 image pixels a crop pixel


@pytest.fixture(scope="module")
def front(template):
    """The template seen from the front at 60 px/m, every vertex visible; its one-ring; and a vertex map giving
    each vertex two pixels of a (1, 50, 50) crop (pixels 2i and 2i + 1), the rest background."""
    n_v = template.n_vertices
    xy = (template.vertices[:, [0, 2]] * np.array([60.0, -60.0]) + 80.0)[None].astype(np.float32)
    kp = VertexKeypoints(xy, np.ones((1, n_v), bool), np.full((1, n_v), 2, np.uint16))
    flat = np.full(50 * 50, -1, np.int64)
    flat[:2 * n_v] = np.arange(2 * n_v) // 2
    return kp, one_ring(template.faces, n_v), flat.reshape(1, 50, 50)


def test_neighbour_median_is_numpys_nanmedian(template):
    ring = one_ring(template.faces, template.n_vertices)
    rng = np.random.default_rng(0)
    xy = rng.normal(80, 30, (3, template.n_vertices, 2)).astype(np.float32)
    visible = rng.random((3, template.n_vertices)) < 0.5
    centre, m = neighbour_median(xy, visible, ring)
    nb = np.where((ring >= 0) & visible[:, ring.clip(0)], True, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        expected = np.nanmedian(np.where(nb[..., None], xy[:, ring.clip(0)], np.nan), axis=2)
    assert np.array_equal(centre, expected, equal_nan=True) and np.array_equal(m, nb.sum(-1))
    assert (m == 0).any() and (m == 1).any()  # the edge cases are in the sample


def test_filled_pixels_lower_the_confidence(front):
    kp, ring, vertex = front
    filled = np.zeros(vertex.shape, bool)
    clean = keypoint_confidence(kp, vertex, filled, ring, BOXES, CROP, 4.0)
    assert clean.dtype == np.float16 and np.median(clean) > 0.9  # a smooth surface: neighbours agree
    filled.reshape(-1)[200] = True  # one of vertex 100's two pixels was made by the repair
    filled.reshape(-1)[[300, 301]] = True  # both of vertex 150's
    conf = keypoint_confidence(kp, vertex, filled, ring, BOXES, CROP, 4.0)
    assert conf[0, 100] == np.float16(0.5 * float(agreement(neighbour_distance(kp, ring, BOXES, CROP), 4.0)[0, 100]))
    assert conf[0, 150] == 0
    others = np.setdiff1d(np.arange(kp.visible.shape[1]), [100, 150])
    assert np.array_equal(conf[0, others], clean[0, others])  # the share is each vertex's own
    share = unfilled_share(vertex, filled, kp.visible.shape[1])
    assert share[0, 100] == 0.5 and share[0, 150] == 0 and share[0, 0] == 1


def test_an_outlier_keypoint_gets_a_low_confidence(front):
    kp, ring, vertex = front
    filled = np.zeros(vertex.shape, bool)
    stray = kp.xy.copy()
    stray[0, 100] += 40.0  # 57 image pixels, 40 crop pixels off (its twin's place)
    conf = keypoint_confidence(VertexKeypoints(stray, kp.visible, kp.count), vertex, filled, ring, BOXES, CROP, 4.0)
    d = neighbour_distance(VertexKeypoints(stray, kp.visible, kp.count), ring, BOXES, CROP)
    assert d[0, 100] == pytest.approx(np.hypot(40, 40) * CROP / 160, abs=2.0)
    assert conf[0, 100] == 0 and np.median(conf) > 0.9  # exp(-(40 / 4)²); the rest unharmed
    # σ = 0: the agreement term is off, the confidence is the unfilled share alone
    off = keypoint_confidence(VertexKeypoints(stray, kp.visible, kp.count), vertex, filled, ring, BOXES, CROP, 0.0)
    assert np.all(off == 1)


def test_lonely_and_invisible_keypoints(front):
    kp, ring, vertex = front
    visible = kp.visible.copy()
    visible[0, ring[100][ring[100] >= 0]] = False  # no visible neighbour: d = σ, agreement 1/e
    visible[0, 7] = False
    xy = np.where(visible[..., None], kp.xy, 0)
    conf = keypoint_confidence(VertexKeypoints(xy, visible, kp.count), vertex, np.zeros(vertex.shape, bool), ring,
                               BOXES, CROP, 4.0)
    assert conf[0, 100] == np.float16(np.exp(-1.0))
    assert conf[0, 7] == 0 and np.all(conf[~visible] == 0)  # invisible: 0
    assert np.all((conf >= 0) & (conf <= 1))
