"""The keypoints stage end to end: exact synthetic renders give keypoints on the true vertices, and
bad input gives clear errors or counted drops, never a silent wrong result."""

import dataclasses

import numpy as np
import pytest
from conftest import tree_bytes

from pipeline.core.config import load_params_dict
from pipeline.core.store import StoreError
from pipeline.densepose.synthetic import write_synthetic_store
from pipeline.iuv.repair import RepairOptions
from pipeline.iuv.write import repair_store
from pipeline.keypoints.store import open_keypoints
from pipeline.keypoints.write import extract_keypoints

QUALITY_KEYS = ("median_error_px", "mean_error_px", "median_error_crop_px", "visibility_precision",
                "visibility_recall")

# 120 instances: the visibility precision of a sample scatters around the population value (below)
EXACT = {"synthetic": {"train_bodies": 20, "test_bodies": 10, "views": 4, "batch": 6, "crowd_prob": 0.0,
                       "corruption": {"uv_noise": 0.0, "embedding_noise": 0.0, "flip_prob": 0.0, "dropout_blobs": 0.0,
                                      "border_px": 0, "occluder_prob": 0.0, "seam_px": 0, "mirror_prob": 0.0}}}


@pytest.fixture(scope="module")
def exact_iuv(template, tmp_path_factory):
    """An exact synthetic densepose store (corruption off) and its iuv store (no mask clean-up)."""
    tmp = tmp_path_factory.mktemp("kp")
    p = load_params_dict(EXACT)
    write_synthetic_store(tmp / "dp.zarr", template, p.synthetic, crop=p.densepose.crop, seed=0, device="cpu")
    repair_store(tmp / "dp.zarr", tmp / "iuv.zarr", RepairOptions(fill_holes=False), 50, 1, progress=False,
                 kinds=["chart"])
    return tmp


@pytest.mark.slow
def test_exact_data_gives_keypoints_on_the_true_vertices(template, exact_iuv):
    s = extract_keypoints(exact_iuv / "iuv.zarr", exact_iuv / "kp.zarr", template, "chart", 0.1, progress=False)
    assert s.instances_out == s.instances_in == 120
    assert s.quality["median_error_px"] <= 1.0, s  # pixels of the source image
    # Not 1: pixels next to an occluding contour or the silhouette map to the nearest chart point, at
    # times a vertex just behind it (the 1229-vertex mesh is coarse). On the full default data (3600
    # exact renders) precision is 0.9535 (train 0.9536, test 0.9530); resampled, 120-instance subsets
    # fall below 0.95 2% of the time (18-instance ones 22%). This fixture (seed 0): 0.9545.
    # precision 0.946 with DensePose's charts (0.953 with the own ones, which fill the square): a pixel's U, V on
    # a chart's outline names its nearest chart point, now and then a vertex just round the silhouette
    assert s.quality["visibility_precision"] >= 0.94 and s.quality["visibility_recall"] > 0.5, s
    # nothing corrupted and no clean-up: the repaired IUV is the exact one but for U, V travelling as
    # float16 in densepose.zarr (one quantisation level on some pixels), so the figures agree closely
    assert set(s.exact) == set(QUALITY_KEYS)
    for k in QUALITY_KEYS:
        assert s.exact[k] == pytest.approx(s.quality[k], abs=2e-3), k
    kp = open_keypoints(exact_iuv / "kp.zarr", template.hash)
    assert kp["xy"].shape == (120, template.n_vertices, 2) and kp["count"].dtype == np.uint16
    assert "iuv" not in kp["gt"]  # measured on, not written
    assert np.all(kp["xy"][:][~kp["visible"][:]] == 0)
    # determinism: a second run writes the same bytes
    extract_keypoints(exact_iuv / "iuv.zarr", exact_iuv / "kp2.zarr", template, "chart", 0.1, progress=False)
    assert tree_bytes(exact_iuv / "kp.zarr") == tree_bytes(exact_iuv / "kp2.zarr")


@pytest.mark.slow
def test_store_of_another_template_is_refused(template, exact_iuv, tmp_path):
    other = dataclasses.replace(template, hash="0123456789abcdef")
    with pytest.raises(StoreError, match="made from template .* but the template is '0123456789abcdef'"):
        extract_keypoints(exact_iuv / "iuv.zarr", tmp_path / "kp.zarr", other, "chart", 0.1, progress=False)
    with pytest.raises(StoreError, match=r"holds \['chart'\] output, not 'cse'; .*synthetic.cse: true"):
        extract_keypoints(exact_iuv / "iuv.zarr", tmp_path / "kp.zarr", template, "cse", 0.1, progress=False)
    assert not (tmp_path / "kp.zarr").exists()


@pytest.mark.slow
def test_small_visible_area_is_dropped_and_all_dropped_is_an_error(template, exact_iuv, tmp_path):
    s = extract_keypoints(exact_iuv / "iuv.zarr", tmp_path / "kp.zarr", template, "chart", 0.3, progress=False)
    assert s.instances_out + s.metrics()["dropped_small_visible_area"] == 120
    with pytest.raises(StoreError, match="no instance shows 100%"):
        extract_keypoints(exact_iuv / "iuv.zarr", tmp_path / "none.zarr", template, "chart", 1.0, progress=False)
    assert not (tmp_path / "none.zarr").exists()


@pytest.mark.slow
def test_corrupted_data_reports_its_figures_and_those_of_the_exact_iuv(template, tmp_path):
    """Default corruption: the summary holds the keypoints' figures on the repaired IUV and, under
    ``exact``, those of the same instances' exact IUV, which are as good as on exact data."""
    p = load_params_dict({"synthetic": {"train_bodies": 3, "test_bodies": 1, "views": 3, "batch": 6}})
    assert p.synthetic.corruption.flip_prob > 0 and p.synthetic.corruption.occluder_prob > 0
    write_synthetic_store(tmp_path / "dp.zarr", template, p.synthetic, crop=p.densepose.crop, seed=0, device="cpu")
    repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 50, 1, progress=False, kinds=["chart"])
    s = extract_keypoints(tmp_path / "iuv.zarr", tmp_path / "kp.zarr", template, "chart", 0.1, progress=False)
    assert s.instances_out >= 10 and set(s.exact) == set(QUALITY_KEYS), s
    assert set(s.quality) == set(QUALITY_KEYS), s
    # measured (seed 0, 12 instances): precision 0.816 against 0.937 exact, mean error 1.88 px against
    # 0.57 px; 12 instances are too few to hold the exact precision to 0.95 (see the test above)
    assert s.exact["median_error_px"] <= 1.0, s
    assert s.exact["visibility_precision"] > s.quality["visibility_precision"] + 0.05, s
    assert s.exact["mean_error_px"] < s.quality["mean_error_px"], s
    kp = open_keypoints(tmp_path / "kp.zarr", template.hash)
    assert kp.attrs["counts"]["exact"] == dict(s.exact) and "iuv" not in kp["gt"]
    assert s.dropped_inconsistent == 0  # the check is off by default
    # with it, the keypoints that stray from their mesh neighbours go, and the error falls
    checked = extract_keypoints(tmp_path / "iuv.zarr", tmp_path / "kp6.zarr", template, "chart", 0.1, progress=False,
                                max_inconsistency=6.0)
    assert checked.dropped_inconsistent > 0 and checked.metrics()["dropped_inconsistent_keypoints"] > 0
    assert checked.quality["mean_error_px"] < s.quality["mean_error_px"], (checked, s)
    assert checked.exact == s.exact  # measured on the exact IUV without the check


def test_confidence_is_stored_exactly_and_lowered_where_the_repair_filled(template, tmp_path):
    """Default corruption, 6 instances: the stored float16 confidence is the one computed from iuv.zarr, in [0, 1],
    0 where invisible, and lower than without the repair's record on the keypoints with filled pixels."""
    from pipeline.iuv.store import open_iuv
    from pipeline.keypoints.confidence import keypoint_confidence
    from pipeline.keypoints.lookup import aggregate, iuv_lookup_table, iuv_to_vertices, one_ring

    p = load_params_dict({"synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 2, "batch": 3}})
    write_synthetic_store(tmp_path / "dp.zarr", template, p.synthetic, crop=p.densepose.crop, seed=0, device="cpu")
    repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 50, 1, progress=False, kinds=["chart"])
    extract_keypoints(tmp_path / "iuv.zarr", tmp_path / "kp.zarr", template, "chart", 0.0, progress=False,
                      confidence_sigma=3.0)
    kp = open_keypoints(tmp_path / "kp.zarr", template.hash)
    stored, visible = kp["confidence"][:], kp["visible"][:]
    iuv = open_iuv(tmp_path / "iuv.zarr")
    assert len(stored) == iuv["box"].shape[0] == 6  # min_visible_area 0: every instance kept, in order
    vertex = iuv_to_vertices(iuv["iuv"][:], iuv_lookup_table(template.chart_part, template.chart_uv,
                                                             template.chart_vertex))
    boxes, filled = iuv["box"][:], iuv["filled"][:]
    assert filled.any()
    points = aggregate(vertex, boxes, template.n_vertices)
    ring = one_ring(template.faces, template.n_vertices)
    expected = keypoint_confidence(points, vertex, filled, ring, boxes, p.densepose.crop, 3.0)
    assert stored.dtype == np.float16 and np.array_equal(stored, expected)  # written and read back bit for bit
    assert np.all(stored[~visible] == 0) and np.all((stored >= 0) & (stored <= 1)) and stored[visible].mean() > 0.5
    unrepaired = keypoint_confidence(points, vertex, np.zeros_like(filled), ring, boxes, p.densepose.crop, 3.0)
    assert np.all(stored <= unrepaired) and (stored < unrepaired).sum() > 10


def test_missing_store_is_named(template, tmp_path):
    with pytest.raises(FileNotFoundError, match="iuv.zarr"):
        extract_keypoints(tmp_path / "iuv.zarr", tmp_path / "kp.zarr", template, "chart", 0.1, progress=False)


@pytest.mark.slow
def test_iuv_stage_changes_nothing_on_exact_renders(exact_iuv, tmp_path):
    """Corruption off: nothing is missing, so nothing is repaired; the output is the exact IUV. With the
    default mask clean-up, only pinholes and specks of the rendering change."""
    from pipeline.densepose.store import open_densepose
    from pipeline.iuv.store import open_iuv

    truth = open_densepose(exact_iuv / "dp.zarr")["gt/iuv"][:]
    s = repair_store(exact_iuv / "dp.zarr", tmp_path / "a.zarr", RepairOptions(fill_holes=False), 1, 1,
                     progress=False, kinds=["chart"])
    assert s.repairs["pixels_filled"] == s.repairs["pixels_dropped"] == s.repairs["components_dropped"] == 0
    out = open_iuv(tmp_path / "a.zarr")["iuv"][:]
    assert np.array_equal(out[..., 0], truth[..., 0])
    # U, V travel as float16 in densepose.zarr: their quantisation is the exact one up to one level
    assert np.abs(out[..., 1:].astype(int) - truth[..., 1:]).max() <= 1
    s = repair_store(exact_iuv / "dp.zarr", tmp_path / "b.zarr", RepairOptions(max_hole_area=16, min_component_area=10),
                     1, 1, progress=False, kinds=["chart"])
    out = open_iuv(tmp_path / "b.zarr")["iuv"][:]
    same_mask = (out[..., 0] > 0) == (truth[..., 0] > 0)
    assert np.array_equal(out[same_mask][:, 0], truth[same_mask][:, 0])
    assert np.abs(out[same_mask][:, 1:].astype(int) - truth[same_mask][:, 1:]).max() <= 1
    assert s.repairs["pixels_filled"] == s.repairs["holes_filled"] and s.quality_after["foreground_iou"] > 0.99


def test_dask_workers_do_not_change_the_store(template, tmp_path, monkeypatch):
    """Three chunks of 4 instances: in the stage's process and on a local cluster of 2 Dask workers, with the
    consistency check on, the same bytes."""
    from pipeline.densepose import synthetic

    monkeypatch.setattr(synthetic, "STORE_CHUNK", 4)
    p = load_params_dict({"synthetic": {"train_bodies": 3, "test_bodies": 1, "views": 3, "batch": 4}})
    write_synthetic_store(tmp_path / "dp.zarr", template, p.synthetic, crop=p.densepose.crop, seed=0, device="cpu")
    repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 50, 2, progress=False, kinds=["chart"])
    runs = [extract_keypoints(tmp_path / "iuv.zarr", tmp_path / f"kp{w}.zarr", template, "chart", 0.1, progress=False,
                              max_inconsistency=6.0, workers=w) for w in (1, 2)]
    assert open_keypoints(tmp_path / "kp1.zarr", template.hash)["xy"].chunks[0] == 4
    assert runs[0] == runs[1] and runs[0].dropped_inconsistent > 0
    assert tree_bytes(tmp_path / "kp1.zarr") == tree_bytes(tmp_path / "kp2.zarr")


def test_pose_mode_travels_from_densepose_to_keypoints(template, tmp_path):
    """Each instance's pose mode (``gt/mode``, an index into the ``pose_modes`` attribute) is the one its body was
    sampled with, and the iuv and keypoints stages carry it with the instance (dropped instances included)."""
    from pipeline.densepose.store import open_densepose
    from pipeline.iuv.store import open_iuv
    from pipeline.render.bodies import body_model, make_bodies
    from pipeline.render.poses import POSE_MODES

    p = load_params_dict({"synthetic": {"train_bodies": 4, "test_bodies": 4, "views": 2, "batch": 8,
                                        "crowd_prob": 0.0}})
    write_synthetic_store(tmp_path / "dp.zarr", template, p.synthetic, crop=32, seed=0, device="cpu")
    want = np.repeat(make_bodies(body_model(template), np.arange(8), p.synthetic, 0).mode, 2)  # body-major
    assert len(set(want)) > 1  # seed 0: more than one mode
    dp = open_densepose(tmp_path / "dp.zarr", template.hash)
    assert dp["gt/mode"].dtype == np.int8 and dp.attrs["pose_modes"] == list(POSE_MODES)
    np.testing.assert_array_equal(dp["gt/mode"][:], want)
    # a visible-area threshold that drops some instances: the kept ones keep their own mode
    repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 5, 1, progress=False, kinds=["chart"])
    every = extract_keypoints(tmp_path / "iuv.zarr", tmp_path / "all.zarr", template, "chart", 0.01, progress=False)
    shares = np.sort(open_keypoints(tmp_path / "all.zarr", template.hash)["visible_area"][:])
    extract_keypoints(tmp_path / "iuv.zarr", tmp_path / "kp.zarr", template, "chart", float(shares[3]) + 1e-4,
                      progress=False)
    for path, read in ((tmp_path / "iuv.zarr", open_iuv), (tmp_path / "kp.zarr", open_keypoints)):
        root = read(path, template.hash)
        source = root["source_index"][:]
        assert root["gt/mode"].dtype == np.int8 and root.attrs["pose_modes"] == list(POSE_MODES)
        np.testing.assert_array_equal(root["gt/mode"][:], want[source])
    assert len(open_keypoints(tmp_path / "kp.zarr")["split"]) < every.instances_out  # some were dropped
