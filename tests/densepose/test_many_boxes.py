"""Memory bounded by the work, not by the input (issue 25): the real-image sources hand their instances to the store
a batch at a time (pipeline/densepose/write.py, InstancesWriter), so thousands of boxes on one image hold a batch
of crops, not all of them; and the store's bytes do not depend on the batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from conftest import tree_bytes

from pipeline.core.config import load_params_dict
from pipeline.core.store import write_store
from pipeline.densepose import detectron2 as d2
from pipeline.densepose import precomputed
from pipeline.densepose.store import SCHEMA, densepose_specs
from pipeline.densepose.write import ImageInstances, InstancesWriter

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = SimpleNamespace(hash="abc", source="anny", topology="t", embedding=np.zeros((30, 16), np.float32))


def _batch(rng, name, k, crop, rgb=True):
    return ImageInstances(name, rng.uniform(0, 50, (k, 4)).astype(np.float32), rng.uniform(0, 1, k).astype(np.float32),
                          labels=rng.integers(0, 25, (k, crop, crop), dtype=np.uint8),
                          uv=rng.uniform(0, 1, (k, 2, crop, crop)).astype(np.float32), size=(60, 80),
                          rgb=rng.integers(0, 256, (k, crop, crop, 3), dtype=np.uint8) if rgb else None)


@pytest.mark.parametrize("sizes, photo", [([3, 0, 2], True), ([200, 56], True), ([255, 0, 1, 40], True),
                                          ([300, 7], False), ([1500, 700], True)])
def test_a_streamed_store_is_the_store_of_every_row_at_once(tmp_path, sizes, photo):
    """Images of ``sizes`` instances, in batches of 7 (the chunk is decided at 256 rows, the store grows past its
    first capacity and past a shard of 2,048), an unreadable image, a test image; without ``photo`` the last image
    has no photo crops, so the store has none (dropped after it was created): the bytes of the rows written at once
    as write_instances_store wrote them before it streamed."""
    rng, crop = np.random.default_rng(0), 4
    images = [[_batch(rng, f"im{i}.jpg", min(7, k - s), crop, rgb=photo or i < len(sizes) - 1)
               for s in range(0, k, 7)] for i, k in enumerate(sizes)]
    with InstancesWriter(tmp_path / "streamed.zarr", crop=crop, source="precomputed", template_hash="abc",
                         params={"k": 1}, test_names={"im1.jpg"}) as w:
        w.skip("broken.jpg")
        for i, batches in enumerate(images):
            w.image(f"im{i}.jpg", (60, 80))
            for b in batches:
                w.add(b)
        summary = w.finish({"clipped_boxes": 2})
    rows = [b for batches in images for b in batches]
    image = np.concatenate([np.full(len(b), i, np.int32) for i, batches in enumerate(images) for b in batches])
    arrays = {"box": np.concatenate([b.boxes for b in rows]), "score": np.concatenate([b.scores for b in rows]),
              "image": image, "split": (image == 1).astype(np.uint8),
              "labels": np.concatenate([b.labels for b in rows]),
              "uv": np.concatenate([b.uv for b in rows]).astype(np.float16)}
    if photo:
        arrays["rgb"] = np.concatenate([b.rgb for b in rows])
    attrs = {"schema": SCHEMA, "source": "precomputed", "crop": crop, "kinds": ["chart"],
             "images": [f"im{i}.jpg" for i in range(len(sizes))], "skipped_images": ["broken.jpg"],
             "template_hash": "abc", "image_sizes": [[60, 80]] * len(sizes), "params": {"k": 1}}
    assert set(arrays) - {"rgb"} == set(densepose_specs(crop))
    write_store(tmp_path / "at_once.zarr", arrays, attrs)
    a, b = tree_bytes(tmp_path / "streamed.zarr"), tree_bytes(tmp_path / "at_once.zarr")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert summary.metrics() == {"source": "precomputed", "instances": sum(sizes), "train": sum(sizes) - sizes[1],
                                 "test": sizes[1], "skipped_empty_boxes": 0, "skipped_boxes_outside_image": 0,
                                 "clipped_boxes": 2, "images": len(sizes), "images_skipped": 1,
                                 "images_without_instances": sizes.count(0)}


def test_a_writer_left_on_an_error_writes_nothing(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="mixes chart and CSE output"):
        with InstancesWriter(tmp_path / "dp.zarr", crop=4, source="precomputed", template_hash="abc", params={}) as w:
            w.image("a.jpg")
            w.add(_batch(rng, "a.jpg", 300, 4))
            w.image("b.jpg")
            w.add(ImageInstances("b.jpg", np.zeros((1, 4), np.float32), np.ones(1, np.float32),
                                 embedding=np.zeros((1, 3, 4, 4), np.float32), mask=np.ones((1, 4, 4), bool)))
    assert not (tmp_path / "dp.zarr").exists() and not list(tmp_path.iterdir())


def _iuv_inputs(folder: Path, n: int) -> None:
    """One 120 x 160 IUV PNG with its photo and index map, and ``n`` boxes (some clipped, some empty)."""
    rng = np.random.default_rng(1)
    H, W = 120, 160
    iuv = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    iuv[..., 0] = rng.integers(0, 25, (H, W))
    x0, y0 = rng.uniform(0, W - 2, n), rng.uniform(0, H - 2, n)
    boxes = np.round(np.stack([x0, y0, x0 + rng.uniform(0, 60, n), y0 + rng.uniform(0, 90, n)], 1), 1)
    inds = np.zeros((H, W), np.uint8)
    for k, (a, b, c, d) in enumerate(boxes.astype(int)):
        inds[min((b + d) // 2, H - 1), min((a + c) // 2, W - 1)] = k + 1
    assert cv2.imwrite(str(folder / "a_IUV.png"), iuv) and cv2.imwrite(str(folder / "a_INDS.png"), inds)
    assert cv2.imwrite(str(folder / "a.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    entry = {"file_name": "a.png", "iuv": "a_IUV.png", "inds": "a_INDS.png", "boxes": boxes.tolist(),
             "scores": np.round(rng.uniform(0, 1, n), 3).tolist(), "inds_values": list(range(1, n + 1))}
    empty = {"file_name": "b.png", "iuv": "b_IUV.png", "boxes": []}  # an image without boxes
    (folder / "boxes.json").write_text(json.dumps({"images": [entry, empty]}))
    assert cv2.imwrite(str(folder / "b_IUV.png"), iuv)


def test_the_boxes_per_batch_do_not_change_what_the_sources_write(tmp_path, monkeypatch):
    """precomputed (iuv_png with photo crops and index map) and detectron2 (a stand-in model): batches of 3 boxes
    write the bytes of one batch an image."""
    _iuv_inputs(tmp_path, 40)
    params = load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(tmp_path), "max_instances": 30,
                                               "boxes_json": str(tmp_path / "boxes.json")}}).precomputed
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(folder / f"p{i}.png"), np.full((60, 40, 3), 9 * i, np.uint8))
    d2_params = load_params_dict({"detectron2": {"images": str(folder), "config": "-", "weights": "-",
                                                 "batch_size": 2, "score_threshold": 0.3}}).detectron2
    monkeypatch.setattr(d2, "check_detectron2_inputs", lambda *a, **k: None)
    monkeypatch.setattr(d2, "build_predictor", lambda *a, **k: _Detections(9))
    calls = {}
    for module in (precomputed, d2):  # count the batches each makes
        def counted(*a, crops=module._crops, name=module.__name__, **k):
            calls[name] = calls.get(name, 0) + 1
            return crops(*a, **k)
        monkeypatch.setattr(module, "_crops", counted)
    made = {}
    for batch in (100, 3):
        monkeypatch.setattr(precomputed, "BOXES_PER_BATCH", batch)
        monkeypatch.setattr(d2, "BOXES_PER_BATCH", batch)
        precomputed.write_precomputed_store(params, 8, TEMPLATE, tmp_path / f"iuv{batch}.zarr")
        d2.write_detectron2_store(d2_params, 8, "cpu", TEMPLATE, tmp_path / f"d2_{batch}.zarr")
        made[batch], calls = calls, {}
    assert made[100] == {precomputed.__name__: 1, d2.__name__: 3}  # one batch an image with instances
    assert made[3][precomputed.__name__] == 10 and made[3][d2.__name__] > 6
    for name in ("iuv", "d2_"):
        a, b = tree_bytes(tmp_path / f"{name}100.zarr"), tree_bytes(tmp_path / f"{name}3.zarr")
        assert "labels/zarr.json" in a and a.keys() == b.keys() and all(a[k] == b[k] for k in a), name


class _Detections:
    """A stand-in model: ``n`` people in every image, random heatmaps."""

    is_cse = False

    def __init__(self, n):
        self.n = n

    def __call__(self, images):
        gen = torch.Generator().manual_seed(0)
        out = []
        for _ in images:
            xy = torch.rand(self.n, 2, generator=gen) * 30
            chart = (torch.randn(self.n, 25, 112, 112, generator=gen), torch.randn(self.n, 2, 112, 112, generator=gen),
                     torch.rand(self.n, 25, 112, 112, generator=gen), torch.rand(self.n, 25, 112, 112, generator=gen))
            out.append(d2.Detections(torch.cat([xy, xy + 12], 1), torch.linspace(0.9, 0.2, self.n), chart=chart))
        return out


@pytest.mark.parametrize("source, boxes, bound_mb", [("iuv_png", 2500, 300), ("network", 600, 1200)])
def test_many_boxes_on_one_image_hold_a_batch_not_every_box(source, boxes, bound_mb):
    """benchmarks/bench_many_boxes.py, small: boxes of 100 x 200 pixels on one 640 x 480 image, crop 32, through
    the precomputed (iuv_png) and network sources in a fresh process. Before they streamed, they held every box's
    chart result (16 bytes a pixel) and every crop of the image (iuv_png: 880 MB for these 2,500 boxes), the network
    source the 112 x 112 heatmaps of every box (7.4 MB a box: 4.4 GB for 600); now a batch of crops and a shard of
    the store (iuv_png ~100 MB), the network one forward pass of 64 boxes (~550 MB)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_many_boxes.py"), "--boxes", str(boxes), "--sources",
           source, "--image", "640", "480", "--box-size", "100", "100", "--crop", "32", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["instances"] == boxes and result["source_mb"] < bound_mb, result
