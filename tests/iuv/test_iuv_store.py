"""The iuv stage on small hand-made densepose.zarr stores."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tree_bytes

from pipeline.core.store import StoreError, write_store
from pipeline.densepose.store import SCHEMA, densepose_specs
from pipeline.iuv.repair import RepairOptions
from pipeline.iuv.store import open_iuv
from pipeline.iuv.write import image_foreground, repair_store
from pipeline.template.file import encode_iuv
from stages import iuv as iuv_stage

S = 32


def exact_instance(rng):
    """An ellipse split into 3 parts by column, with U, V ramps: (labels (S,S), uv (2,S,S))."""
    r, c = np.mgrid[0:S, 0:S]
    cy, cx = rng.uniform(13, 19, 2)
    body = ((r - cy) / 12) ** 2 + ((c - cx) / 9) ** 2 < 1
    labels = np.where(body, 1 + np.clip((c - cx + 9) // 6, 0, 2), 0).astype(np.uint8)
    uv = np.stack([(c % 6 + 0.5) / 6, r / S]).astype(np.float32)
    uv = np.where(body[None], uv, np.nan)
    return labels, uv


def corrupt(labels, uv, rng):
    labels, uv = labels.copy(), uv.copy()
    r0, c0 = rng.integers(10, 18, 2)
    uv[:, r0:r0 + 3, c0:c0 + 3] = np.nan            # a NaN blob
    labels[r0 + 4:r0 + 6, c0:c0 + 2] = 255           # missing labels
    labels[r0 - 3:r0 - 1, c0 + 1:c0 + 3] = 0         # a hole
    labels[0:2, 0:2], uv[:, 0:2, 0:2] = 7, 0.5       # a speck
    return labels, uv


def make_store(path, n=12, corrupted=True, tiny=(), boxes=None):
    rng = np.random.default_rng(0)
    specs = densepose_specs(S, chart=True, cse_dim=None)
    arrays = {k: np.zeros((n, *shape), dtype) for k, (shape, dtype) in specs.items()}
    arrays["gt/iuv"] = np.zeros((n, S, S, 3), np.uint8)
    for i in range(n):
        labels, uv = exact_instance(rng)
        if i in tiny:
            labels[:] = 0
            labels[3:5, 3:5] = 2
        arrays["gt/iuv"][i] = encode_iuv(labels, uv)
        if corrupted and i not in tiny:
            labels, uv = corrupt(labels, uv, rng)
        arrays["labels"][i], arrays["uv"][i] = labels, uv.astype(np.float16)
        arrays["box"][i] = (boxes or {}).get(i, (10, 20, 10 + S, 20 + S))  # S image pixels: crop pixels are pixels
        arrays["score"][i], arrays["image"][i], arrays["split"][i] = 1, i, i % 2
    write_store(path, arrays, {"schema": SCHEMA, "kinds": ["chart"], "crop": S, "source": "test",
                               "images": [f"im{i}" for i in range(n)], "template_hash": "abc"}, chunk=4)
    return arrays


def test_exact_data_passes_through_unchanged(tmp_path):
    arrays = make_store(tmp_path / "dp.zarr", corrupted=False)
    s = repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(min_component_area=5), 10, 1,
                     progress=False)
    out = open_iuv(tmp_path / "iuv.zarr", template_hash="abc", kind="chart")
    assert np.array_equal(out["iuv"][:], encode_iuv(arrays["labels"], arrays["uv"].astype(np.float32)))
    assert s.repairs["pixels_filled"] == s.repairs["holes_filled"] == s.repairs["components_dropped"] == s.repairs["pixels_dropped"] == 0
    assert s.quality_after == s.quality_before
    assert np.array_equal(out["split"][:], arrays["split"]) and np.array_equal(out["gt/iuv"][:], arrays["gt/iuv"])


def test_repair_improves_part_accuracy_and_uv_error(tmp_path):
    make_store(tmp_path / "dp.zarr", corrupted=True)
    s = repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(min_component_area=5), 10, 1,
                     progress=False)
    before, after = s.quality_before, s.quality_after
    assert after["part_accuracy"] > before["part_accuracy"] + 0.01
    assert after["uv_error"] < before["uv_error"] - 0.01
    assert after["foreground_iou"] > before["foreground_iou"]
    # the pixels the repair made are recorded, one mask per instance, as many as counted
    out = open_iuv(tmp_path / "iuv.zarr")
    filled, iuv = out["filled"][:], out["iuv"][:]
    assert filled.dtype == bool and filled.shape == iuv.shape[:3]
    assert np.array_equal(filled.sum(axis=(1, 2)), out["pixels_filled"][:]) and filled.any()
    assert np.all(iuv[filled][:, 0] > 0)  # foreground only
    assert s.repairs["components_dropped"] == 12 and s.repairs["holes_filled"] > 0 and s.repairs["pixels_filled"] > 0
    out = open_iuv(tmp_path / "iuv.zarr")
    assert out["components_dropped"][:].tolist() == [1] * 12


def test_small_instances_are_dropped_and_counted(tmp_path):
    arrays = make_store(tmp_path / "dp.zarr", tiny=(2, 5))
    s = repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 20, 1, progress=False)
    out = open_iuv(tmp_path / "iuv.zarr")
    assert s.instances_out == 10 and s.metrics()["dropped_small_foreground"] == 2
    assert out["source_index"][:].tolist() == [i for i in range(12) if i not in (2, 5)]
    assert np.array_equal(out["image"][:], arrays["image"][out["source_index"][:]])
    assert np.array_equal(out["gt/iuv"][:], arrays["gt/iuv"][out["source_index"][:]])  # row-aligned with the kept


def test_foreground_is_counted_in_image_pixels_not_crop_pixels(tmp_path):
    """A 2 x 1-pixel box fills its S x S crop but holds 2 image pixels: dropped. A box 4 S wide holds 16 times its
    crop's foreground (an ellipse of about 340 crop pixels): kept where crop pixels would have dropped it."""
    big = (0, 0, 4 * S, 4 * S)
    make_store(tmp_path / "dp.zarr", boxes={2: (10.0, 20.0, 12.0, 21.0), 5: big}, corrupted=False)
    s = repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 20, 1, progress=False)
    assert open_iuv(tmp_path / "iuv.zarr")["source_index"][:].tolist() == [i for i in range(12) if i != 2]
    assert s.metrics()["dropped_small_foreground"] == 1
    s = repair_store(tmp_path / "dp.zarr", tmp_path / "iuv600.zarr", RepairOptions(), 600, 1, progress=False)
    assert open_iuv(tmp_path / "iuv600.zarr")["source_index"][:].tolist() == [5] and s.instances_out == 1
    np.testing.assert_allclose(image_foreground(np.array([S * S, 4, 7, 3]), np.array(
        [[10, 20, 12, 21], big, [0, 0, S, S], [5, 5, 4, 9]], np.float32), S), [2.0, 64.0, 7.0, 0.0])


def test_no_surviving_instance_is_an_error_and_writes_nothing(tmp_path):
    make_store(tmp_path / "dp.zarr", n=3, tiny=(0, 1, 2))
    with pytest.raises(StoreError, match="no instance kept"):
        repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 20, 1, progress=False)
    assert not (tmp_path / "iuv.zarr").exists()


def test_workers_do_not_change_the_result(tmp_path):
    make_store(tmp_path / "dp.zarr")
    repair_store(tmp_path / "dp.zarr", tmp_path / "a.zarr", RepairOptions(), 10, 1, progress=False)
    repair_store(tmp_path / "dp.zarr", tmp_path / "b.zarr", RepairOptions(), 10, 2, progress=False)
    a = tree_bytes(tmp_path / "a.zarr")
    assert a and a == tree_bytes(tmp_path / "b.zarr")


def test_stage_writes_store_metrics_and_preview(tmp_path):
    make_store(tmp_path / "dp.zarr")
    params = tmp_path / "params.yaml"
    params.write_text("cluster: {workers: 1}\niuv: {min_foreground: 10, previews: 3}\n")
    iuv_stage.main(["--params", str(params), "--densepose", str(tmp_path / "dp.zarr"), "--out", str(tmp_path / "iuv.zarr"),
                    "--preview", str(tmp_path / "preview"), "--metrics", str(tmp_path / "m" / "iuv.json"),
                    "--frames", str(tmp_path / "frames")])
    m = json.loads((tmp_path / "m" / "iuv.json").read_text())
    assert m["instances_out"] == 12 and m["quality_after"]["part_accuracy"] > m["quality_before"]["part_accuracy"]
    assert (tmp_path / "preview" / "instances.png").stat().st_size > 5000
    readme = (tmp_path / "frames" / "README.txt").read_text()  # never an empty folder (DVC warns of those)
    frames = sorted(p.name for p in (tmp_path / "frames").iterdir())
    if open_iuv(tmp_path / "iuv.zarr").attrs.get("source") == "synthetic":
        assert frames == ["README.txt"] and "synthetic" in readme
    else:
        assert len(frames) > 1 and readme.startswith(f"{(len(frames) - 1) // 2} images")


def test_full_frame_export_of_real_sources(tmp_path):
    import cv2

    from pipeline.iuv.fullframe import export_store_frames

    make_store(tmp_path / "dp.zarr", n=4)
    repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions(), 10, 1, progress=False)
    root = open_iuv(tmp_path / "iuv.zarr")
    assert export_store_frames(root, tmp_path / "frames") == 4
    iuv = cv2.imread(str(tmp_path / "frames" / "im2_IUV.png"), cv2.IMREAD_UNCHANGED)
    inds = cv2.imread(str(tmp_path / "frames" / "im2_INDS.png"), cv2.IMREAD_UNCHANGED)
    assert iuv.shape == (20 + S, 10 + S, 3) and inds.dtype == np.uint16
    crop = root["iuv"][2]
    assert np.array_equal(iuv[20:, 10:], crop)  # a box of exactly S pixels: pasted byte for byte
    assert np.array_equal(inds[20:, 10:] > 0, crop[..., 0] > 0)


def test_the_repair_workers_import_neither_torch_nor_matplotlib():
    """Each Dask worker imports pipeline.iuv.write for its task; torch and matplotlib (the stage's frames and preview,
    made in the stage's own process) added about 3 s to each worker's start: the 60-body tiny workspace's iuv stage
    took 19.7 s of CPU with them, 12.6 s without (medians of 5 runs, 2 workers)."""
    code = "import sys, pipeline.iuv.write; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
