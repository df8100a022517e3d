"""scripts/keypoint_oracles.py: each oracle variant changes only what it says, from the synthetic ground truth."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import keypoint_oracles as ko  # noqa: E402


def _keypoints():
    """Four vertices of one instance: 0 right, 1 far off (a gross error), 2 names a hidden vertex, 3 invisible."""
    true_xy = np.array([[[10, 10], [20, 20], [30, 30], [40, 40]]], np.float32)
    xy = true_xy + np.array([[[1, 0], [12, 0], [2, 0], [0, 0]]], np.float32)
    visible = np.array([[True, True, True, False]])
    true_visible = np.array([[True, True, False, False]])
    count = np.array([[3, 2, 5, 0]], np.uint16)
    confidence = np.array([[0.9, 0.5, 0.7, 0.0]], np.float16)
    return dict(xy=xy, visible=visible, count=count, confidence=confidence, true_xy=true_xy,
                true_visible=true_visible)


def test_each_variant_changes_what_it_names_and_nothing_else():
    k = _keypoints()
    assert ko.oracle_arrays("drop_far", **k)["confidence"].tolist() == [[1, 0, 1, 0]]  # 12 px > 8 px: weight 0
    moved = ko.oracle_arrays("true_xy", **k)
    assert set(moved) == {"xy"} and np.array_equal(moved["xy"][0, :3], k["true_xy"][0, :3])
    shown = ko.oracle_arrays("true_visible", **k)
    assert shown["visible"].tolist() == [[True, True, False, False]]
    assert np.array_equal(shown["xy"][0, :2], k["true_xy"][0, :2]) and shown["confidence"][0, 2] == 0
    unnamed = ko.oracle_arrays("hidden_unnamed", **k)
    assert set(unnamed) == {"visible", "confidence"} and unnamed["visible"].tolist() == [[True, True, False, False]]
    facing = ko.oracle_arrays("facing_visible", **k)
    assert set(facing) == {"count"} and facing["count"].tolist() == [[3, 2, 0, 0]]  # the facing term's evidence
    with pytest.raises(ValueError, match="no store variant"):
        ko.oracle_arrays("plain", **k)


def test_make_store_writes_a_copy_and_refuses_a_store_without_ground_truth(tmp_path):
    import zarr

    k = _keypoints()
    src = zarr.open_group(str(tmp_path / "kp.zarr"), mode="w")
    for key in ("xy", "visible", "count", "confidence"):
        src.create_array(key, data=k[key])
    src.create_array("gt/pixels", data=k["true_xy"])
    src.create_array("gt/visible", data=k["true_visible"])
    out = ko.make_store("true_visible", tmp_path / "kp.zarr", tmp_path / "oracle.zarr")
    z = zarr.open_group(str(out), mode="r")
    assert z["visible"][:].tolist() == [[True, True, False, False]]
    assert zarr.open_group(str(tmp_path / "kp.zarr"), mode="r")["visible"][:].tolist() == [[True, True, True, False]]
    bare = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    for key in ("xy", "visible", "count", "confidence"):
        bare.create_array(key, data=k[key])
    with pytest.raises(SystemExit, match="ground truth"):
        ko.make_store("true_xy", tmp_path / "bare.zarr", tmp_path / "o2.zarr")


def test_main_makes_each_store_once_and_a_rerun_replaces_its_row(tmp_path, monkeypatch):
    made, ran = [], []
    monkeypatch.setattr(ko, "make_store", lambda v, src, out: made.append(v) or out)
    monkeypatch.setattr(ko, "run", lambda v, seed, work, store, params: ran.append((v, seed, store.name)) or {
        "variant": v, "seed": seed, "mpjpe_mm": 100.0 + seed, "regions_distinct": seed == 0, "wall_s": 1.0})
    out = tmp_path / "oracles.csv"
    args = ["--variants", "true_xy", "plain", "--seeds", "0", "1", "--work", str(tmp_path), "--out", str(out)]
    assert ko.main(args) == 0 and ko.main(args[:3] + ["--seeds", "1"] + args[6:]) == 0
    assert made == ["true_xy", "true_xy"]  # once per variant and call, not per seed; plain reads the store as is
    assert ("true_xy", 1, "true_xy.zarr") in ran and ("plain", 0, "keypoints.zarr") in ran
    rows = out.read_text().splitlines()
    assert rows[0].split(",")[:3] == ["variant", "seed", "mpjpe_mm"] and len(rows) == 5  # header + 4: no duplicate
    assert "true_xy,0,100.0,,,,,,true,1.0" in rows


def test_self_drop_drops_the_keypoints_a_trained_model_turns_away_and_nothing_else():
    """self_drop (no ground truth): a visible keypoint the round-1 prediction turns away is dropped with its
    confidence; the others and the invisible one stay as they were."""
    k = _keypoints()
    turned = np.array([[False, False, True, True]])
    out = ko.self_drop_arrays(k["visible"], k["confidence"], turned)
    assert set(out) == {"visible", "confidence"}
    assert out["visible"].tolist() == [[True, True, False, False]]
    assert out["confidence"].tolist() == [[k["confidence"][0, 0], k["confidence"][0, 1], 0, 0]]


def test_the_self_visibility_variants_set_only_their_loss_options(tmp_path, monkeypatch):
    """self_visibility(_z3) train on the store as it is, with loss.self_visibility (and _z) set in the run's params."""
    import yaml

    seen = []
    monkeypatch.setattr(ko.subprocess, "run", lambda argv, **kw: seen.append(argv))
    monkeypatch.setattr(ko.json, "loads", lambda text: {})
    (tmp_path / "self_visibility_z3-s0").mkdir()
    (tmp_path / "self_visibility_z3-s0" / "eval.json").write_text("{}")
    ko.run("self_visibility_z3", 0, tmp_path, tmp_path / "kp.zarr", ko.ROOT / "params.yaml")
    p = yaml.safe_load((tmp_path / "self_visibility_z3-s0" / "params.yaml").read_text())
    assert p["loss"]["self_visibility"] == 0.25 and p["loss"]["self_visibility_z"] == 0.3
    assert p["loss"]["facing_gate"] == 0.0 and len(seen) == 2  # train, evaluate


def test_self_blend_moves_the_kept_keypoints_half_way_to_round_ones_projection():
    """self_blend: self_drop's visibility, and each kept keypoint half-way to its vertex's round-1 projection; the
    dropped and the invisible ones keep their positions."""
    k = _keypoints()
    turned = np.array([[False, False, True, True]])
    projected = k["xy"] + np.array([[[4, 0], [-8, 2], [6, 6], [9, 9]]], np.float32)
    out = ko.self_blend_arrays(k["xy"], k["visible"], k["confidence"], turned, projected)
    drop = ko.self_drop_arrays(k["visible"], k["confidence"], turned)
    assert set(out) == {"visible", "confidence", "xy"} and out["xy"].dtype == np.float32
    assert np.array_equal(out["visible"], drop["visible"]) and np.array_equal(out["confidence"], drop["confidence"])
    assert np.allclose(out["xy"][0, :2], k["xy"][0, :2] + [[2, 0], [-4, 1]])
    assert np.array_equal(out["xy"][0, 2:], k["xy"][0, 2:])
    nothing = ko.self_blend_arrays(k["xy"], k["visible"], k["confidence"], turned, projected, share=0.0)
    assert np.array_equal(nothing["xy"], k["xy"])
