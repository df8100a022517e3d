"""The evaluate stage with stand-in models whose metric values are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import roma
import torch
import trimesh

from pipeline.core.config import EvalParams
from pipeline.core.store import StoreError, write_store
from pipeline.evaluate.loop import evaluate, model_reconstructor
from pipeline.evaluate.measures import (MIN_EXPONENT, N_BINS, RELATIVE_BIN_WIDTH, add_histograms, bin_lower_edges,
                                        box_diagonals, empty_histogram, histogram_median, histogram_quantile, log_bins,
                                        log_histogram, reprojection_errors)
from pipeline.evaluate.metrics import centre_depth
from pipeline.evaluate.results import (ALONE_KEYS, ALONE_KEYS_NO_GT, METRIC_KEYS, METRIC_KEYS_NO_GT, PART_COLUMNS,
                                       PART_COLUMNS_NO_GT, SEGMENTATION_COLUMNS, SEGMENTATION_KEYS, write_metrics)
from pipeline.evaluate.segmentation import REGIONS, layout_change, segmentation_metrics
from pipeline.geometry.mesh import vertex_normals
from pipeline.keypoints.store import SCHEMA

SMALL = EvalParams(batch_size=3, grid=2, meshes=1, uv_maps=1, uv_resolution=8, s2s_instances=0)


def _store(path: Path, template, n: int = 10, projection: str = "orthographic", ground_truth: bool = True,
           test_split: bool = True, extra: dict | None = None, attrs: dict | None = None) -> dict:
    """A keypoints store: the template turned about its up axis, 4 m in front of an orthographic camera;
    without ``gt/*`` arrays unless ``ground_truth``, all train unless ``test_split``; ``extra`` arrays (replacing
    those of the same name) and group ``attrs`` added."""
    rng = np.random.default_rng(0)
    up, fwd = template.up.astype(np.float64), template.forward.astype(np.float64)
    base = np.stack([np.cross(up, fwd), -up, -fwd])  # body axes -> image x, y (down), z (away)
    yaw = roma.rotvec_to_rotmat(torch.as_tensor(up[None] * rng.uniform(-np.pi, np.pi, (n, 1)))).numpy()
    body = template.vertices - template.vertices.mean(0)
    cam = np.einsum("ij,bjk,nk->bni", base, yaw, body) + [0.0, 0.0, 4.0]
    f = rng.uniform(80, 120, n)
    c = rng.uniform(200, 300, (n, 2))
    if projection == "orthographic":
        pixels = f[:, None, None] * cam[..., :2] + c[:, None]
    else:
        pixels = f[:, None, None] * cam[..., :2] / cam[..., 2:] + c[:, None]
    visible = np.stack([vertex_normals(b, template.faces)[:, 2] < 0 for b in cam])
    split = np.zeros(n, np.uint8)
    if test_split:
        split[[1, 2, 4, 7, 8, 9]] = 1  # gaps: batches read a span and keep the test rows
    box = np.c_[pixels.min(1), pixels.max(1)].astype(np.float32)
    arrays = {
        "xy": np.where(visible[..., None], pixels, 0).astype(np.float32), "visible": visible,
        "count": visible.astype(np.uint16), "confidence": visible.astype(np.float16),
        "visible_area": visible.mean(1).astype(np.float32), "split": split, "box": box,
        "gt/vertices": cam.astype(np.float32), "gt/visible": visible,
        "gt/camera": np.c_[f, c].astype(np.float32), "gt/pixels": pixels.astype(np.float32),
    }
    if not ground_truth:
        arrays = {k: v for k, v in arrays.items() if not k.startswith("gt/")}
    arrays.update(extra or {})
    write_store(path, arrays, {"schema": SCHEMA, "template_hash": template.hash, "projection": projection,
                               **(attrs or {})}, chunk=4)
    return {"f": f, "c": c, "cam": cam.astype(np.float32).astype(np.float64), "split": split, "visible": visible,
            "xy": arrays["xy"], "box": box}


def _yaw_degrees(n: int = 10) -> np.ndarray:
    """(n,) the turn of each body of :func:`_store` about its up axis, degrees (the same random draw)."""
    return np.degrees(np.random.default_rng(0).uniform(-np.pi, np.pi, (n, 1))[:, 0])


def _image_frame(gt: dict, rows: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Camera-frame metres of ``rows`` to the model's image frame (orthographic), depth offset 7 px."""
    f, c = gt["f"][rows, None, None], gt["c"][rows, None]
    return np.concatenate([f * points[..., :2] + c, f * points[..., 2:] + 7.0], axis=-1)


@pytest.fixture(scope="module")
def store(tmp_path_factory, template):
    path = tmp_path_factory.mktemp("eval") / "keypoints.zarr"
    return path, _store(path, template)


def test_oracle_scores_zero_and_writes_the_reports(store, template, tmp_path):
    path, gt = store

    def oracle(xy, visible, rows):
        return _image_frame(gt, rows, gt["cam"][rows])

    seg = np.eye(5)[np.arange(len(template.vertices)) % 5]
    cfg = EvalParams(batch_size=3, grid=2, meshes=1, uv_maps=1, uv_resolution=8, s2s_instances=4)  # over 2 batches
    result = evaluate(path, template, oracle, seg, cfg, tmp_path / "reports", progress=False)
    m = result.metrics
    assert m["test_instances"] == 6
    for key in ("mpjpe_mm", "mpjpe_visible_mm", "mpjpe_invisible_mm", "re14_mm", "mpjpe_best_flip_mm", "xy_mm", "z_mm"):
        assert m[key] == pytest.approx(0, abs=1e-3), key
    assert m["torso_facing_share"] == 1.0
    # _store turned each body about its up axis by yaw: the camera is at azimuth -yaw; bins and counts follow
    test = np.flatnonzero(gt["split"] == 1)
    az = result.per_instance["azimuth"]
    np.testing.assert_allclose(az, -_yaw_degrees()[test], atol=1e-3)
    keys = ["az+000", "az+045", "az+090", "az+135", "az+180", "az-135", "az-090", "az-045"]
    assert list(m["instances_by_azimuth"]) == keys and list(m["flip_share_by_azimuth"]) == keys
    expected = np.bincount(np.mod(np.round(az / 45), 8).astype(int), minlength=8)
    assert list(m["instances_by_azimuth"].values()) == expected.tolist()
    assert {k: v for k, v in m["flip_share_by_azimuth"].items() if v is not None} == \
        {k: 0.0 for k, c in zip(keys, expected) if c}
    assert all(v is None for k, v in m["flip_share_by_azimuth"].items() if not m["instances_by_azimuth"][k])
    for key in ("xy", "z", "azimuth", "azimuth_bin", "torso_facing", "flip_better"):
        assert result.per_instance[key].shape == (6,), key
    # segmentation of 5 parts strewn vertex by vertex: all used, hard, scattered
    assert m["parts_used"] == 5 and m["segmentation_entropy"] == 0 and m["segmentation_min_component_share"] < 0.5
    assert m["segmentation_changed_share"] is None
    assert m["s2s_mm"] == pytest.approx(0, abs=1e-2)  # float32 closest points: micrometres
    assert m["s2s_instances"] == 4 and m["flip_better_share"] == 0
    # the flat reference by hand: mean |z - mean z| over the test instances
    z = gt["cam"][gt["split"] == 1][..., 2]
    assert m["flat_mpjpe_mm"] == pytest.approx(1000 * np.abs(z - z.mean(1, keepdims=True)).mean(), rel=1e-9)
    reports = tmp_path / "reports"
    for name in ("grid.png", "segmentation.png", "errors.png", "uv_maps.png"):
        assert (reports / name).stat().st_size > 1000, name
    assert sorted(p.name for p in (reports / "meshes").iterdir()) == ["000_row1_pred.ply", "000_row1_true.ply"]
    assert len(list((reports / "uv_maps").glob("*.png"))) == 2

    write_metrics(result, tmp_path / "eval.json", tmp_path / "eval_parts.csv", tmp_path / "segmentation.csv")
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert tuple(saved) == METRIC_KEYS + ("by_visible_share",)  # no gt/mode: no by_pose_mode
    assert saved["instances_by_azimuth"] == m["instances_by_azimuth"]
    for k, v in m["by_visible_share"].items():  # rounded as the other values
        assert saved["by_visible_share"][k] == {a: round(x, 4) if isinstance(x, float) else x for a, x in v.items()}
    with open(tmp_path / "eval_parts.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == PART_COLUMNS and len(rows) == 24
    assert sum(int(r["vertices"]) for r in rows) == len(template.vertices)
    with open(tmp_path / "segmentation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SEGMENTATION_COLUMNS and [r["region"] for r in rows] == list(REGIONS)
    _, expected_rows = segmentation_metrics(seg, template.faces, template.vertex_part)
    assert [int(r["majority_part"]) for r in rows] == [r["majority_part"] for r in expected_rows]


def test_flat_stand_in_equals_the_flat_reference_and_parts_add_up(store, template):
    path, gt = store

    def flat(xy, visible, rows):
        return _image_frame(gt, rows, gt["cam"][rows] * [1, 1, 0])

    result = evaluate(path, template, flat, None, EvalParams(batch_size=4, parts="coarse", s2s_instances=1),
                      progress=False)
    m = result.metrics
    assert m["mpjpe_mm"] == pytest.approx(m["flat_mpjpe_mm"], rel=1e-9)
    assert m["s2s_instances"] == 1 and m["s2s_mm"] > 0
    assert len(result.parts) == 14
    # part means weighted by their vertex counts give back the overall MPJPE
    total = sum(r["mpjpe_mm"] * r["vertices"] for r in result.parts) / len(template.vertices)
    assert total == pytest.approx(m["mpjpe_mm"], rel=1e-9)
    for r in result.parts:
        assert r["mpjpe_mm"] == pytest.approx(r["flat_mm"], rel=1e-9)


def test_mirror_and_visibility_split(store, template):
    path, gt = store
    vis = gt["visible"]

    def mirror(xy, visible, rows):
        p = gt["cam"][rows] * [1, 1, -1]
        return _image_frame(gt, rows, p)

    m = evaluate(path, template, mirror, None, SMALL, progress=False).metrics
    assert m["s2s_mm"] is None and m["s2s_instances"] == 0  # S2S off
    assert m["mpjpe_best_flip_mm"] == pytest.approx(0, abs=1e-3)
    assert m["flip_better_share"] == 1.0 and m["mpjpe_mm"] > 10
    assert set(m["flip_share_by_azimuth"].values()) == {1.0, None}  # every non-empty bin
    assert m["torso_facing_share"] == 0.0  # the mirror turns the chest the other way
    assert m["xy_mm"] == pytest.approx(0, abs=1e-3) and m["z_mm"] == pytest.approx(m["mpjpe_mm"], rel=1e-9)
    assert all(m[k] is None for k in SEGMENTATION_KEYS)  # no segmentation given

    def off_when_hidden(xy, visible, rows):
        p = gt["cam"][rows] + np.where(vis[rows][..., None], 0.0, [0.01, 0.0, 0.0])  # 10 mm off when hidden
        return _image_frame(gt, rows, p)

    m = evaluate(path, template, off_when_hidden, None, SMALL, progress=False).metrics
    assert m["mpjpe_visible_mm"] == pytest.approx(0, abs=1e-3)
    assert m["mpjpe_invisible_mm"] == pytest.approx(10, rel=1e-4)
    share = (~vis[gt["split"] == 1]).mean()
    assert m["mpjpe_mm"] == pytest.approx(10 * share, rel=1e-4)


def test_depth_and_image_plane_errors_split(store, template):
    path, gt = store
    test = gt["split"] == 1
    z = centre_depth(gt["cam"][test])[..., 2]

    def deep(xy, visible, rows):  # twice the true depth relief: a pure depth error of |z - mean z|
        return _image_frame(gt, rows, gt["cam"][rows] * [1, 1, 2])

    m = evaluate(path, template, deep, None, SMALL, progress=False).metrics
    assert m["xy_mm"] == pytest.approx(0, abs=1e-3)
    assert m["z_mm"] == pytest.approx(1000 * np.abs(z).mean(), rel=1e-6)
    assert m["z_mm"] == pytest.approx(m["mpjpe_mm"], rel=1e-9)
    assert m["torso_facing_share"] == 1.0

    def shifted(xy, visible, rows):  # every vertex 3 mm right and 4 mm down: image plane only
        return _image_frame(gt, rows, gt["cam"][rows] + [0.003, 0.004, 0.0])

    m = evaluate(path, template, shifted, None, SMALL, progress=False).metrics
    assert m["xy_mm"] == pytest.approx(5, rel=1e-4) and m["z_mm"] == pytest.approx(0, abs=1e-3)


def test_segmentation_keys_table_and_figure(store, template, tmp_path):
    """Parts built from the coarse DensePose regions, initialised as two parts."""
    path, gt = store
    labels = np.zeros(len(template.vertices), int)
    for k, ids in enumerate(REGIONS.values()):
        labels[np.isin(template.vertex_part, ids)] = k
    seg = np.eye(10)[labels] * 0.9 + 0.01
    init = np.eye(10)[np.where(np.isin(labels, [0, 1, 2, 4, 6, 8]), 0, 3)] * 0.5 + 0.05

    def oracle(xy, visible, rows):
        return _image_frame(gt, rows, gt["cam"][rows])

    cfg = EvalParams(batch_size=3, grid=0, meshes=0, uv_maps=0, s2s_instances=0)
    result = evaluate(path, template, oracle, seg, cfg, tmp_path / "reports", progress=False,
                      segmentation_init=init)
    m = result.metrics
    assert m["parts_used"] == 10 and m["regions_distinct"] is True
    assert m["segmentation_min_component_share"] == 1.0
    assert m["segmentation_changed_share"] == pytest.approx(layout_change(init, seg)) and \
        0 < m["segmentation_changed_share"] < 1
    assert 0 < m["segmentation_entropy"] < 1
    assert [r["majority_part"] for r in result.segmentation] == list(range(10))
    assert all(r["majority_share"] == 1.0 for r in result.segmentation)
    assert (tmp_path / "reports" / "segmentation.png").stat().st_size > 1000

    # a mismatching initial segmentation is ignored, with a warning, rather than failing the stage
    m = evaluate(path, template, oracle, seg, cfg, None, progress=False, segmentation_init=init[:, :4]).metrics
    assert m["segmentation_changed_share"] is None and m["parts_used"] == 10

    # without a segmentation the table still has the regions and their vertices, and empty cells
    result = evaluate(path, template, oracle, None, cfg, None, progress=False)
    write_metrics(result, tmp_path / "eval.json", tmp_path / "eval_parts.csv", tmp_path / "segmentation.csv")
    with open(tmp_path / "segmentation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["region"] for r in rows] == list(REGIONS) and {r["majority_part"] for r in rows} == {""}
    assert sum(int(r["vertices"]) for r in rows) == len(template.vertices)
    assert all(v is None for k, v in json.loads((tmp_path / "eval.json").read_text()).items()
               if k in SEGMENTATION_KEYS)


def test_perspective_uses_weak_perspective(template, tmp_path):
    path = tmp_path / "kp.zarr"
    gt = _store(path, template, projection="perspective")

    def oracle(xy, visible, rows):  # weak perspective at the true mean depth
        f = gt["f"][rows, None, None] / gt["cam"][rows][..., 2].mean(1)[:, None, None]
        p = gt["cam"][rows]
        return np.concatenate([f * p[..., :2] + gt["c"][rows, None], f * p[..., 2:]], axis=-1)

    m = evaluate(path, template, oracle, None, SMALL, progress=False).metrics
    assert m["mpjpe_mm"] == pytest.approx(0, abs=1e-3)


def test_errors_are_named(store, template, tmp_path):
    path, gt = store
    with pytest.raises(ValueError, match="reconstruct returned"):
        evaluate(path, template, lambda xy, v, r: np.zeros((len(r), 5, 3)), None, SMALL, progress=False)
    arrays = {"xy": np.zeros((2, len(template.vertices), 2), np.float32),
              "visible": np.ones((2, len(template.vertices)), bool),
              "count": np.ones((2, len(template.vertices)), np.uint16),
              "confidence": np.ones((2, len(template.vertices)), np.float16), "split": np.array([0, 1], np.uint8)}
    write_store(tmp_path / "nogt.zarr", arrays, {"schema": SCHEMA, "template_hash": template.hash})
    with pytest.raises(StoreError, match="no ground truth and no box"):
        evaluate(tmp_path / "nogt.zarr", template, None, None, SMALL, progress=False)
    _store(tmp_path / "notest.zarr", template, test_split=False)
    with pytest.raises(StoreError, match="no test instance"):  # with ground truth a test split is needed
        evaluate(tmp_path / "notest.zarr", template, None, None, SMALL, progress=False)


MODES = ["walk", "reach", "sit", "bend"]
MODE = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 2], np.int8)  # test rows 1, 2, 4, 7, 8, 9: reach sit walk bend walk sit
AREA = np.array([0.05, 0.3, 0.9, 0.1, 0.5, 0.69, 1.0, 0.7, 0.29, 0.45], np.float32)  # test: bins 1, 3, 2, 3, 0, 1


@pytest.fixture(scope="module")
def mode_store(tmp_path_factory, template):
    """Like ``store`` with pose modes (``gt/mode``, attribute ``pose_modes``) and visible shares :data:`AREA`."""
    path = tmp_path_factory.mktemp("eval_modes") / "keypoints.zarr"
    return path, _store(path, template, extra={"gt/mode": MODE, "visible_area": AREA}, attrs={"pose_modes": MODES})


def _deeper(gt: dict, index: np.ndarray):
    """A model whose depth relief is (1 + 0.3 r) times the truth's for row r of :func:`_store` (an error that differs
    from instance to instance); ``index`` maps the rows of the store evaluated to those of :func:`_store`."""
    def run(xy, visible, rows):
        r = index[rows]
        scale = np.ones((len(r), 1, 3))
        scale[:, 0, 2] = 1 + 0.3 * r
        return _image_frame(gt, r, gt["cam"][r] * scale)
    return run


def _arrays(path: Path) -> tuple[dict, dict]:
    """Every array of a store by path (``gt/mode``), and its attributes."""
    import zarr

    g = zarr.open_group(str(path), mode="r")
    return {name: a[:] for name, a in g.members(max_depth=None) if isinstance(a, zarr.Array)}, dict(g.attrs)


def test_error_by_pose_mode_is_the_mpjpe_of_its_instances_alone(mode_store, template, tmp_path):
    """Each mode's row of ``by_pose_mode`` is what the evaluation of a store of that mode's instances alone gives."""
    path, gt = mode_store
    m = evaluate(path, template, _deeper(gt, np.arange(10)), None, SMALL, progress=False).metrics
    by = m["by_pose_mode"]
    assert list(by) == MODES and [by[k]["instances"] for k in MODES] == [2, 1, 2, 1]
    arrays, attrs = _arrays(path)
    for k, name in enumerate(MODES):
        rows = np.flatnonzero(MODE == k)
        write_store(tmp_path / f"{name}.zarr", {a: v[rows] for a, v in arrays.items()}, attrs, chunk=4)
        alone = evaluate(tmp_path / f"{name}.zarr", template, _deeper(gt, rows), None, SMALL, progress=False).metrics
        assert alone["test_instances"] == by[name]["instances"]
        assert by[name]["mpjpe_mm"] == pytest.approx(alone["mpjpe_mm"], rel=1e-9), name
        assert by[name]["flat_mpjpe_mm"] == pytest.approx(alone["flat_mpjpe_mm"], rel=1e-9), name
        assert by[name]["ratio"] == pytest.approx(alone["mpjpe_mm"] / alone["flat_mpjpe_mm"], rel=1e-9), name
        assert alone["by_pose_mode"][name] == pytest.approx(by[name], rel=1e-9)
        assert all(alone["by_pose_mode"][other] == {"instances": 0, "mpjpe_mm": None, "flat_mpjpe_mm": None,
                                                    "ratio": None} for other in MODES if other != name)
    assert len({by[k]["mpjpe_mm"] for k in MODES}) == 4  # the modes' errors differ: the rows are not mixed up
    assert sum(by[k]["mpjpe_mm"] * by[k]["instances"] for k in MODES) / 6 == pytest.approx(m["mpjpe_mm"], rel=1e-9)


def test_visible_share_bins_partition_the_instances(mode_store, template):
    path, gt = mode_store
    result = evaluate(path, template, _deeper(gt, np.arange(10)), None, SMALL, progress=False)
    m, per = result.metrics, result.per_instance
    by = m["by_visible_share"]
    assert list(by) == ["vis00-30", "vis30-50", "vis50-70", "vis70-100"]
    # the stored float32 shares against the edges: 0.3 is in [0.3, 0.5), 0.7 in [0.7, 1], 0.29 in [0, 0.3)
    np.testing.assert_array_equal(per["visible_bin"], [1, 3, 2, 3, 0, 1])
    assert [v["instances"] for v in by.values()] == [1, 2, 1, 2] and sum(v["instances"] for v in by.values()) == 6
    for k, v in enumerate(by.values()):
        assert v["mpjpe_mm"] == pytest.approx(1000 * per["mpjpe"][per["visible_bin"] == k].mean(), rel=1e-12)
        assert v["flat_mpjpe_mm"] == pytest.approx(1000 * per["flat"][per["visible_bin"] == k].mean(), rel=1e-12)
    assert sum(v["mpjpe_mm"] * v["instances"] for v in by.values()) / 6 == pytest.approx(m["mpjpe_mm"], rel=1e-9)
    assert sum(v["flat_mpjpe_mm"] * v["instances"] for v in by.values()) / 6 == \
        pytest.approx(m["flat_mpjpe_mm"], rel=1e-9)


def test_pose_modes_the_store_cannot_name_are_errors(template, tmp_path):
    for name, extra, attrs, match in (
            ("unnamed", {"gt/mode": MODE}, {}, "gt/mode needs the pose modes' names.*got None"),
            ("twice", {"gt/mode": MODE}, {"pose_modes": ["walk", "walk", "sit", "bend"]}, "distinct strings"),
            ("unknown", {"gt/mode": np.where(np.arange(10) == 4, 7, MODE).astype(np.int8)}, {"pose_modes": MODES},
             r"gt/mode holds 7 at instance 4 \(1 instances in all\), but pose_modes names 4 modes")):
        _store(tmp_path / f"{name}.zarr", template, extra=extra, attrs=attrs)
        with pytest.raises(StoreError, match=match) as err:
            evaluate(tmp_path / f"{name}.zarr", template, None, None, SMALL, progress=False)
        assert str(tmp_path / f"{name}.zarr") in str(err.value) and "dvc repro -f keypoints" in str(err.value)
    gt = _store(tmp_path / "area.zarr", template,
                extra={"visible_area": np.where(np.arange(10) == 2, 1.5, AREA).astype(np.float32)})
    with pytest.raises(ValueError, match=r"visible shares must lie in \[0, 1\], got 1.5"):
        evaluate(tmp_path / "area.zarr", template, _deeper(gt, np.arange(10)), None, SMALL, progress=False)


def _checkpoint(template, tmp_path: Path, model_type: str = "dp3d", init: np.ndarray | None = None) -> Path:
    """An untrained tiny model saved as pipeline.train.loop saves it (``segmentation_init`` if ``init`` is given),
    with its params.yaml and the template next to it; returns the checkpoint's path."""
    import yaml

    from pipeline.core.config import as_dict, load_params_dict
    from pipeline.train.part_init import build_model

    raw = {"model": {"type": model_type, "parts": 3, "lbo_basis": 4, "hidden": 16, "bottleneck": 8, "blocks": 1},
           "eval": {"batch_size": 4, "grid": 1, "meshes": 1, "uv_maps": 1, "uv_resolution": 8, "s2s_instances": 1}}
    params = load_params_dict(raw)
    basis = np.random.default_rng(0).normal(size=(len(template.vertices), 4))
    model = build_model(params.model, template.vertices, template.up, template.forward, basis)
    ck = {"model": model.state_dict(), "params": as_dict(params), "step": 0, "template_hash": template.hash,
          "template": model.template, "basis": model.basis, "template_scale": 1.0, "metrics": {}}
    if init is not None:
        ck["segmentation_init"] = torch.as_tensor(init, dtype=torch.float32)
    torch.save(ck, tmp_path / "model.pt")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    template.save(tmp_path / "template.npz")
    return tmp_path / "model.pt"


def _stage(template, tmp_path: Path, keypoints: Path, model_type: str = "dp3d",
           init: np.ndarray | None = None) -> dict:
    """Runs the stage on :func:`_checkpoint`'s model; returns eval.json."""
    model = _checkpoint(template, tmp_path, model_type, init)
    return _run_stage(tmp_path, tmp_path / "params.yaml", model, keypoints, tmp_path / "m", tmp_path / "reports")


def _run_stage(tmp_path: Path, params: Path, model: Path, keypoints: Path, out: Path, reports: Path) -> dict:
    """The evaluate stage in-process on the template in ``tmp_path``, its tables in ``out``; returns eval.json."""
    from stages.evaluate import main

    main(["--params", str(params), "--model", str(model), "--keypoints", str(keypoints), "--template",
          str(tmp_path / "template.npz"), "--metrics", str(out / "eval.json"), "--parts", str(out / "eval_parts.csv"),
          "--segmentation", str(out / "segmentation.csv"), "--reports", str(reports)])
    return json.loads((out / "eval.json").read_text())


def _assert_network_alone_is_the_unrefined_score(tmp_path: Path, keypoints: Path, refined: dict, keys: tuple) -> None:
    """eval.json's network_alone (refinement on, the default) holds exactly what ``eval.refine_steps: 0`` scores with
    the same model (:func:`_stage`'s, in ``tmp_path``) on the same instances; unrefined, there is no network_alone."""
    import yaml

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["eval"]["refine_steps"] = 0
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(params))
    plain = _run_stage(tmp_path, tmp_path / "plain.yaml", tmp_path / "model.pt", keypoints, tmp_path / "plain",
                       tmp_path / "plain" / "reports")
    assert "network_alone" not in plain and tuple(refined["network_alone"]) == keys
    assert refined["network_alone"] == {k: plain[k] for k in keys}
    assert refined[keys[0]] != plain[keys[0]]  # the headline figures are the refined prediction's


def test_stage_runs_on_a_checkpoint(store, template, tmp_path):
    """The stage end to end on an untrained tiny model saved as pipeline.train.loop saves it, with the initial
    segmentation in the checkpoint."""
    path, _ = store
    init = np.eye(3)[np.arange(len(template.vertices)) * 3 // len(template.vertices)]  # three bands of vertices
    metrics = _stage(template, tmp_path, path, init=init)
    assert tuple(metrics) == METRIC_KEYS + ("network_alone", "by_visible_share")
    assert metrics["test_instances"] == 6 and np.isfinite(metrics["mpjpe_mm"]) and metrics["s2s_instances"] == 1
    assert (tmp_path / "reports" / "segmentation.png").is_file()
    assert (tmp_path / "m" / "eval_parts.csv").read_text().startswith(",".join(PART_COLUMNS))
    assert (tmp_path / "m" / "segmentation.csv").read_text().startswith(",".join(SEGMENTATION_COLUMNS))
    learnt = model_reconstructor(tmp_path / "model.pt", template)
    np.testing.assert_array_equal(learnt.segmentation_init, init.astype(np.float32))
    expected, _ = segmentation_metrics(learnt.segmentation, template.faces, template.vertex_part, init)
    assert 1 <= metrics["parts_used"] <= 3 and metrics["segmentation_changed_share"] is not None
    for key in SEGMENTATION_KEYS:
        assert metrics[key] == pytest.approx(expected[key], abs=1e-4), key
    _assert_network_alone_is_the_unrefined_score(tmp_path, path, metrics, ALONE_KEYS)


def test_a_baseline_has_one_part_and_an_older_checkpoint_no_initial_segmentation(store, template, tmp_path):
    path, _ = store
    assert model_reconstructor(_checkpoint(template, tmp_path), template).segmentation_init is None
    metrics = _stage(template, tmp_path, path, model_type="no_parts")
    assert {k: metrics[k] for k in SEGMENTATION_KEYS} == {
        "parts_used": 1, "segmentation_entropy": 0.0, "segmentation_min_component_share": 1.0,
        "segmentation_changed_share": None, "regions_distinct": False}
    with open(tmp_path / "m" / "segmentation.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["region"] for r in rows] == list(REGIONS)
    assert {(r["majority_part"], r["majority_share"]) for r in rows} == {("0", "1.0")}


@pytest.fixture(scope="module")
def store_no_gt(tmp_path_factory, template):
    """Like ``store`` without the ``gt/*`` arrays (as from real images): test split rows 1, 2, 4, 7, 8, 9."""
    path = tmp_path_factory.mktemp("eval_no_gt") / "keypoints.zarr"
    return path, _store(path, template, ground_truth=False)


def _with_depth(xy: np.ndarray, offset) -> np.ndarray:
    """(B, N, 3): keypoints moved by ``offset`` (B, N, 2), any depth."""
    z = np.random.default_rng(3).normal(0, 50, xy.shape[:2] + (1,))
    return np.concatenate([xy + offset, z], axis=-1)


def test_reprojection_errors_and_box_diagonals_match_a_loop():
    rng = np.random.default_rng(0)
    image, xy = rng.normal(size=(3, 5, 3)), rng.normal(size=(3, 5, 2))
    naive = [[np.sqrt((image[b, i, 0] - xy[b, i, 0]) ** 2 + (image[b, i, 1] - xy[b, i, 1]) ** 2) for i in range(5)]
             for b in range(3)]
    np.testing.assert_allclose(reprojection_errors(image, xy), naive, rtol=1e-12)
    np.testing.assert_allclose(box_diagonals(np.array([[0, 0, 3, 4], [10, 20, 16, 28], [5, 5, 5, 5]])),
                               [5, 10, 1e-6])
    with pytest.raises(ValueError, match="xy"):
        reprojection_errors(image, xy[:, :4])


def test_without_ground_truth_an_exact_2d_fit_scores_zero(store_no_gt, template, tmp_path):
    path, gt = store_no_gt
    seg = np.eye(5)[np.arange(len(template.vertices)) % 5]
    result = evaluate(path, template, lambda xy, visible, rows: _with_depth(xy, 0.0), seg, SMALL,
                      tmp_path / "reports", progress=False)
    m = result.metrics
    assert not result.ground_truth and result.instances == 6
    assert m["ground_truth"] is False and m["split"] == "test"
    assert m["reproj2d_keypoints"] == gt["visible"][gt["split"] == 1].sum()
    for key in ("reproj2d_mean_px", "reproj2d_median_px", "reproj2d_mean_box_pct", "reproj2d_median_box_pct"):
        assert m[key] == 0, key

    reports = tmp_path / "reports"
    assert sorted(p.name for p in reports.iterdir()) == ["grid.png", "index.html", "meshes", "segmentation.png",
                                                         "uv_maps", "uv_maps.png"]  # no truth, no errors.png
    assert (reports / "grid.png").stat().st_size > 1000
    assert [p.name for p in (reports / "meshes").iterdir()] == ["000_row1_pred.ply"]
    assert [p.name for p in (reports / "uv_maps").iterdir()] == ["000_row1_pred.png"]
    # meshes: image-frame pixels, mean depth 0
    mesh = trimesh.load(reports / "meshes" / "000_row1_pred.ply", process=False)
    expected = centre_depth(_with_depth(gt["xy"][[1]], 0.0))[0]
    np.testing.assert_allclose(mesh.vertices, expected, atol=1e-3)

    write_metrics(result, tmp_path / "eval.json", tmp_path / "eval_parts.csv")
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert tuple(saved) == METRIC_KEYS_NO_GT and saved["ground_truth"] is False
    with open(tmp_path / "eval_parts.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == PART_COLUMNS_NO_GT and len(rows) == 24
    assert sum(int(r["reproj2d_keypoints"]) for r in rows) == m["reproj2d_keypoints"]
    assert {r["reproj2d_mean_px"] for r in rows if int(r["reproj2d_keypoints"])} == {"0.0"}


def test_without_ground_truth_a_shift_gives_its_length(store_no_gt, template):
    """Visible keypoints 3, 4 px off (5 px), invisible ones far off (not measured)."""
    path, gt = store_no_gt
    vis = gt["visible"]

    def shifted(xy, visible, rows):
        return _with_depth(xy, np.where(vis[rows][..., None], [3.0, 4.0], [1000.0, -7.0]))

    result = evaluate(path, template, shifted, None, EvalParams(batch_size=4, parts="coarse"), progress=False)
    m = result.metrics
    assert m["reproj2d_mean_px"] == pytest.approx(5, rel=1e-9)
    assert m["reproj2d_median_px"] == pytest.approx(5, rel=1e-6)
    # by hand: 5 px over each test instance's box diagonal, weighted by its visible keypoints
    test = np.flatnonzero(gt["split"] == 1)
    box = gt["box"][test].astype(np.float64)
    pct = 500 / np.hypot(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    counts = vis[test].sum(1)
    assert m["reproj2d_mean_box_pct"] == pytest.approx((pct * counts).sum() / counts.sum(), rel=1e-9)
    assert m["reproj2d_median_box_pct"] == pytest.approx(np.median(np.repeat(pct, counts)), rel=1e-6)
    np.testing.assert_allclose(result.per_instance["reproj2d_px"], 5, rtol=1e-9)
    np.testing.assert_array_equal(result.per_instance["row"], test)
    assert len(result.parts) == 14
    for r in result.parts:
        assert r["reproj2d_mean_px"] is None or r["reproj2d_mean_px"] == pytest.approx(5, rel=1e-9)


def test_without_ground_truth_or_test_split_every_instance_is_evaluated(template, tmp_path, caplog):
    path = tmp_path / "train_only.zarr"
    gt = _store(path, template, ground_truth=False, test_split=False)
    with caplog.at_level("WARNING", logger="pipeline.evaluate.loop"):
        result = evaluate(path, template, lambda xy, visible, rows: _with_depth(xy, [0.0, 2.0]), None, SMALL,
                          tmp_path / "reports", progress=False)
    assert any("no test instance" in r.message and str(path) in r.message for r in caplog.records)
    m = result.metrics
    assert m["instances"] == 10 and m["split"] == "all" and m["reproj2d_keypoints"] == gt["visible"].sum()
    assert m["reproj2d_mean_px"] == pytest.approx(2, rel=1e-9) and m["reproj2d_median_px"] == pytest.approx(2)
    assert (tmp_path / "reports" / "grid.png").is_file()
    assert [p.name for p in (tmp_path / "reports" / "meshes").iterdir()] == ["000_row0_pred.ply"]


def _train_only(template, tmp_path) -> Path:
    path = tmp_path / "train_only.zarr"
    _store(path, template, ground_truth=False, test_split=False)
    return path


def _what_is_said(path, template, checkpoint, caplog) -> list:
    """The (level, message) of the evaluation's log line about the instances it reconstructs."""
    caplog.clear()
    with caplog.at_level("INFO", logger="pipeline.evaluate.loop"):
        result = evaluate(path, template, lambda xy, visible, rows: _with_depth(xy, [0.0, 2.0]), None, SMALL,
                          progress=False, checkpoint=checkpoint)
    assert result.metrics["split"] == "all" and result.metrics["instances"] == 10
    return [(r.levelname, r.message) for r in caplog.records if "no test instance" in r.message]


def test_without_a_test_split_the_log_says_what_the_checkpoint_records_of_its_training(template, tmp_path, caplog):
    """Every instance is reconstructed; "measured on training instances" is said only of the store the checkpoint
    was trained on (its data record), with how many; another store's model is said not to have seen them; without
    a record, that it is unknown."""
    from pipeline.keypoints.store import instances_fingerprint, open_keypoints

    path = _train_only(template, tmp_path)
    mine = {"keypoints": "data/keypoints.zarr", "instances": instances_fingerprint(open_keypoints(path))}
    params = {"train": {"val_share": 0.0}, "common": {"seed": 0}}

    ((level, msg),) = _what_is_said(path, template, {"data": mine, "params": params}, caplog)
    assert level == "WARNING" and str(path) in msg
    assert "trained on this store (data/keypoints.zarr): all 10 are its training instances" in msg

    held = {"train": {"val_share": 0.2}, "common": {"seed": 0}}
    ((level, msg),) = _what_is_said(path, template, {"data": mine, "params": held}, caplog)
    assert level == "WARNING" and "8 of these 10 instances are its training instances, 2 were held out" in msg

    other = {"keypoints": "/elsewhere/keypoints.zarr", "instances": "0123456789abcdef"}
    ((level, msg),) = _what_is_said(path, template, {"data": other, "params": params}, caplog)
    assert level == "INFO" and "trained on another store (/elsewhere/keypoints.zarr" in msg
    assert "training instances" not in msg

    for unknown in (None, {"params": params, "data": None}):
        ((level, msg),) = _what_is_said(path, template, unknown, caplog)
        assert level == "WARNING" and "does not record the instances it was trained on" in msg
        assert "trained on this store" not in msg


def test_instances_fingerprint_names_the_detections_and_split_not_the_keypoints(template, tmp_path):
    from pipeline.keypoints.store import instances_fingerprint, open_keypoints

    a, b, c = (tmp_path / f"{x}.zarr" for x in "abc")
    _store(a, template, ground_truth=False, test_split=False)
    gt = _store(b, template, ground_truth=True, test_split=False)  # the same boxes and split, other arrays
    _store(c, template, ground_truth=False, test_split=True)
    fp = [instances_fingerprint(open_keypoints(p)) for p in (a, b, c)]
    assert fp[0] == fp[1] != fp[2] and len(fp[0]) == 16
    assert gt["box"].shape == (10, 4)


def test_stage_runs_without_ground_truth(store_no_gt, template, tmp_path):
    path, _ = store_no_gt
    metrics = _stage(template, tmp_path, path)
    assert tuple(metrics) == METRIC_KEYS_NO_GT + ("network_alone",)
    assert metrics["instances"] == 6 and metrics["split"] == "test"
    assert np.isfinite(metrics["reproj2d_mean_px"]) and metrics["reproj2d_mean_px"] > 0  # an untrained model
    assert (tmp_path / "m" / "eval_parts.csv").read_text().startswith(",".join(PART_COLUMNS_NO_GT))
    assert (tmp_path / "reports" / "grid.png").is_file() and not (tmp_path / "reports" / "errors.png").exists()
    assert metrics["parts_used"] >= 1 and metrics["segmentation_changed_share"] is None  # no segmentation_init
    assert (tmp_path / "m" / "segmentation.csv").read_text().startswith(",".join(SEGMENTATION_COLUMNS))
    _assert_network_alone_is_the_unrefined_score(tmp_path, path, metrics, ALONE_KEYS_NO_GT)


def _streamed(values: np.ndarray, parts: int = 7):
    """The log histogram of ``values`` added up from ``parts`` batches."""
    h = empty_histogram()
    for part in np.array_split(values, parts):
        h = add_histograms(h, log_histogram(part))
    return h


def test_streamed_quantiles_are_the_exact_ones_within_the_bound():
    rng = np.random.default_rng(0)
    samples = {"exponential, odd count": rng.exponential(3.0, 100_001), "16 octaves, even": rng.lognormal(0, 4, 50_000),
               "keypoint-like": np.abs(rng.normal(0, 2, (40, 300))).ravel()}
    for name, values in samples.items():
        h = _streamed(values)
        assert h.counts.sum() == len(values) and h.nans == 0
        ordered = np.sort(values)
        for q in (0.0, 0.1, 0.5, 0.9, 1.0):
            upper = ordered[int(np.ceil(q * (len(values) - 1)))]  # the larger order statistic interpolated
            bound = RELATIVE_BIN_WIDTH * upper + 2.0 ** MIN_EXPONENT
            assert abs(histogram_quantile(h, q) - np.quantile(values, q)) <= bound, (name, q)
        assert histogram_median(h) == histogram_quantile(h, 0.5)
        assert abs(histogram_median(h) - np.median(values)) <= 1e-4 * np.median(values), name  # measured: ~1e-6


def test_streamed_median_is_exact_for_repeated_values_and_follows_numpy_otherwise():
    ties = np.random.default_rng(1).integers(0, 20, 10_001) * 0.3  # each value alone in its bin
    assert histogram_median(_streamed(ties)) == pytest.approx(np.median(ties), rel=1e-12)
    assert histogram_median(_streamed(np.r_[np.zeros(9), np.full(8, 5.0)])) == 0.0
    assert histogram_median(_streamed(np.full(10, 5.0))) == 5.0
    assert histogram_median(_streamed(np.array([1.0, 3.0]), parts=2)) == 2.0  # an even count: the two middle ones
    assert histogram_median(empty_histogram()) is None
    assert np.isnan(histogram_median(log_histogram(np.array([1.0, np.nan]))))  # as np.median
    assert histogram_quantile(log_histogram(np.array([np.inf, 1.0, 2.0])), 0.5) == 2.0
    with pytest.raises(ValueError, match="non-negative"):
        log_histogram(np.array([1.0, -0.5]))
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(empty_histogram(), 1.5)


def test_log_bins_edges_and_widths():
    index = np.array([1, 2, 5000, 16383, 16384, 16385, 400_000, N_BINS - 2])
    lower, upper = bin_lower_edges(index), bin_lower_edges(index + 1)
    np.testing.assert_array_equal(log_bins(lower), index)  # a lower edge is in its bin ...
    np.testing.assert_array_equal(log_bins(np.nextafter(upper, 0)), index)  # ... and so is just below the next
    assert ((upper - lower) <= RELATIVE_BIN_WIDTH * lower).all()
    np.testing.assert_array_equal(log_bins(np.array([0.0, 2.0 ** (MIN_EXPONENT - 1), np.inf, 1e300])),
                                  [0, 0, N_BINS - 1, N_BINS - 1])
    v = np.random.default_rng(2).lognormal(0, 5, 10_000)
    b = log_bins(v)
    assert ((bin_lower_edges(b) <= v) & ((v < bin_lower_edges(b + 1)) | (b == N_BINS - 1))).all()


def test_without_ground_truth_the_medians_are_the_exact_ones_within_the_bound(store_no_gt, template):
    path, gt = store_no_gt
    offsets = np.random.default_rng(4).normal(0, 3, gt["xy"].shape)  # (n, N, 2) pixels

    def jittered(xy, visible, rows):
        return _with_depth(xy, offsets[rows])

    m = evaluate(path, template, jittered, None, EvalParams(batch_size=4), progress=False).metrics
    test = gt["split"] == 1
    vis = gt["visible"][test]
    px = reprojection_errors(_with_depth(gt["xy"][test], offsets[test]), gt["xy"][test])[vis]
    pct = (100 * reprojection_errors(_with_depth(gt["xy"][test], offsets[test]), gt["xy"][test])
           / box_diagonals(gt["box"][test])[:, None])[vis]
    for key, values in (("reproj2d_median_px", px), ("reproj2d_median_box_pct", pct)):
        exact = np.median(values)
        assert m[key] == pytest.approx(exact, rel=RELATIVE_BIN_WIDTH, abs=0), key
    assert m["reproj2d_mean_px"] == pytest.approx(px.mean(), rel=1e-9)


def test_without_ground_truth_memory_does_not_grow_with_the_instances(template, tmp_path):
    """Peak traced memory (numpy's arrays included) of evaluating 12 and 400 instances: the per-keypoint
    distances kept before the medians were streamed grew it by ~10 kB an instance (4 MB here)."""
    import tracemalloc

    peaks = []
    for n in (12, 400):
        path = tmp_path / f"{n}.zarr"
        _store(path, template, n=n, ground_truth=False, test_split=False)
        tracemalloc.start()
        result = evaluate(path, template, lambda xy, visible, rows: _with_depth(xy, 1.0), None,
                          EvalParams(batch_size=8, grid=0, meshes=0, uv_maps=0), progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert result.instances == n
    assert peaks[1] - peaks[0] < 1_000_000, peaks  # per-instance scalars only: ~30 bytes an instance

