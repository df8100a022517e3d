"""Validation at the door (pipeline/densepose/door.py's policy table): every bad-input class of every densepose
source, each with its exact behaviour -- an error naming the file, the image and the instance, or a
skip / clip counted in the summary (metrics/densepose.json) with the store written without it."""

from __future__ import annotations

import io
import json
import os
import pickle
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from dump_fixture import chart_at_box, fake_densepose_modules, save_dump

from pipeline.core.config import load_params_dict
from pipeline.core.dump_unpickler import UnsafeDumpError, load_dump
from pipeline.core.errors import InputError, UserError
from pipeline.core.pickles import read_pickle
from pipeline.densepose import detectron2 as d2, door
from pipeline.densepose.convert import chart_output_to_crops, chart_result_to_crop, cse_output_to_crops
from pipeline.densepose.precomputed import check_precomputed_inputs, read_dump, read_iuv_folder, write_precomputed_store
from pipeline.densepose.store import open_densepose

NAN, INF = float("nan"), float("inf")
ZERO = {"skipped_empty_boxes": 0, "skipped_boxes_outside_image": 0, "clipped_boxes": 0}
TEMPLATE = SimpleNamespace(hash="abc", source="anny", topology="t", embedding=np.zeros((30, 16), np.float32))
CSE_TEMPLATE = SimpleNamespace(hash="abc", source="cse", topology="smpl_27554",
                               embedding=np.zeros((30, 16), np.float32))


# --- the precomputed dump ---------------------------------------------------------------------------

def _dump(tmp_path, boxes, scores=None, name="a.jpg", results=None, writer="torch", seed=0):
    """A one-image chart dump of ``boxes`` (results at each box's integer size unless given)."""
    gen = torch.Generator().manual_seed(seed)
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.full((len(boxes),), 0.9) if scores is None else torch.as_tensor(scores, dtype=torch.float32)
    with fake_densepose_modules() as dp:
        safe = torch.nan_to_num(boxes, nan=0.0, posinf=10.0, neginf=0.0)
        res = [chart_at_box(dp, b, gen) for b in safe] if results is None else [dp.chart(*r) for r in results]
        entry = {"file_name": name, "scores": scores, "pred_boxes_XYXY": boxes, "pred_densepose": res}
        return save_dump([entry], tmp_path / "results.pkl", writer), res


def _params(dump, **kw):
    return load_params_dict({"precomputed": {"dump": str(dump), **kw}}).precomputed


def _image(tmp_path, h=150, w=200, name="a.jpg"):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    assert cv2.imwrite(str(tmp_path / "imgs" / name), np.zeros((h, w, 3), np.uint8))
    return tmp_path / "imgs"


def _refused(tmp_path, exc, match, fn, *args):
    """``fn(*args)`` raises ``exc`` whose message names the dump file and matches ``match``."""
    with pytest.raises(exc, match=match) as err:
        fn(*args)
    assert str(tmp_path / "results.pkl") in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_dump_non_finite_box_is_an_error_naming_file_image_instance(tmp_path, bad):
    path, _ = _dump(tmp_path, [[10, 10, 50, 80], [bad, 0, 10, 10]])
    _refused(tmp_path, InputError, r"image 'a.jpg' \(entry 0\), instance 1: box \[.*\] is not finite",
             write_precomputed_store, _params(path), 16, TEMPLATE, tmp_path / "dp.zarr")
    assert not (tmp_path / "dp.zarr").exists()


def test_dump_nan_score_is_an_error_not_a_silent_drop(tmp_path):
    path, _ = _dump(tmp_path, [[10, 10, 50, 80], [0, 0, 10, 10]], [0.9, NAN])
    _refused(tmp_path, InputError, r"'a.jpg'.*instance 1: score nan is not finite", read_dump, path)


@pytest.mark.parametrize("score", [1.5, -0.1])
def test_dump_score_outside_unit_interval_is_an_error(tmp_path, score):
    path, _ = _dump(tmp_path, [[10, 10, 50, 80], [0, 0, 10, 10]], [0.9, score])
    _refused(tmp_path, InputError, r"instance 1: score .* is outside \[0, 1\]", read_dump, path)


def test_dump_boxes_of_wrong_shape_are_an_error(tmp_path):
    with fake_densepose_modules():
        save_dump([{"file_name": "a.jpg", "scores": torch.ones(2), "pred_boxes_XYXY": torch.zeros(2, 3),
                    "pred_densepose": []}], tmp_path / "results.pkl")
    _refused(tmp_path, InputError, r"'a.jpg'.*boxes of shape \(2, 3\)", read_dump, tmp_path / "results.pkl")


def test_dump_empty_box_is_skipped_and_counted(tmp_path, caplog):
    path, res = _dump(tmp_path, [[10, 10, 50, 80], [5, 5, 5, 30], [30, 40, 20, 60]])
    summary = write_precomputed_store(_params(path), 16, TEMPLATE, tmp_path / "dp.zarr")
    assert summary.metrics()["instances"] == 1 and summary.metrics()["skipped_empty_boxes"] == 2
    assert {k: summary.metrics()[k] for k in ZERO} == {**ZERO, "skipped_empty_boxes": 2}
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="chart")
    assert root["box"][:].tolist() == [[10, 10, 50, 80]]
    assert np.array_equal(root["labels"][0], chart_result_to_crop(res[0].labels, res[0].uv, 16)[0].numpy())
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("results.pkl: image 'a.jpg' (entry 0), instance 1: empty box" in m for m in warned)


def test_dump_box_outside_a_known_image_is_skipped_and_counted(tmp_path, caplog):
    """The reporter's case: a box at x = 1000..1079 in a 200 x 150 image."""
    path, _ = _dump(tmp_path, [[1000, 10, 1079, 80], [10, 10, 50, 80], [20, 200, 60, 260]])
    summary = write_precomputed_store(_params(path, image_root=str(_image(tmp_path))), 16, TEMPLATE,
                                      tmp_path / "dp.zarr")
    assert {k: summary.metrics()[k] for k in ZERO} == {**ZERO, "skipped_boxes_outside_image": 2}
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="chart")
    assert root["box"][:].tolist() == [[10, 10, 50, 80]] and root.attrs["image_sizes"] == [[150, 200]]
    assert any("instance 0: box [1000.0, 10.0, 1079.0, 80.0] lies entirely outside the 200x150 image" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")


def test_dump_box_outside_an_unknown_image_is_kept(tmp_path):
    path, _ = _dump(tmp_path, [[1000, 10, 1079, 80]])
    summary = write_precomputed_store(_params(path), 16, TEMPLATE, tmp_path / "dp.zarr")
    assert summary.metrics()["instances"] == 1 and {k: summary.metrics()[k] for k in ZERO} == ZERO


def test_dump_box_partly_outside_is_clipped_and_its_crop_covers_the_clipped_box(tmp_path):
    boxes = [[190.0, 100.0, 260.0, 170.0], [-20.5, -10.2, 30.0, 40.0], [10, 10, 50, 80]]
    path, res = _dump(tmp_path, boxes, [0.9, 0.8, 0.7])
    summary = write_precomputed_store(_params(path, image_root=str(_image(tmp_path))), 16, TEMPLATE,
                                      tmp_path / "dp.zarr")
    assert {k: summary.metrics()[k] for k in ZERO} == {**ZERO, "clipped_boxes": 2}
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="chart")
    assert root["box"][:].tolist() == [[190, 100, 200, 150], [0, 0, 30, 40], [10, 10, 50, 80]]
    # int boxes (190, 100, 70, 70) -> (190, 100, 10, 50) and (-20, -10, 50, 50) -> (0, 0, 30, 40)
    cuts = [(slice(0, 50), slice(0, 10)), (slice(10, 50), slice(20, 50)), (slice(None), slice(None))]
    for i, (rows, cols) in enumerate(cuts):
        lab, uv = chart_result_to_crop(res[i].labels[rows, cols], res[i].uv[:, rows, cols], 16)
        assert np.array_equal(root["labels"][i], lab.numpy())
        np.testing.assert_allclose(root["uv"][i].astype(np.float32), uv.numpy(), atol=1e-3)


def test_too_many_skips_are_summarised_not_logged_one_by_one(tmp_path, caplog):
    path, _ = _dump(tmp_path, [[10, 10, 50, 80]] + [[5, 5, 5, 6]] * 14)
    summary = write_precomputed_store(_params(path), 8, TEMPLATE, tmp_path / "dp.zarr")
    assert summary.metrics()["skipped_empty_boxes"] == 14
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum(": empty box [" in m for m in warned) == door.MAX_LOGGED
    assert any("14 empty boxes skipped in all (4 more than logged above)" in m for m in warned)


def _bad_result(box, labels=None, uv=None):
    """(labels, uv) at ``box``'s integer size, one of them replaced."""
    h, w = int(box[3] - box[1]), int(box[2] - box[0])
    lab = torch.ones(h, w, dtype=torch.long) if labels is None else labels(h, w)
    return lab, torch.full((2, h, w), 0.5) if uv is None else uv(h, w)


@pytest.mark.parametrize("labels,uv,match", [
    (lambda h, w: torch.full((h, w), 30), None, r"chart labels range over 30\.\.30: expected part indices 0\.\.24"),
    (lambda h, w: torch.full((h, w), -1), None, r"chart labels range over -1\.\.-1"),
    (lambda h, w: torch.ones(h, w), None, r"chart labels of shape .* and dtype torch.float32: expected \(h, w\) "
                                          "integer"),
    (None, lambda h, w: torch.full((2, h, w), NAN), "chart uv holds .* NaN or infinite values"),
    (None, lambda h, w: torch.full((2, h, w), 200.0), r"chart uv ranges over 200\.\.200: .*divide by the scale"),
    (None, lambda h, w: torch.full((3, h, w), 0.5), r"chart uv of shape \(3, 70, 40\)"),
    (None, lambda h, w: torch.full((2, h, w), 128, dtype=torch.uint8), "chart uv .* dtype torch.uint8"),
    (lambda h, w: torch.ones(h + 5, w, dtype=torch.long), lambda h, w: torch.zeros(2, h + 5, w),
     "the chart result is 75x40 pixels but its box .* is 70x40"),
])
def test_dump_chart_arrays_outside_their_documented_form_are_errors(tmp_path, labels, uv, match):
    box = [10.0, 10.0, 50.0, 80.0]
    results = [_bad_result([0, 0, 10, 10]), _bad_result(box, labels, uv)]
    path, _ = _dump(tmp_path, [[0, 0, 10, 10], box], results=results)
    _refused(tmp_path, InputError, r"image 'a.jpg' \(entry 0\), instance 1: " + match, read_dump, path)


def test_dump_uv_overshoot_within_tolerance_is_kept(tmp_path):
    box = [10.0, 10.0, 50.0, 80.0]
    path, _ = _dump(tmp_path, [box], results=[_bad_result(box, uv=lambda h, w: torch.full((2, h, w), 1.05))])
    (im,) = read_dump(path)
    assert float(im.chart[0][1].max()) == pytest.approx(1.05)


def test_dump_result_one_pixel_off_its_box_is_accepted(tmp_path):
    """float32 arithmetic may make apply_net's integer size differ from ours by a pixel."""
    box = [10.0, 10.0, 50.0, 80.0]
    path, _ = _dump(tmp_path, [box], results=[(torch.ones(71, 39, dtype=torch.long), torch.zeros(2, 71, 39))])
    assert read_dump(path)[0].chart[0][0].shape == (71, 39)


def test_dump_non_numeric_array_is_an_error(tmp_path):
    with fake_densepose_modules():
        save_dump([{"file_name": "a.jpg", "scores": np.array(["high"]), "pred_boxes_XYXY": np.zeros((1, 4), np.float32),
                    "pred_densepose": []}], tmp_path / "results.pkl", "pickle")
    _refused(tmp_path, InputError, "'a.jpg'.*expected a tensor or numeric numpy array, got a numpy array of dtype <U4",
             read_dump, tmp_path / "results.pkl")


def _cse_dump(tmp_path, k=2, embedding=None, coarse=None, boxes=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(k, 16, 112, 112, generator=gen) if embedding is None else embedding
    c = torch.randn(k, 2, 112, 112, generator=gen) if coarse is None else coarse
    boxes = torch.tensor([[0.0, 0, 50, 100], [10, 10, 30, 20]][:k]) if boxes is None else torch.tensor(boxes)
    with fake_densepose_modules() as dp:
        save_dump([{"file_name": "c.png", "scores": torch.full((k,), 0.9), "pred_boxes_XYXY": boxes,
                    "pred_densepose": dp.cse(embedding=e, coarse_segm=c)}], tmp_path / "results.pkl")
    return tmp_path / "results.pkl", e, c


def test_dump_cse_nan_embedding_is_an_error(tmp_path):
    e = torch.zeros(2, 16, 112, 112)
    e[1, 3, 5, 7] = NAN
    path, _, _ = _cse_dump(tmp_path, embedding=e)
    _refused(tmp_path, InputError, r"'c.png'.*instance 1: the CSE output .* holds NaN or infinite values", read_dump,
             path)


def test_dump_cse_arrays_of_wrong_shape_are_an_error(tmp_path):
    path, _, _ = _cse_dump(tmp_path, coarse=torch.zeros(2, 1, 112, 112))
    _refused(tmp_path, InputError, r"'c.png'.*coarse_segm \(2, 1, 112, 112\).*c >= 2", read_dump, path)
    path, _, _ = _cse_dump(tmp_path, embedding=torch.zeros(3, 16, 112, 112))
    _refused(tmp_path, InputError, r"CSE embedding \(3, 16, 112, 112\).* for 2 boxes", read_dump, path)


def test_dump_cse_box_partly_outside_is_clipped_and_resampled_over_its_window(tmp_path):
    path, e, c = _cse_dump(tmp_path, boxes=[[150.0, 50.0, 250.0, 250.0], [10, 10, 30, 20]])
    summary = write_precomputed_store(_params(path, image_root=str(_image(tmp_path, name="c.png"))), 8,
                                      CSE_TEMPLATE, tmp_path / "dp.zarr")
    assert summary.metrics()["clipped_boxes"] == 1
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="cse")
    assert root["box"][:].tolist() == [[150, 50, 200, 150], [10, 10, 30, 20]]
    window = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]])
    ref = cse_output_to_crops(e, c, 8, window=window)
    np.testing.assert_allclose(root["embedding"][:].astype(np.float32), ref.embedding.numpy(), atol=1e-2, rtol=1e-3)
    assert np.array_equal(root["mask"][:], ref.mask.numpy())


# --- the restricted loader: plain numpy pickles, refusals naming the file, truncated files ----------

def _numpy_entries(dp):
    """One image as a hand-made dump of numpy arrays (no tensor at all)."""
    boxes = np.array([[10.5, 20.2, 40.9, 80.0]], np.float32)
    lab = np.random.default_rng(0).integers(0, 25, (59, 30))
    uv = (np.random.default_rng(1).random((2, 59, 30)) * (lab > 0)).astype(np.float32)
    return [{"file_name": "a.jpg", "scores": np.array([0.95], np.float32), "pred_boxes_XYXY": boxes,
             "pred_densepose": [dp.chart(labels=lab, uv=uv)]}]


@pytest.mark.parametrize("writer", ["pickle0", "pickle2", "pickle4", "pickle5", "torch"])
def test_plain_pickle_of_numpy_arrays_is_read(tmp_path, writer):
    with fake_densepose_modules() as dp:
        entries = _numpy_entries(dp)
        save_dump(entries, tmp_path / "results.pkl", writer)
    (im,) = read_dump(tmp_path / "results.pkl")
    np.testing.assert_array_equal(im.boxes, entries[0]["pred_boxes_XYXY"])
    assert np.array_equal(im.chart[0][0].numpy(), entries[0]["pred_densepose"][0].labels)
    assert np.array_equal(im.chart[0][1].numpy(), entries[0]["pred_densepose"][0].uv)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/densepose3d_door_pwned",))


def test_payload_inside_a_numpy_object_array_is_refused(tmp_path):
    payload = np.array([_Evil()], dtype=object)
    for protocol in (2, 5):
        path = tmp_path / "results.pkl"
        path.write_bytes(pickle.dumps([{"file_name": "x.jpg", "scores": payload}], protocol=protocol))
        _refused(tmp_path, UnsafeDumpError, "system", load_dump, path)
    assert not os.path.exists("/tmp/densepose3d_door_pwned")


@pytest.mark.parametrize("module,name", [("numpy", "load"), ("numpy", "frombuffer"),
                                         ("numpy.testing", "run_module_suite"), ("numpy.lib.npyio", "load"),
                                         ("numpy.ctypeslib", "load_library"), ("numpy._core.multiarray", "set_typeDict"),
                                         ("numpy.f2py", "compile"), ("numpy.core.multiarray", "_reconstructor")])
def test_numpy_is_admitted_narrowly(tmp_path, module, name):
    """Only the names an array pickle needs: any other numpy function is refused, by both loaders."""
    path = tmp_path / "results.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x00x\x85R.")
    _refused(tmp_path, UnsafeDumpError, f"refers to {module}.{name}", load_dump, path)
    with pytest.raises(InputError, match=f"refused as an SMPL model file: refusing to load {module}.{name}"):
        read_pickle(path, "an SMPL model file")


def test_payload_nested_in_a_storage_names_the_file(tmp_path):
    """A plain pickle whose tensor storage bytes hold a malicious torch.save stream."""
    inner = io.BytesIO()
    torch.save(_Evil(), inner, _use_new_zipfile_serialization=False)

    class Nested:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps([{"file_name": "x.jpg", "scores": Nested()}], protocol=2))
    msg = _refused(tmp_path, UnsafeDumpError, "system", load_dump, path)
    assert "<bytes>" not in msg
    assert not os.path.exists("/tmp/densepose3d_door_pwned")


@pytest.mark.parametrize("writer,cut", [("torch", "half"), ("torch", "tail"), ("torch", "flip"), ("pickle", "half"),
                                        ("legacy", "half")])
def test_truncated_or_corrupt_dump_says_so_and_names_the_file(tmp_path, writer, cut):
    path, _ = _dump(tmp_path, [[10, 10, 50, 80]], writer=writer)
    raw = path.read_bytes()
    if cut == "half":
        raw = raw[: len(raw) // 2]
    elif cut == "tail":
        raw = raw[:-30]
    else:  # damage the first tensor's bytes inside an intact zip (its CRC no longer matches)
        at = raw.index(b"data/0") + 200
        raw = raw[:at] + bytes(b ^ 0xFF for b in raw[at:at + 64]) + raw[at + 64:]
    path.write_bytes(raw)
    msg = _refused(tmp_path, InputError, "truncated or corrupt", load_dump, path)
    assert "copy or write the file again" in msg


def test_truncated_array_pickle_says_so(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"v": np.zeros((100, 3))}, protocol=2)[:300])
    with pytest.raises(InputError, match=r"model.pkl: truncated or corrupt pickle, not readable as an SMPL model"):
        read_pickle(path, "an SMPL model file")


# --- the IUV PNG folder ----------------------------------------------------------------------------

def _iuv_folder(tmp_path, boxes, scores=None, iuv=None, inds=None, raw_json=None):
    H, W = 40, 50
    if iuv is None:
        iuv = np.zeros((H, W, 3), np.uint8)
        iuv[5:25, 5:20] = (3, 100, 200)
        iuv[20:35, 15:45] = (7, 10, 250)
    assert cv2.imwrite(str(tmp_path / "a_IUV.png"), iuv)
    item = {"file_name": "a.jpg", "iuv": "a_IUV.png", "boxes": boxes}
    if scores is not None:
        item["scores"] = scores
    if inds is not None:
        assert cv2.imwrite(str(tmp_path / "a_INDS.png"), inds)
        item["inds"] = "a_INDS.png"
    (tmp_path / "boxes.json").write_text(raw_json if raw_json is not None else json.dumps({"images": [item]}))
    return load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(tmp_path),
                                             "boxes_json": str(tmp_path / "boxes.json")}}).precomputed


def _iuv_refused(tmp_path, params, match):
    with pytest.raises(InputError, match=match) as err:
        write_precomputed_store(params, 8, TEMPLATE, tmp_path / "dp.zarr")
    assert str(tmp_path / "boxes.json") in str(err.value) and not (tmp_path / "dp.zarr").exists()


def test_iuv_nan_box_in_the_json_is_an_error(tmp_path):
    raw = '{"images": [{"file_name": "a.jpg", "iuv": "a_IUV.png", "boxes": [[5, 5, 20, 25], [NaN, 0, 4, 4]]}]}'
    _iuv_refused(tmp_path, _iuv_folder(tmp_path, [], raw_json=raw),
                 r"image 'a.jpg' \(images\[0\]\), instance 1: box \[nan, 0.0, 4.0, 4.0\] is not finite")


def test_iuv_score_outside_unit_interval_is_an_error(tmp_path):
    _iuv_refused(tmp_path, _iuv_folder(tmp_path, [[5, 5, 20, 25]], scores=[99]),
                 r"'a.jpg'.*instance 0: score 99.0 is outside \[0, 1\]")


@pytest.mark.parametrize("boxes", [[5, 5, 20, 25], [[5, 5, 20]]])
def test_iuv_boxes_not_a_list_of_4_numbers_is_an_error(tmp_path, boxes):
    _iuv_refused(tmp_path, _iuv_folder(tmp_path, boxes), r"'a.jpg'.*boxes of shape .*: expected \(k, 4\)")


def test_iuv_png_saved_as_rgb_is_an_error_naming_the_png(tmp_path):
    iuv = np.zeros((40, 50, 3), np.uint8)
    iuv[5:25, 5:20] = (3, 100, 200)
    params = _iuv_folder(tmp_path, [[5, 5, 20, 25]], iuv=iuv[..., ::-1].copy())
    with pytest.raises(InputError, match=r"a_IUV.png \(image 'a.jpg'.*300 pixels have a part index above 24 \(up to "
                                         r"200\).*reverse its channels"):
        write_precomputed_store(params, 8, TEMPLATE, tmp_path / "dp.zarr")


def test_iuv_empty_outside_and_partly_outside_boxes(tmp_path):
    inds = np.zeros((40, 50), np.uint8)
    inds[5:25, 5:20] = 1
    inds[20:35, 15:45] = 4                        # box 3 in the JSON: the index map keeps the input's numbering
    boxes = [[-4, 5, 20, 25], [10, 10, 10, 30], [60, 0, 90, 30], [15, 20, 1e30, 35], [1e29, 1e29, 1e30, 1e30]]
    params = _iuv_folder(tmp_path, boxes, scores=[0.9, 0.9, 0.9, 0.8, 0.9], inds=inds)
    summary = write_precomputed_store(params, 8, TEMPLATE, tmp_path / "dp.zarr")
    assert {k: summary.metrics()[k] for k in ZERO} == {"skipped_empty_boxes": 1, "skipped_boxes_outside_image": 2,
                                             "clipped_boxes": 2}  # a detector's box from x0 = -4: clipped
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="chart")
    assert root["box"][:].tolist() == [[0, 5, 20, 25], [15, 20, 50, 35]]
    assert (root["labels"][1][:, : 8 * 30 // 35] == 7).all()  # instance 3's own pixels, x in [15, 45)


# --- the detectron2 source ------------------------------------------------------------------------

class ScriptedPredictor:
    """A model whose detections per image are given: boxes (k, 4), scores (k,), heatmaps random."""

    is_cse = False

    def __init__(self, boxes, scores, nan_heatmap=None):
        self.boxes, self.scores, self.nan_heatmap = boxes, scores, nan_heatmap
        self.outputs = []

    def __call__(self, images):
        gen = torch.Generator().manual_seed(0)
        out = []
        for _ in images:
            k = len(self.boxes)
            chart = [torch.randn(k, 25, 112, 112, generator=gen), torch.randn(k, 2, 112, 112, generator=gen),
                     torch.rand(k, 25, 112, 112, generator=gen), torch.rand(k, 25, 112, 112, generator=gen)]
            if self.nan_heatmap is not None:
                chart[self.nan_heatmap[0]][self.nan_heatmap[1], 0, 3, 3] = NAN
            det = d2.Detections(torch.tensor(self.boxes, dtype=torch.float32).reshape(k, 4),
                                torch.tensor(self.scores, dtype=torch.float32), chart=tuple(chart))
            self.outputs.append(det)
            out.append(det)
        return out


def _d2_run(tmp_path, monkeypatch, predictor, **kw):
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "img.png"), np.zeros((60, 40, 3), np.uint8))  # H = 60, W = 40
    for name in ("c.yaml", "w.pkl"):
        (tmp_path / name).write_text("")
    monkeypatch.setattr(d2, "build_predictor", lambda *a, **k: predictor)
    monkeypatch.setattr(d2, "_import_detectron2", lambda: None)
    params = load_params_dict({"detectron2": {"config": str(tmp_path / "c.yaml"), "weights": str(tmp_path / "w.pkl"),
                                              "images": str(folder), "score_threshold": 0.5, **kw}}).detectron2
    return d2.write_detectron2_store(params, 16, "cpu", SimpleNamespace(hash="t", source="anny"), tmp_path / "dp.zarr")


@pytest.mark.parametrize("boxes,scores,match", [
    ([[0, 0, 10, 10], [NAN, 0, 5, 5]], [0.9, 0.9], r"instance 1: box \[nan, 0.0, 5.0, 5.0\] is not finite"),
    ([[0, 0, 10, 10], [0, 0, 5, 5]], [0.9, NAN], "instance 1: score nan is not finite"),
    ([[0, 0, 10, 10], [0, 0, 5, 5]], [0.9, 1.2], r"instance 1: score 1.2.* is outside \[0, 1\]"),
])
def test_detectron2_bad_detections_are_errors_naming_the_image(tmp_path, monkeypatch, boxes, scores, match):
    with pytest.raises(InputError, match=match) as err:
        _d2_run(tmp_path, monkeypatch, ScriptedPredictor(boxes, scores))
    assert str(tmp_path / "imgs" / "img.png") in str(err.value) and not (tmp_path / "dp.zarr").exists()


def test_detectron2_nan_heatmap_is_an_error_naming_image_and_instance(tmp_path, monkeypatch):
    predictor = ScriptedPredictor([[0, 0, 10, 10], [0, 0, 20, 20]], [0.9, 0.8], nan_heatmap=(2, 1))
    with pytest.raises(InputError, match=r"img.png, instance 1: the model's u holds NaN.*detectron2.weights"):
        _d2_run(tmp_path, monkeypatch, predictor)


def test_detectron2_empty_outside_and_partly_outside_boxes(tmp_path, monkeypatch):
    boxes = [[5, 5, 30, 50], [10, 10, 10, 20], [45, 0, 60, 10], [20, 30, 60, 90], [0, 0, 5, 5]]
    predictor = ScriptedPredictor(boxes, [0.9, 0.9, 0.9, 0.8, 0.3])
    summary = _d2_run(tmp_path, monkeypatch, predictor, max_instances=2)
    assert {k: summary.metrics()[k] for k in ZERO} == {"skipped_empty_boxes": 1, "skipped_boxes_outside_image": 1,
                                             "clipped_boxes": 1}
    root = open_densepose(tmp_path / "dp.zarr", template_hash="t", kind="chart")
    assert root["box"][:].tolist() == [[5, 5, 30, 50], [20, 30, 40, 60]]  # the cap applies to usable boxes
    det = predictor.outputs[0]
    window = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    ref = chart_output_to_crops(*(t[[0, 3]] for t in det.chart), 16, window=window)
    assert np.array_equal(root["labels"][:], ref.labels.numpy())
    full = chart_output_to_crops(*(t[[0]] for t in det.chart), 16)  # the unclipped one exactly as before
    assert np.array_equal(root["labels"][0], full.labels[0].numpy())


# --- fail fast ------------------------------------------------------------------------------------

def test_detectron2_reports_every_problem_at_once_missing_detectron2_first(tmp_path, monkeypatch):
    """The reporter's case: source detectron2, paths not set, Detectron2 not installed."""
    monkeypatch.setitem(os.sys.modules, "detectron2", None)
    built = []
    monkeypatch.setattr(d2, "build_predictor", lambda *a, **k: built.append(1))
    params = load_params_dict({"detectron2": {}}).detectron2
    with pytest.raises(d2.Detectron2MissingError) as err:
        d2.write_detectron2_store(params, 16, "cpu", TEMPLATE, tmp_path / "dp.zarr")
    msg = str(err.value)
    assert "4 problem(s)" in msg and msg.index("pip install") < msg.index("detectron2.config is empty")
    assert "detectron2.weights is empty" in msg and "detectron2.images is empty" in msg
    assert isinstance(err.value, UserError) and not built and not (tmp_path / "dp.zarr").exists()


def test_detectron2_missing_files_and_folder_without_images_in_one_error(tmp_path, monkeypatch):
    monkeypatch.setattr(d2, "_import_detectron2", lambda: None)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("no image here")
    params = load_params_dict({"detectron2": {"config": str(tmp_path / "c.yaml"), "weights": str(tmp_path),
                                              "images": str(tmp_path / "imgs"),
                                              "test_list": str(tmp_path / "test.txt")}}).detectron2
    with pytest.raises(door.MissingInputError) as err:
        d2.check_detectron2_inputs(params, "auto")
    msg = str(err.value)
    assert "4 problem(s)" in msg and "detectron2.config: file not found" in msg
    assert f"detectron2.weights: file not found: {tmp_path} (it is a folder)" in msg
    assert "detectron2.images: no image" in msg and "detectron2.test_list: file not found" in msg
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, InputError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_detectron2_cuda_without_cuda_is_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(d2, "_import_detectron2", lambda: None)
    params = load_params_dict({"detectron2": {"images": str(tmp_path)}}).detectron2
    with pytest.raises(InputError, match="(?s)4 problem.*common.device = cuda, but torch sees no CUDA device"):
        d2.check_detectron2_inputs(params, "cuda")


def test_unreadable_file_is_a_problem(tmp_path, monkeypatch):
    path, _ = _dump(tmp_path, [[10, 10, 50, 80]])
    monkeypatch.setattr(door.os, "access", lambda p, mode: False)  # chmod does not stop root
    with pytest.raises(InputError, match="precomputed.dump: .*results.pkl is not readable: make it readable"):
        check_precomputed_inputs(_params(path))


def test_precomputed_reports_every_problem_at_once(tmp_path):
    params = _params(tmp_path / "missing.pkl", image_root=str(tmp_path / "nope"), test_list=str(tmp_path / "t.txt"))
    with pytest.raises(door.MissingInputError, match="(?s)3 problem.*precomputed.dump: file not found.*"
                                                     "precomputed.image_root: folder not found.*"
                                                     "precomputed.test_list: file not found"):
        write_precomputed_store(params, 8, TEMPLATE, tmp_path / "dp.zarr")
    params = load_params_dict({"precomputed": {"format": "iuv_png"}}).precomputed
    with pytest.raises(InputError, match="(?s)2 problem.*precomputed.iuv_folder is empty.*precomputed.boxes_json is "
                                         "empty"):
        write_precomputed_store(params, 8, TEMPLATE, tmp_path / "dp.zarr")


# --- the same count keys from every source --------------------------------------------------------

def test_every_source_returns_the_door_counts(tmp_path, template):
    from pipeline.densepose.synthetic import write_synthetic_store

    p = load_params_dict({"synthetic": {"train_bodies": 1, "test_bodies": 1, "views": 1, "batch": 2}}).synthetic
    counts = write_synthetic_store(tmp_path / "syn.zarr", template, p, crop=8, seed=0, device="cpu")
    assert {k: counts.metrics()[k] for k in ZERO} == ZERO
    path, _ = _dump(tmp_path, [[10, 10, 50, 80]])
    assert {k: v for k, v in write_precomputed_store(_params(path), 8, TEMPLATE, tmp_path / "dp.zarr").metrics().items()
            if k in ZERO} == ZERO
    images, skipped = read_iuv_folder(tmp_path, _iuv_folder(tmp_path, [[5, 5, 20, 25]]).boxes_json)
    assert len(images) == 1 and not skipped
