"""reports/index.html's data (pipeline/evaluate/page.py, pipeline/evaluate/inputs.py): packing, crop coordinates,
what the page holds, and the evaluate stage writing it with its crops. The page in a browser:
test_page_browser.py."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from page_fixture import CROP, fake_iuv, fake_instances, fake_page_inputs

from pipeline.core.config import EvalParams
from pipeline.core.errors import InputError
from pipeline.core.store import StoreError, write_store
from pipeline.evaluate.inputs import DENSEPOSE_SCHEMA, IUV_SCHEMA, _iuv_image, store_rows, to_crop
from pipeline.evaluate.loop import evaluate
from pipeline.evaluate.page import (CAMERA_FRAME, PAGE_INSTANCES, error_scale_mm, pack, page_data, page_html,
                                    png_data_uri, read_page_data, unpack)
from pipeline.evaluate.reports import segment_colours
from pipeline.keypoints.store import SCHEMA as KEYPOINTS_SCHEMA


@pytest.mark.parametrize("dtype", ["float32", "uint32", "uint8"])
def test_pack_round_trips_every_dtype_and_shape(dtype):
    rng = np.random.default_rng(1)
    for shape in [(0,), (5,), (4, 3), (2, 3, 2)]:
        a = (rng.normal(size=shape) * 1000 if dtype == "float32" else rng.integers(0, 250, shape)).astype(dtype)
        packed = pack(a, dtype)
        assert packed["dtype"] == dtype and packed["shape"] == list(shape)
        assert len(base64.b64decode(packed["data"])) == a.nbytes  # no header: the viewer reads the bytes as they are
        back = unpack(packed)
        assert back.dtype == np.dtype(dtype) and back.shape == shape
        np.testing.assert_array_equal(back, a)
    big = np.array([2 ** 32 - 1, 0, 70000], np.int64)
    np.testing.assert_array_equal(unpack(pack(big, "uint32")), big)
    assert base64.b64decode(pack(np.array([1.0]), "float32")["data"]) == np.float32(1.0).tobytes()  # little-endian
    with pytest.raises(InputError, match="float64"):
        pack(np.zeros(2), "float64")


def test_crop_coordinates_put_pixel_centres_at_half_pixels():
    """Crop pixel (r, c) has image centre (x0 + (c + 0.5) w / S, y0 + (r + 0.5) h / S) (densepose.zarr's layout)."""
    box = np.array([[10.0, 20.0, 66.0, 132.0], [-5.0, 0.0, 5.0, 10.0]])
    c = np.arange(CROP)
    cr = np.stack([c, c[::-1]], -1)[None]  # (1, S, 2) crop pixels (column, row)
    size = box[:, 2:] - box[:, :2]
    centres = box[:, None, :2] + (cr + 0.5) * size[:, None] / CROP  # (2, S, 2) image pixels
    np.testing.assert_allclose(to_crop(centres, box, CROP), np.broadcast_to(cr + 0.5, centres.shape), atol=1e-9)
    np.testing.assert_allclose(to_crop(box.reshape(2, 2, 2), box, CROP), [[[0, 0], [CROP, CROP]]] * 2)
    with pytest.raises(InputError):
        to_crop(np.zeros((2, 3, 3)), box, CROP)


def test_store_rows_finds_source_rows_and_marks_the_missing():
    np.testing.assert_array_equal(store_rows([3, 5, 9, 12], [9, 3, 4, 12, 13]), [2, 0, -1, 3, -1])
    np.testing.assert_array_equal(store_rows([7, 2, 5], [5, 2, 7]), [2, 1, 0])  # any order
    np.testing.assert_array_equal(store_rows([], [1, 2]), [-1, -1])


def test_png_data_uri_decodes_to_the_image():
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    uri = png_data_uri(img)
    assert uri.startswith("data:image/png;base64,") and png_data_uri(None) is None
    back = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(back, img)


def test_page_holds_the_instances_and_decodes_to_its_inputs(template):
    kept, inputs, seg, a = fake_page_inputs(template, 3)
    page = page_html(page_data(template, seg, kept, inputs, {"mpjpe_mm": 51.234, "s2s_mm": None, "split": "test"}))
    assert page.startswith("<!DOCTYPE html>") and "<script src" not in page and "http" not in page  # offline
    data = read_page_data(page)
    n, f = len(template.vertices), len(template.faces)
    np.testing.assert_array_equal(unpack(data["faces"]), template.faces)
    assert unpack(data["faces"]).shape == (f, 3)
    np.testing.assert_array_equal(unpack(data["template"]["vertices"]), template.vertices)
    np.testing.assert_array_equal(unpack(data["parts"]["vertex"]), seg.argmax(1))
    assert len(data["parts"]["colours"]) == 5 and data["parts"]["colours"][0] == "#%02x%02x%02x" % tuple(
        np.round(255 * segment_colours(5)[0]).astype(int))
    assert data["summary"] == [["split", "test"], ["MPJPE", "51.2 mm"]]  # null metrics left out
    assert data["breakdown"] == []  # no breakdown in the metrics: no table
    assert data["ground_truth"] and data["units"] == "mm" and data["frame"] == CAMERA_FRAME and data["crop"] == CROP
    assert len(data["instances"]) == 3
    for i, inst in enumerate(data["instances"]):
        assert inst["row"] == kept.rows[i] and inst["note"] == kept.error[i] and inst["box"] == a["box"][i].tolist()
        for key, want in (("pred", kept.pred[i]), ("true", kept.true[i])):
            got = unpack(inst[key])
            assert got.shape == (n, 3) and got.dtype == np.float32
            np.testing.assert_array_equal(got, np.float32(want))
        v = kept.visible[i]
        assert unpack(inst["keypoints"]).shape == (v.sum(), 2)
        np.testing.assert_allclose(unpack(inst["keypoints"]), to_crop(kept.xy[i][v][None], a["box"][i:i + 1], CROP)[0],
                                   rtol=1e-6)
        np.testing.assert_allclose(unpack(inst["overlay"]), to_crop(a["pixels"][i:i + 1], a["box"][i:i + 1], CROP)[0],
                                   rtol=1e-6)
        np.testing.assert_allclose(unpack(inst["true_overlay"]),
                                   to_crop(a["true_pixels"][i:i + 1], a["box"][i:i + 1], CROP)[0], rtol=1e-6)
        assert inst["iuv"].startswith("data:image/png;base64,") and inst["rgb"] is None
    # the true vertices project inside the box, so into the crop
    assert (unpack(data["instances"][0]["true_overlay"]) > 0).all() and \
        (unpack(data["instances"][0]["true_overlay"]) < CROP).all()
    errors = 1000 * np.linalg.norm(np.stack(kept.pred) - np.stack(kept.true), axis=-1)
    assert data["error_max_mm"] == error_scale_mm(kept.pred, kept.true) and data["error_max_mm"] % 10 == 0
    assert np.percentile(errors, 90) <= data["error_max_mm"] < np.percentile(errors, 90) + 10


def test_page_shows_the_error_by_pose_mode_and_visible_share(template):
    kept, inputs, seg, _ = fake_page_inputs(template, 2)
    empty = {"instances": 0, "mpjpe_mm": None, "flat_mpjpe_mm": None, "ratio": None}
    metrics = {"mpjpe_mm": 150.0,
               "by_pose_mode": {"walk": {"instances": 3, "mpjpe_mm": 120.04, "flat_mpjpe_mm": 180.0, "ratio": 0.6669},
                                "sit": empty},
               "by_visible_share": {"vis00-30": empty, "vis70-100": {"instances": 1, "mpjpe_mm": 90.0,
                                                                     "flat_mpjpe_mm": 100.0, "ratio": 0.9}}}
    data = read_page_data(page_html(page_data(template, seg, kept, inputs, metrics)))
    columns = ["instances", "MPJPE", "flat reference", "MPJPE / flat"]
    assert data["breakdown"] == [
        {"title": "MPJPE by pose mode", "columns": ["pose mode", *columns],
         "rows": [["walk", "3", "120.0 mm", "180.0 mm", "0.67"], ["sit", "0", "–", "–", "–"]]},
        {"title": "MPJPE by the share of the template the keypoints show",
         "columns": ["visible share", *columns],
         "rows": [["0–30 %", "0", "–", "–", "–"], ["70–100 %", "1", "90.0 mm", "100.0 mm", "0.90"]]}]
    del metrics["by_pose_mode"]  # a store without pose modes: the visible share alone
    assert [t["title"] for t in page_data(template, seg, kept, inputs, metrics)["breakdown"]] == \
        ["MPJPE by the share of the template the keypoints show"]


def test_page_shows_at_most_its_count_and_escapes_its_json(template):
    kept, inputs, seg, _ = fake_page_inputs(template, 3)
    kept.error[0] = "</script><b>"
    data = page_data(template, seg, kept, inputs, count=2)
    assert len(data["instances"]) == 2 and PAGE_INSTANCES == 8
    page = page_html(data)
    assert page.count("</script>") == 2  # the data's and the viewer's: the note's is escaped
    assert read_page_data(page)["instances"][0]["note"] == "</script><b>"


def test_page_without_ground_truth_or_box_or_segmentation(template):
    kept, inputs, seg, a = fake_page_inputs(template, 2, ground_truth=False, crops=False)
    data = read_page_data(page_html(page_data(template, None, kept, inputs._replace(box=None, notes=["x"]))))
    assert not data["ground_truth"] and data["units"] == "px" and data["parts"] is None
    assert data["notes"][0] == "x" and "no ground truth" in data["notes"][1]
    inst = data["instances"][0]
    assert inst["true"] is None and inst["overlay"] is None and inst["keypoints"] is None and inst["iuv"] is None
    np.testing.assert_allclose(unpack(inst["pred"])[:, :2], a["pixels"][0], rtol=1e-6)  # image-frame pixels


def _stores(tmp_path, template, n: int = 6) -> tuple[dict, dict]:
    """keypoints.zarr (test rows 1, 3, 4, 5; densepose rows 10 + 2 i), iuv.zarr (without densepose row 16, the
    keypoints' row 3) and densepose.zarr with RGB crops; returns the paths and :func:`fake_instances`'s arrays."""
    a = fake_instances(template, n)
    split = np.array([0, 1, 0, 1, 1, 1], np.uint8)
    source = (10 + 2 * np.arange(n)).astype(np.int32)
    attrs = {"template_hash": template.hash, "projection": "orthographic", "crop": CROP}
    xy = np.where(a["visible"][..., None], a["true_pixels"], 0).astype(np.float32)
    write_store(tmp_path / "keypoints.zarr", {
        "xy": xy, "visible": a["visible"], "count": a["visible"].astype(np.uint16),
        "confidence": a["visible"].astype(np.float16), "split": split, "box": a["box"],
        "source_index": source, "gt/vertices": a["true"].astype(np.float32), "gt/visible": a["visible"],
        "gt/camera": np.c_[a["f"], a["c"]].astype(np.float32), "gt/pixels": a["true_pixels"].astype(np.float32),
        "gt/mode": np.array([0, 2, 0, 2, 2, 1], np.int8)},
        {**attrs, "schema": KEYPOINTS_SCHEMA, "pose_modes": ["walk", "reach", "sit", "bend"]}, chunk=4)
    iuv = fake_iuv(template, a["true_pixels"], a["box"])
    keep = source != 16
    write_store(tmp_path / "iuv.zarr", {"iuv": iuv[keep], "source_index": source[keep], "box": a["box"][keep]},
                {**attrs, "schema": IUV_SCHEMA}, chunk=4)
    rgb = np.zeros((30, CROP, CROP, 3), np.uint8)
    rgb[source] = np.arange(n, dtype=np.uint8)[:, None, None, None] * 40 + 1  # one grey per instance
    write_store(tmp_path / "densepose.zarr", {"rgb": rgb}, {**attrs, "schema": DENSEPOSE_SCHEMA}, chunk=8)
    paths = {k: tmp_path / f"{k}.zarr" for k in ("keypoints", "iuv", "densepose")}
    return paths, dict(a, iuv=iuv, rgb=rgb, source=source, split=split)


def test_evaluate_writes_the_page_with_its_crops(template, tmp_path):
    paths, a = _stores(tmp_path, template)

    def model(xy, visible, rows):  # the bent prediction in the image frame
        return np.concatenate([a["pixels"][rows], a["f"][rows, None, None] * a["pred"][rows][..., 2:]], axis=-1)

    cfg = EvalParams(batch_size=3, grid=0, meshes=0, uv_maps=0, s2s_instances=0)
    result = evaluate(paths["keypoints"], template, model, a["segmentation"], cfg, tmp_path / "reports",
                      progress=False, iuv=paths["iuv"], densepose=paths["densepose"])
    data = read_page_data((tmp_path / "reports" / "index.html").read_text())
    test = np.flatnonzero(a["split"] == 1)
    assert result.metrics["test_instances"] == 4 and [i["row"] for i in data["instances"]] == test.tolist()
    assert data["summary"][0] == ["instances", "4"] and data["notes"] == [
        f"{paths['iuv']}: no IUV crop for 1 of the 4 instances"]
    # where it fails: test rows 1, 3, 4, 5 are sit, sit, sit, reach
    modes, shares = data["breakdown"]
    assert [r[:2] for r in modes["rows"]] == [["walk", "0"], ["reach", "1"], ["sit", "3"], ["bend", "0"]]
    assert modes["rows"][1][2] == f"{result.metrics['by_pose_mode']['reach']['mpjpe_mm']:.1f} mm"
    assert sum(int(r[1]) for r in shares["rows"]) == 4 and shares["columns"][0] == "visible share"
    for inst, row in zip(data["instances"], test):
        np.testing.assert_allclose(unpack(inst["pred"]), _centred(a["pred"][row]), atol=2e-6)
        np.testing.assert_allclose(unpack(inst["overlay"]), to_crop(a["pixels"][row:row + 1], a["box"][row:row + 1],
                                                                    CROP)[0], atol=1e-4)
        rgb = _decode(inst["rgb"])
        assert (rgb == row * 40 + 1).all()  # the densepose row of the keypoints row
        if row == 3:
            assert inst["iuv"] is None
        else:
            np.testing.assert_array_equal(_decode(inst["iuv"]), _iuv_image(a["iuv"][row]))
    with pytest.raises(StoreError, match="schema"):
        evaluate(paths["keypoints"], template, model, None, cfg, tmp_path / "r2", progress=False,
                 iuv=paths["densepose"])


def _centred(points: np.ndarray) -> np.ndarray:
    return points - [0.0, 0.0, points[:, 2].mean()]


def _decode(uri: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
