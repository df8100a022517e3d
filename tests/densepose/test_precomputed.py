"""pipeline.densepose.precomputed: real dump files written with stand-in Detectron2 classes, read back safely."""

import json
import logging
import os
import pickle
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from dump_fixture import fake_densepose_modules
from image_fixture import header_bomb, save_oriented, truncated

from pipeline.core.config import load_params_dict
from pipeline.core.dump_unpickler import ChartResult, EmbeddingOutput, UnsafeDumpError, load_dump
from pipeline.core.errors import InputError
from pipeline.core.image_files import ImageTooLargeError
from pipeline.densepose.convert import chart_result_to_crop, cse_output_to_crops
from pipeline.densepose.door import MissingInputError
from pipeline.densepose.precomputed import (image_size, read_dump, read_iuv_folder, select_instances,
                                            write_precomputed_store)
from pipeline.densepose.store import open_densepose
from pipeline.template.file import encode_iuv


def _chart_dump(dp, gen):
    """Two images as apply_net.py dump makes them: 2 people, then none."""
    boxes = torch.tensor([[10.5, 20.2, 40.9, 80.0], [0.0, 5.0, 25.0, 30.5]])
    results = []
    for b in boxes:
        w, h = int(b[2] - b[0]), int(b[3] - b[1])
        labels = torch.randint(0, 25, (h, w), generator=gen)
        uv = torch.rand(2, h, w, generator=gen) * (labels > 0)
        results.append(dp.chart(labels=labels, uv=uv, sigma_2=torch.rand(h, w, generator=gen)))
    return [{"file_name": "/data/imgs/a.jpg", "scores": torch.tensor([0.95, 0.7]), "pred_boxes_XYXY": boxes,
             "pred_densepose": results},
            {"file_name": "/data/imgs/b.jpg", "scores": torch.zeros(0), "pred_boxes_XYXY": torch.zeros(0, 4),
             "pred_densepose": []}]


def _check_chart(loaded, dump):
    assert [im.file_name for im in loaded] == ["/data/imgs/a.jpg", "/data/imgs/b.jpg"]
    np.testing.assert_array_equal(loaded[0].boxes, dump[0]["pred_boxes_XYXY"].numpy())
    np.testing.assert_array_equal(loaded[0].scores, dump[0]["scores"].numpy())
    for (lab, uv), res in zip(loaded[0].chart, dump[0]["pred_densepose"]):
        assert torch.equal(lab, res.labels) and torch.equal(uv, res.uv)
    assert loaded[1].chart == [] and loaded[1].boxes.shape == (0, 4)


def test_torch_save_zip_dump_round_trips_without_detectron2(tmp_path):
    gen = torch.Generator().manual_seed(0)
    with fake_densepose_modules() as dp:
        dump = _chart_dump(dp, gen)
        torch.save(dump, tmp_path / "results.pkl")  # what apply_net.py dump does
    assert "densepose.structures" not in sys.modules and "detectron2" not in sys.modules
    raw = load_dump(tmp_path / "results.pkl")
    assert isinstance(raw[0]["pred_densepose"][0], ChartResult)
    assert raw[0]["pred_densepose"][0].sigma_1 is None and raw[0]["pred_densepose"][0].sigma_2 is not None
    _check_chart(read_dump(tmp_path / "results.pkl"), dump)


def test_legacy_torch_save_and_plain_pickle_read_the_same(tmp_path):
    gen = torch.Generator().manual_seed(1)
    with fake_densepose_modules() as dp:
        dump = _chart_dump(dp, gen)
        torch.save(dump, tmp_path / "legacy.pkl", _use_new_zipfile_serialization=False)
        with open(tmp_path / "plain.pkl", "wb") as f:
            pickle.dump(dump, f, protocol=2)
        with open(tmp_path / "plain5.pkl", "wb") as f:
            pickle.dump(dump, f, protocol=5)
    for name in ("legacy.pkl", "plain.pkl", "plain5.pkl"):
        _check_chart(read_dump(tmp_path / name), dump)


def test_tensors_saved_on_cuda_load_on_cpu(tmp_path, monkeypatch):
    """The dump does not move DensePose results off the GPU; fake the CUDA location tag on save."""
    gen = torch.Generator().manual_seed(2)
    with fake_densepose_modules() as dp:
        dump = _chart_dump(dp, gen)
        with monkeypatch.context() as m:
            m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
            torch.save(dump, tmp_path / "cuda.pkl")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "cuda.pkl", weights_only=False)  # the file really says cuda:0
    loaded = read_dump(tmp_path / "cuda.pkl")
    assert loaded[0].chart[0][0].device.type == "cpu"
    _check_chart(loaded, dump)


def test_cse_dump(tmp_path):
    gen = torch.Generator().manual_seed(3)
    with fake_densepose_modules() as dp:
        out = dp.cse(embedding=torch.randn(3, 16, 112, 112, generator=gen),
                     coarse_segm=torch.randn(3, 2, 112, 112, generator=gen))
        boxes = dp.boxes(torch.tensor([[0.0, 0, 50, 100], [10, 10, 30, 20], [5, 5, 6, 7]]))
        none = dp.cse(embedding=torch.zeros(0, 16, 112, 112), coarse_segm=torch.zeros(0, 2, 112, 112))
        torch.save([{"file_name": "c.png", "scores": torch.tensor([0.9, 0.99, 0.5]),
                     "pred_boxes_XYXY": boxes.tensor, "pred_densepose": out},
                    {"file_name": "nobody.png", "scores": torch.zeros(0), "pred_boxes_XYXY": torch.zeros(0, 4),
                     "pred_densepose": none}], tmp_path / "cse.pkl")
    im, empty = read_dump(tmp_path / "cse.pkl")  # an image with no detection is read, with no instance
    assert len(empty.scores) == 0 and empty.cse[0].shape == (0, 16, 112, 112)
    assert isinstance(load_dump(tmp_path / "cse.pkl")[0]["pred_densepose"], EmbeddingOutput)
    assert torch.equal(im.cse[0], out.embedding) and torch.equal(im.cse[1], out.coarse_segm)

    # CSE output needs the template of the model's CSE mesh, of the same embedding size
    params = load_params_dict({"precomputed": {"dump": str(tmp_path / "cse.pkl")}}).precomputed
    cse16 = _stub_template("cse", 16)
    write_precomputed_store(params, 8, cse16, tmp_path / "dp.zarr")
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="cse")
    assert root.attrs["cse_mesh"] == "smpl_27554" and root["embedding"].shape == (3, 16, 8, 8)
    with pytest.raises(ValueError, match="the template must be the model's CSE mesh.*The template is 'anny'"):
        write_precomputed_store(params, 8, _stub_template("anny", 16), tmp_path / "anny.zarr")
    with pytest.raises(ValueError, match="pixel embeddings have D = 16, the template's .* D = 8"):
        write_precomputed_store(params, 8, _stub_template("cse", 8), tmp_path / "d8.zarr")
    assert not (tmp_path / "anny.zarr").exists() and not (tmp_path / "d8.zarr").exists()


def _stub_template(source, dim):
    return SimpleNamespace(hash="abc", source=source, topology="smpl_27554", embedding=np.zeros((30, dim), np.float32))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/densepose3d_pwned",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("payload,name", [(_Evil(), "system"), (_Eval(), "builtins.eval")])
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_dump_is_refused(tmp_path, payload, name, writer):
    path = tmp_path / "evil.pkl"
    data = [{"file_name": "x.jpg", "scores": torch.ones(1), "pred_densepose": payload}]
    if writer == "torch":
        torch.save(data, path)
    else:
        path.write_bytes(pickle.dumps(data))
    with pytest.raises(UnsafeDumpError, match=name) as err:
        load_dump(path)
    assert str(path) in str(err.value)
    assert not os.path.exists("/tmp/densepose3d_pwned")


def test_unknown_class_and_garbage_are_clear_errors(tmp_path):
    path = tmp_path / "other.pkl"
    torch.save({"x": types.SimpleNamespace(a=1)}, path)
    with pytest.raises(UnsafeDumpError, match="types.SimpleNamespace"):
        load_dump(path)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not readable as a DensePose dump"):
        load_dump(tmp_path / "junk.pkl")
    with pytest.raises(FileNotFoundError):
        load_dump(tmp_path / "missing.pkl")
    torch.save({"not": "a list"}, tmp_path / "dict.pkl")
    with pytest.raises(ValueError, match="list of per-image dicts"):
        read_dump(tmp_path / "dict.pkl")


def test_select_instances_threshold_cap_and_order():
    s = np.array([0.5, 0.9, 0.7, 0.9, 0.1])
    assert select_instances(s, 0.6, 0).tolist() == [1, 3, 2]
    assert select_instances(s, 0.0, 2).tolist() == [1, 3]
    assert select_instances(s, 0.95, 0).tolist() == []
    assert select_instances(s, 0.6, 2, usable=np.array([1, 0, 1, 1, 1], bool)).tolist() == [3, 2]


def test_iuv_folder_with_index_map(tmp_path):
    H, W = 40, 50
    iuv = np.zeros((H, W, 3), np.uint8)
    iuv[5:25, 5:20] = (3, 100, 200)      # instance 0
    iuv[20:35, 15:45] = (7, 10, 250)     # instance 1, overlapping instance 0's box
    inds = np.zeros((H, W), np.uint8)
    inds[5:25, 5:20] = 1
    inds[20:35, 15:45] = 2
    assert cv2.imwrite(str(tmp_path / "a_IUV.png"), iuv) and cv2.imwrite(str(tmp_path / "a_INDS.png"), inds)
    (tmp_path / "b_IUV.png").write_bytes(b"corrupt")
    spec = {"images": [{"file_name": "a.jpg", "iuv": "a_IUV.png", "inds": "a_INDS.png",
                        "boxes": [[5, 5, 20, 25], [15, 20, 45, 35]], "scores": [0.9, 0.8]},
                       {"file_name": "b.jpg", "iuv": "b_IUV.png", "boxes": [[0, 0, 4, 4]]}]}
    (tmp_path / "boxes.json").write_text(json.dumps(spec))
    images, skipped = read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    assert skipped == ["b.jpg"] and len(images) == 1 and images[0].size == (H, W)
    (l0, uv0), (l1, uv1) = images[0].chart
    want0 = torch.full((20, 15), 3)
    want0[15:, 10:] = 0                                       # the overlap is instance 1's in the index map
    assert torch.equal(l0, want0)
    assert l1.shape == (15, 30) and (l1 == 7).all()
    np.testing.assert_allclose(uv1[:, 0, 0].numpy(), [10.5 / 255, 250.5 / 255], rtol=1e-6)
    np.testing.assert_allclose(images[0].scores, [0.9, 0.8])


def test_iuv_folder_skips_truncated_pngs_and_stops_on_a_decompression_bomb(tmp_path, caplog):
    iuv = np.zeros((40, 50, 3), np.uint8)
    iuv[5:25, 5:20] = (3, 100, 200)
    assert cv2.imwrite(str(tmp_path / "a_IUV.png"), iuv)
    truncated(tmp_path / "b_IUV.png", iuv)
    assert cv2.imwrite(str(tmp_path / "c_IUV.png"), iuv)
    truncated(tmp_path / "c_INDS.png", (iuv[..., 0] > 0).astype(np.uint8))
    truncated(tmp_path / "a.jpg", np.full((40, 50, 3), 99, np.uint8))  # the photo under the IUV: not used
    entries = [{"file_name": f"{n}.jpg", "iuv": f"{n}_IUV.png", "boxes": [[5, 5, 20, 25]]} for n in "abc"]
    entries[2]["inds"] = "c_INDS.png"
    (tmp_path / "boxes.json").write_text(json.dumps({"images": entries}))
    caplog.set_level(logging.INFO)
    images, skipped = read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    assert skipped == ["b.jpg", "c.jpg"] and [im.file_name for im in images] == ["a.jpg"] and images[0].photo is None
    for name in ("b_IUV.png", "c_INDS.png", "a.jpg"):
        assert f"{tmp_path / name}: truncated" in caplog.text
    header_bomb(tmp_path / "b_IUV.png")
    with pytest.raises(ImageTooLargeError, match=r"b_IUV.png: 60000 x 60000 pixels exceeds the 100-megapixel cap"):
        read_iuv_folder(tmp_path, tmp_path / "boxes.json")


def test_the_image_size_of_a_dump_entry_is_its_header_after_exif_and_a_bomb_is_refused(tmp_path):
    save_oriented(tmp_path / "phone.jpg", np.zeros((40, 60, 3), np.uint8), 6)
    assert image_size("phone.jpg", tmp_path) == (60, 40) and image_size(str(tmp_path / "phone.jpg")) == (60, 40)
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    assert image_size("junk.jpg", tmp_path) is None and image_size("none.jpg", tmp_path) is None
    header_bomb(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLargeError, match=r"bomb.png: 60000 x 60000 pixels exceeds"):
        image_size("/elsewhere/bomb.png", tmp_path)


REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "densepose-reference"  # never copied in here
needs_reference = pytest.mark.skipif(not (REFERENCE / "demo_im_INDS.png").is_file(),
                                     reason=f"DensePose's demo output is not in {REFERENCE} (real data kept outside "
                                            "the repository)")


def _ranked_frame(tmp_path, boxes, inds_values=None, order=(0, 1, 2)):
    """An IUV PNG and index map of three people numbered like the original Detectron's (ranks 7, 12, 9: not 1..n),
    the second overlapping the first, and a boxes JSON of their ``order``."""
    H, W = 60, 80
    iuv = np.zeros((H, W, 3), np.uint8)
    inds = np.zeros((H, W), np.uint8)
    for (r0, r1, c0, c1), part, value in zip(((5, 40, 5, 30), (20, 55, 20, 50), (10, 30, 55, 75)), (3, 7, 11),
                                             (7, 12, 9)):
        iuv[r0:r1, c0:c1] = (part, 10 * part, 200)
        inds[r0:r1, c0:c1] = value
    assert cv2.imwrite(str(tmp_path / "a_IUV.png"), iuv) and cv2.imwrite(str(tmp_path / "a_INDS.png"), inds)
    item = {"file_name": "a.jpg", "iuv": "a_IUV.png", "inds": "a_INDS.png", "boxes": [boxes[o] for o in order]}
    if inds_values is not None:
        item["inds_values"] = [inds_values[o] for o in order]
    (tmp_path / "boxes.json").write_text(json.dumps({"images": [item]}))
    return iuv, inds


PEOPLE = [[5, 5, 30, 40], [20, 20, 50, 55], [55, 10, 75, 30]]  # each person's pixel box, in inds order 7, 12, 9


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
@pytest.mark.parametrize("given", [False, True])
def test_iuv_folder_reads_each_box_by_its_index_map_value_not_its_position(tmp_path, order, given):
    """The index map's values are the detector's ranks (7, 12, 9), not 1..n: each box gets its own person, from the
    boxes' "inds_values" or, without them, from the pixels each box holds."""
    _, inds = _ranked_frame(tmp_path, PEOPLE, [7, 12, 9] if given else None, order)
    (im,), _ = read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    for (lab, _), o in zip(im.chart, order):
        value, part = (7, 12, 9)[o], (3, 7, 11)[o]
        x0, y0, x1, y1 = PEOPLE[o]
        own = inds[y0:y1, x0:x1] == value
        assert torch.equal(lab > 0, torch.from_numpy(own)) and set(lab[lab > 0].unique().tolist()) == {part}


def test_iuv_folder_keeps_the_numbering_1_to_n_where_the_pixels_cannot_tell(tmp_path):
    """Values 1..n (what pipeline/iuv/fullframe.py writes) keep box k = value k + 1, even where a box holds more
    of another person than of its own (a small person in front of a larger one's box)."""
    H, W = 40, 40
    iuv = np.zeros((H, W, 3), np.uint8)
    inds = np.zeros((H, W), np.uint8)
    iuv[0:40, 0:40], inds[0:40, 0:40] = (2, 50, 50), 1   # a large person
    iuv[10:14, 10:14], inds[10:14, 10:14] = (5, 50, 50), 2  # a small one in front of it, inside its box
    assert cv2.imwrite(str(tmp_path / "a_IUV.png"), iuv) and cv2.imwrite(str(tmp_path / "a_INDS.png"), inds)
    (tmp_path / "boxes.json").write_text(json.dumps({"images": [
        {"file_name": "a.jpg", "iuv": "a_IUV.png", "inds": "a_INDS.png", "boxes": [[0, 0, 40, 40], [8, 8, 16, 16]]}]}))
    (im,), _ = read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    assert int((im.chart[0][0] == 2).sum()) == 1600 - 16 and int((im.chart[1][0] == 5).sum()) == 16


@pytest.mark.parametrize("given,logged", [
    ([7, 12, 9, 30], "instance 3: box [0.0, 50.0, 4.0, 58.0] holds no pixel of its instance (value 30, by its "
                     "\"inds_values\" entry)"),
    (None, "instance 3: box [0.0, 50.0, 4.0, 58.0] is matched with no instance of the index map"),
])
def test_iuv_folder_box_without_its_instance_is_empty_and_logged(tmp_path, caplog, given, logged):
    _ranked_frame(tmp_path, PEOPLE + [[0, 50, 4, 58]], given, order=(0, 1, 2, 3))
    with caplog.at_level("WARNING"):
        (im,), _ = read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    assert [int((lab > 0).sum()) for lab, _ in im.chart] == [35 * 25 - 20 * 10, 35 * 30, 20 * 20, 0]
    assert logged in caplog.text and "its crop is empty and the iuv stage drops it" in caplog.text


def test_iuv_folder_box_matching_two_people_alike_is_an_error_naming_the_box(tmp_path):
    """Two people inside both of two boxes (each box holds all of both): which is which cannot be decided."""
    _ranked_frame(tmp_path, [[0, 0, 80, 60], [1, 1, 79, 59], [55, 10, 75, 30]])
    with pytest.raises(InputError, match=r"boxes.json: image 'a.jpg' \(images\[0\]\), index map .*a_INDS.png, "
                                         r"instance 0: cannot tell which instance box \[0.0, 0.0, 80.0, 60.0\] is.*"
                                         r"\"inds_values\""):
        read_iuv_folder(tmp_path, tmp_path / "boxes.json")


@pytest.mark.parametrize("values,match", [
    ([7, 12], r"\"inds_values\" must list one index-map value a box.*\(3 boxes\)"),
    ([7, 12, 0], r".*an integer in 1..65535"),
    ([7, 12, 9.5], r".*an integer in 1..65535"),
    ([7, 12, 7], r"\"inds_values\" gives value 7 to instances \[0, 2\]"),
])
def test_iuv_folder_bad_inds_values_are_errors_naming_the_image(tmp_path, values, match):
    _ranked_frame(tmp_path, PEOPLE)
    spec = json.loads((tmp_path / "boxes.json").read_text())
    spec["images"][0]["inds_values"] = values
    (tmp_path / "boxes.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match=r"boxes.json: image 'a.jpg' \(images\[0\]\): " + match):
        read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    del spec["images"][0]["inds"]
    spec["images"][0]["inds_values"] = [7, 12, 9]
    (tmp_path / "boxes.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="\"inds_values\" without \"inds\""):
        read_iuv_folder(tmp_path, tmp_path / "boxes.json")


def _demo_folder(tmp_path) -> Path:
    """DensePose's demo IUV and INDS PNGs, linked (not copied) into a folder of their own."""
    for name in ("demo_im_IUV.png", "demo_im_INDS.png"):
        (tmp_path / name).symlink_to(REFERENCE / name)
    return tmp_path


@needs_reference
def test_densepose_demo_output_imports_every_person(tmp_path):
    """DensePose-RCNN's own IUV and INDS PNGs of the demo photo (13 people, INDS values 7..19): boxes from
    scripts/boxes_from_inds.py, and the same boxes without their "inds_values" in another order, give every
    person its own pixels; none is empty."""
    from pipeline.densepose.precomputed import instance_boxes

    folder = _demo_folder(tmp_path)
    inds = cv2.imread(str(folder / "demo_im_INDS.png"), cv2.IMREAD_UNCHANGED)
    values, boxes = instance_boxes(inds)
    assert values.tolist() == list(range(7, 20))
    spec = {"images": [{"file_name": "demo_im.jpg", "iuv": "demo_im_IUV.png", "inds": "demo_im_INDS.png",
                        "boxes": boxes.tolist(), "inds_values": values.tolist()}]}
    (folder / "boxes.json").write_text(json.dumps(spec))
    (im,), _ = read_iuv_folder(folder, folder / "boxes.json")
    sizes = [int((inds == v).sum()) for v in values]
    assert [int((lab > 0).sum()) for lab, _ in im.chart] == sizes and min(sizes) > 0

    order = np.random.default_rng(0).permutation(len(values))
    spec["images"][0] = {**spec["images"][0], "boxes": boxes[order].tolist()}
    del spec["images"][0]["inds_values"]
    (folder / "shuffled.json").write_text(json.dumps(spec))
    (im,), _ = read_iuv_folder(folder, folder / "shuffled.json")
    assert [int((lab > 0).sum()) for lab, _ in im.chart] == [sizes[o] for o in order]

    params = load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(folder),
                                               "boxes_json": str(folder / "boxes.json")}}).precomputed
    summary = write_precomputed_store(params, 32, _stub_template("anny", 16), tmp_path / "dp.zarr")
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="chart")
    assert summary.metrics()["instances"] == 13
    fg = ((root["labels"][:] > 0) & (root["labels"][:] < 255)).sum(axis=(1, 2))
    assert (fg > 0).all()  # before the fix, 12 of the 13 crops were empty


def test_write_precomputed_store_end_to_end(tmp_path):
    gen = torch.Generator().manual_seed(4)
    with fake_densepose_modules() as dp:
        dump = _chart_dump(dp, gen)
        torch.save(dump, tmp_path / "results.pkl")
    (tmp_path / "test.txt").write_text("# test images\nb.jpg\n")
    params = load_params_dict({"precomputed": {"dump": str(tmp_path / "results.pkl"), "score_threshold": 0.8,
                                               "test_list": str(tmp_path / "test.txt")}}).precomputed
    summary = write_precomputed_store(params, 16, _stub_template("anny", 16), tmp_path / "dp.zarr", {"k": 1})
    assert summary.metrics() == {"source": "precomputed", "images": 2, "images_skipped": 0, "images_without_instances": 1, "instances": 1,
                       "train": 1, "test": 0, "skipped_empty_boxes": 0,
                       "skipped_boxes_outside_image": 0, "clipped_boxes": 0}
    root = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="chart")
    assert root.attrs["images"] == ["/data/imgs/a.jpg", "/data/imgs/b.jpg"]
    lab, uv = chart_result_to_crop(dump[0]["pred_densepose"][0].labels, dump[0]["pred_densepose"][0].uv, 16)
    assert np.array_equal(root["labels"][0], lab.numpy())
    np.testing.assert_allclose(root["uv"][0].astype(np.float32), uv.numpy(), atol=1e-3)
    assert root["score"][:].tolist() == [pytest.approx(0.95)] and root["image"][:].tolist() == [0]

    assert root.attrs["image_sizes"] == [[0, 0], [0, 0]]  # the images are not on this machine

    # with the images below image_root, their sizes are recorded (for the full-frame export)
    (tmp_path / "imgs").mkdir()
    assert cv2.imwrite(str(tmp_path / "imgs" / "b.jpg"), np.zeros((70, 90, 3), np.uint8))
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"not an image")
    rooted = load_params_dict({"precomputed": {"dump": str(tmp_path / "results.pkl"),
                                               "image_root": str(tmp_path / "imgs")}}).precomputed
    write_precomputed_store(rooted, 16, _stub_template("anny", 16), tmp_path / "sized.zarr")
    sized = open_densepose(tmp_path / "sized.zarr", template_hash="abc", kind="chart")
    assert sized.attrs["image_sizes"] == [[0, 0], [70, 90]]

    strict = load_params_dict({"precomputed": {"dump": str(tmp_path / "results.pkl"),
                                               "score_threshold": 0.99}}).precomputed
    with pytest.raises(RuntimeError, match="no DensePose instance"):
        write_precomputed_store(strict, 16, _stub_template("anny", 16), tmp_path / "none.zarr")
    assert not (tmp_path / "none.zarr").exists()


def test_cse_crops_from_dump_equal_converter():
    gen = torch.Generator().manual_seed(5)
    e, c = torch.randn(2, 16, 112, 112, generator=gen), torch.randn(2, 2, 112, 112, generator=gen)
    from pipeline.densepose.precomputed import DumpImage, dump_images_to_instances

    im = DumpImage("x", np.zeros((2, 4), np.float32), np.array([0.3, 0.9], np.float32), cse=(e, c))
    (out,) = dump_images_to_instances([im], 8, 0.0, 0)
    ref = cse_output_to_crops(e[[1, 0]], c[[1, 0]], 8)  # best first
    assert np.array_equal(out.embedding, ref.embedding.numpy()) and np.array_equal(out.mask, ref.mask.numpy())
    assert encode_iuv(np.zeros((2, 2), int), np.zeros((2, 2, 2))).shape == (2, 2, 3)


# --- the boxes JSON of an IUV folder (pipeline/densepose/boxes_json.py) ------------------------------------------

_A = {"file_name": "a.jpg", "iuv": "a_IUV.png", "boxes": [[5, 5, 20, 25]]}
_B = {"file_name": "b.jpg", "iuv": "b_IUV.png", "boxes": [[5, 5, 20, 25]]}


@pytest.mark.parametrize("entries, error, match", [
    ([_A, {**_B, "iuv": "../b_IUV.png"}], InputError,
     r"images\[1\] \('b.jpg'\), 'iuv': '../b_IUV.png' is not a path inside .*: give it relative to that folder"),
    ([_A, {**_B, "inds": "/etc/hostname"}], InputError, r"images\[1\] \('b.jpg'\), 'inds': '/etc/hostname' is not a "
                                                        r"path inside"),
    ([_A, {**_B, "file_name": "x/../../b.jpg"}], InputError, r"'file_name': 'x/../../b.jpg' is not a path inside"),
    ([_A, {**_B, "iuv": "./a_IUV.png"}], InputError,
     r"images\[1\] \('b.jpg'\), 'iuv': './a_IUV.png' is listed again \(first by images\[0\]\)"),
    ([_A, {**_A, "iuv": "b_IUV.png"}], InputError, r"images\[1\] \('a.jpg'\), 'file_name': 'a.jpg' is listed again"),
    ([_A, {**_B, "iuv": "c_IUV.png"}, {**_B, "file_name": "d.jpg", "iuv": "b_IUV.png", "inds": "d_INDS.png"}],
     MissingInputError, r"(?s)2 problem.*images\[1\] \('b.jpg'\), 'iuv': .*c_IUV.png is missing.*"
                        r"images\[2\] \('d.jpg'\), 'inds': .*d_INDS.png is missing"),
    ([_A, {**_B, "boxes": [[20, 5, 5, 25]]}], InputError,
     r"image 'b.jpg' \(images\[1\]\), instance 0: box \[20.0, 5.0, 5.0, 25.0\] is inverted \(x1 < x0 or y1 < y0\)"),
    ([_A, {**_B, "boxes": [[5, 5, 20, 25], [5, 30, 20, 25]]}], InputError, r"'b.jpg' \(images\[1\]\), instance 1: .* "
                                                                            r"is inverted"),
    ([_A, {**_B, "boxes": [[5, 5, 20, 25], [-9, -5, -1, 25]]}], InputError,
     r"image 'b.jpg' \(images\[1\]\), instance 1: box \[-9.0, -5.0, -1.0, 25.0\] lies wholly at negative "
     r"coordinates"),
    ([], InputError, r"there are no images in the JSON"),
    ([_A, {"iuv": "b_IUV.png", "boxes": []}], InputError, r"images\[1\] needs 'file_name', 'iuv', 'boxes'.*lacks "
                                                          r"'file_name'"),
])
def test_iuv_boxes_json_problems_are_errors_before_any_png_is_read(tmp_path, monkeypatch, entries, error, match):
    from pipeline.densepose import precomputed

    iuv = np.zeros((40, 50, 3), np.uint8)
    iuv[5:25, 5:20] = (3, 100, 200)
    for name in "ab":
        assert cv2.imwrite(str(tmp_path / f"{name}_IUV.png"), iuv)
    (tmp_path / "boxes.json").write_text(json.dumps({"images": entries}))
    params = load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(tmp_path),
                                               "boxes_json": str(tmp_path / "boxes.json")}}).precomputed
    read = []
    monkeypatch.setattr(precomputed, "_data_image", lambda path, name: read.append(path))
    with pytest.raises(error, match=match) as e:
        write_precomputed_store(params, 8, _stub_template("anny", 16), tmp_path / "dp.zarr")
    assert str(tmp_path / "boxes.json") in str(e.value) and not read and not (tmp_path / "dp.zarr").exists()



def test_iuv_paths_inside_the_folder_in_any_spelling_are_read_and_empty_boxes_are_named_when_nothing_is_left(
        tmp_path):
    iuv = np.zeros((40, 50, 3), np.uint8)
    iuv[5:25, 5:20] = (3, 100, 200)
    (tmp_path / "sub").mkdir()
    assert cv2.imwrite(str(tmp_path / "sub" / "a_IUV.png"), iuv) and cv2.imwrite(str(tmp_path / "b_IUV.png"), iuv)
    entries = [{"file_name": "a.jpg", "iuv": "./sub/../sub/a_IUV.png", "inds": "", "boxes": [[5, 5, 20, 25]]},
               {"file_name": "b.jpg", "iuv": str(tmp_path / "b_IUV.png"), "boxes": [[5, 5, 20, 25]]}]
    (tmp_path / "boxes.json").write_text(json.dumps({"images": entries}))
    params = load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(tmp_path),
                                               "boxes_json": str(tmp_path / "boxes.json")}}).precomputed
    assert write_precomputed_store(params, 8, _stub_template("anny", 16), tmp_path / "dp.zarr").instances == 2
    for e in entries:
        e["boxes"] = [[5, 5, 5, 25], [7, 9, 30, 9]]  # empty, not inverted: skipped at the door
    (tmp_path / "boxes.json").write_text(json.dumps({"images": entries}))
    with pytest.raises(RuntimeError, match=r"2 image\(s\) read, 0 unreadable; none has a detection that survives the "
                                           r"door \(4 empty boxes \(x1 <= x0 or y1 <= y0\) skipped\) and the score"):
        write_precomputed_store(params, 8, _stub_template("anny", 16), tmp_path / "none.zarr")
