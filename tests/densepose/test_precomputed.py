"""pipeline.densepose.precomputed: real dump files written with stand-in Detectron2 classes, read back safely."""

import json
import os
import pickle
import sys
import types
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from dump_fixture import fake_densepose_modules

from pipeline.core.config import load_params_dict
from pipeline.core.dump_unpickler import ChartResult, EmbeddingOutput, UnsafeDumpError, load_dump
from pipeline.densepose.convert import chart_result_to_crop, cse_output_to_crops
from pipeline.densepose.precomputed import read_dump, read_iuv_folder, select_instances, write_precomputed_store
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
        torch.save([{"file_name": "c.png", "scores": torch.tensor([0.9, 0.99, 0.5]),
                     "pred_boxes_XYXY": boxes.tensor, "pred_densepose": out}], tmp_path / "cse.pkl")
    (im,) = read_dump(tmp_path / "cse.pkl")
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
