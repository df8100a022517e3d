"""DensePose's measures of a dense correspondence (pipeline/network/measures.py): part accuracy, U/V
error, geodesic point similarity and its AP, on hand-made predictions."""

import numpy as np
import pytest

from pipeline.geometry.charts import ChartLocator
from pipeline.network.measures import Geodesics, KAPPA, instance_measures, summarise


@pytest.fixture(scope="module")
def tools(template):
    return ChartLocator(template.chart_part, template.chart_uv, template.chart_vertex), Geodesics(template)


def _exact(template, s=16):
    """A crop whose pixels are chart points of the template: labels (S, S), uv (2, S, S), person mask."""
    rng = np.random.default_rng(0)
    pick = rng.choice(len(template.chart_part), size=s * s // 2, replace=False)
    labels = np.zeros(s * s, np.int64)
    uv = np.zeros((2, s * s))
    labels[: len(pick)] = template.chart_part[pick]
    uv[:, : len(pick)] = template.chart_uv[pick].T
    return labels.reshape(s, s), uv.reshape(2, s, s), (labels > 0).reshape(s, s)


def test_a_perfect_prediction_scores_one(template, tools):
    labels, uv, person = _exact(template)
    m = instance_measures(labels, uv, labels, uv, person, *tools)
    assert m == {"part_accuracy": 1.0, "uv_error": 0.0, "gps": 1.0}


def test_background_predictions_score_zero_and_wrong_parts_fall_with_their_geodesic_distance(template, tools):
    labels, uv, person = _exact(template)
    m = instance_measures(np.zeros_like(labels), uv, labels, uv, person, *tools)
    assert m["part_accuracy"] == 0.0 and m["gps"] == 0.0
    # every pixel named as the head's top: GPS is the mean Gaussian of each pixel's distance to it
    locator, geo = tools
    head = np.flatnonzero(template.chart_part == 23)[0]
    pred_l = np.where(person, 23, 0)
    pred_uv = np.broadcast_to(template.chart_uv[head][:, None, None], uv.shape).copy()
    m = instance_measures(pred_l, pred_uv, labels, uv, person, locator, geo)
    v_true = locator.locate(labels[person], uv[:, person].T)
    g = geo.between(v_true, np.full(len(v_true), locator.vertices_of(23, template.chart_uv[head][None])[0]))
    assert m["gps"] == pytest.approx(np.exp(-g ** 2 / (2 * KAPPA ** 2)).mean())
    assert 0.0 < m["gps"] < 0.6


def test_geodesics_are_symmetric_zero_on_the_diagonal_and_at_least_euclidean(template):
    geo = Geodesics(template)
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, len(template.vertices), 50), rng.integers(0, len(template.vertices), 50)
    d, back = geo.between(a, b), geo.between(b, a)
    assert np.allclose(d, back) and np.all(geo.between(a, a) == 0)
    euclid = np.linalg.norm(template.vertices[a].astype(float) - template.vertices[b], axis=1)
    assert np.all(d >= euclid - 1e-6) and np.median(d / np.maximum(euclid, 1e-9)) < 2.0


def test_summary_averages_and_counts_instances_above_each_threshold():
    rows = [{"part_accuracy": 1.0, "uv_error": 0.0, "gps": 0.9}, {"part_accuracy": 0.5, "uv_error": 0.2, "gps": 0.6},
            {"part_accuracy": float("nan"), "uv_error": float("nan"), "gps": float("nan")}]
    s = summarise(rows)
    assert s["instances"] == 2 and s["part_accuracy"] == 0.75 and s["uv_error"] == pytest.approx(0.1)
    assert s["gps_ap50"] == 1.0 and s["gps_ap75"] == 0.5
    # thresholds 0.50 .. 0.95: both pass 0.50-0.60 (3), one passes 0.65-0.90 (6), none 0.95
    assert s["gps_ap"] == pytest.approx((3 * 1.0 + 6 * 0.5 + 1 * 0.0) / 10)


def test_a_small_geodesic_cache_keeps_its_bound_and_gives_the_same_distances(template):
    rng = np.random.default_rng(2)
    n = len(template.vertices)
    a, b = rng.integers(0, n, 400), rng.integers(0, n, 400)
    full = Geodesics(template).between(a, b)
    small = Geodesics(template, cache_bytes=5 * 8 * n)  # 5 rows: the 400 sources are done in blocks
    assert small.max_rows == 5
    assert np.array_equal(small.between(a, b), full) and len(small.rows) == 5
    assert np.array_equal(small.between(b, a), Geodesics(template).between(b, a)) and len(small.rows) == 5
