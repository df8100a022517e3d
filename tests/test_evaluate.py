"""The evaluate stage with stand-in models whose metric values are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import roma
import torch

from pipeline.config import EvalParams
from pipeline.evaluate import METRIC_KEYS, PART_COLUMNS, evaluate, write_metrics
from pipeline.keypoints_store import SCHEMA
from pipeline.mesh import vertex_normals
from pipeline.store import StoreError, write_store

SMALL = EvalParams(batch_size=3, grid=2, meshes=1, uv_maps=1, uv_resolution=8, s2s_instances=0)


def _store(path: Path, template, n: int = 10, projection: str = "orthographic") -> dict:
    """A keypoints store: the template turned about its up axis, 4 m in front of an orthographic camera."""
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
    split[[1, 2, 4, 7, 8, 9]] = 1  # gaps: batches read a span and keep the test rows
    arrays = {
        "xy": np.where(visible[..., None], pixels, 0).astype(np.float32), "visible": visible,
        "count": visible.astype(np.uint16), "visible_area": visible.mean(1).astype(np.float32), "split": split,
        "gt/vertices": cam.astype(np.float32), "gt/visible": visible,
        "gt/camera": np.c_[f, c].astype(np.float32), "gt/pixels": pixels.astype(np.float32),
    }
    write_store(path, arrays, {"schema": SCHEMA, "template_hash": template.hash, "projection": projection},
                chunk=4)
    return {"f": f, "c": c, "cam": cam.astype(np.float32).astype(np.float64), "split": split, "visible": visible}


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
    for key in ("mpjpe_mm", "mpjpe_visible_mm", "mpjpe_invisible_mm", "re14_mm", "mpjpe_best_flip_mm"):
        assert m[key] == pytest.approx(0, abs=1e-3), key
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

    write_metrics(result, tmp_path / "eval.json", tmp_path / "eval_parts.csv")
    assert tuple(json.loads((tmp_path / "eval.json").read_text())) == METRIC_KEYS
    with open(tmp_path / "eval_parts.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == PART_COLUMNS and len(rows) == 24
    assert sum(int(r["vertices"]) for r in rows) == len(template.vertices)


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

    def off_when_hidden(xy, visible, rows):
        p = gt["cam"][rows] + np.where(vis[rows][..., None], 0.0, [0.01, 0.0, 0.0])  # 10 mm off when hidden
        return _image_frame(gt, rows, p)

    m = evaluate(path, template, off_when_hidden, None, SMALL, progress=False).metrics
    assert m["mpjpe_visible_mm"] == pytest.approx(0, abs=1e-3)
    assert m["mpjpe_invisible_mm"] == pytest.approx(10, rel=1e-4)
    share = (~vis[gt["split"] == 1]).mean()
    assert m["mpjpe_mm"] == pytest.approx(10 * share, rel=1e-4)


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
              "count": np.ones((2, len(template.vertices)), np.uint16), "split": np.array([0, 1], np.uint8)}
    write_store(tmp_path / "nogt.zarr", arrays, {"schema": SCHEMA, "template_hash": template.hash})
    with pytest.raises(StoreError, match="no ground truth"):
        evaluate(tmp_path / "nogt.zarr", template, None, None, SMALL, progress=False)


def test_stage_runs_on_a_checkpoint(store, template, tmp_path):
    """The stage end to end on an untrained tiny model saved as pipeline.train saves it."""
    import yaml

    from pipeline.config import as_dict, load_params_dict
    from pipeline.model import build_model
    from stages.evaluate import main

    path, _ = store
    raw = {"model": {"parts": 3, "lbo_basis": 4, "hidden": 16, "bottleneck": 8, "blocks": 1},
           "eval": {"batch_size": 4, "grid": 1, "meshes": 1, "uv_maps": 1, "uv_resolution": 8, "s2s_instances": 1}}
    params = load_params_dict(raw)
    basis = np.random.default_rng(0).normal(size=(len(template.vertices), 4))
    model = build_model(params.model, template.vertices, template.up, template.forward, basis)
    ck = {"model": model.state_dict(), "params": as_dict(params), "step": 0, "template_hash": template.hash,
          "template": model.template, "basis": model.basis, "template_scale": 1.0, "metrics": {}}
    torch.save(ck, tmp_path / "model.pt")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    template.save(tmp_path / "template.npz")
    main(["--params", str(tmp_path / "params.yaml"), "--model", str(tmp_path / "model.pt"), "--keypoints", str(path),
          "--template", str(tmp_path / "template.npz"), "--metrics", str(tmp_path / "m" / "eval.json"),
          "--parts", str(tmp_path / "m" / "eval_parts.csv"), "--reports", str(tmp_path / "reports")])
    metrics = json.loads((tmp_path / "m" / "eval.json").read_text())
    assert metrics["test_instances"] == 6 and np.isfinite(metrics["mpjpe_mm"]) and metrics["s2s_instances"] == 1
    assert (tmp_path / "reports" / "segmentation.png").is_file()
    assert (tmp_path / "m" / "eval_parts.csv").read_text().startswith(",".join(PART_COLUMNS))
