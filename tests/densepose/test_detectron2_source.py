"""pipeline.densepose.detectron2: the missing-Detectron2 message, batching and filtering with a fake model,
and (where Detectron2 is importable) a randomly initialised DensePose R-CNN end to end."""

import importlib.util
import sys

import cv2
import numpy as np
import pytest
import torch
from image_fixture import header_bomb, truncated

from pipeline.core.config import load_params_dict
from pipeline.core.image_files import ImageTooLargeError
from pipeline.core.stage import resolve_device
from pipeline.densepose import detectron2 as d2
from pipeline.densepose.convert import chart_output_to_crops, cse_output_to_crops
from pipeline.densepose.store import open_densepose

HAS_D2 = importlib.util.find_spec("detectron2") is not None and importlib.util.find_spec("densepose") is not None


VERTEX_EMBEDDING = np.linalg.qr(np.random.default_rng(0).normal(size=(30, 16)))[0].astype(np.float32)
VERTEX_EMBEDDING /= np.linalg.norm(VERTEX_EMBEDDING, axis=1, keepdims=True)


class FakePredictor:
    """Stands in for the model: per image, detections whose count comes from the image's first pixel."""

    def __init__(self, cse=False, seed=0):
        self.gen = torch.Generator().manual_seed(seed)
        self.cse = self.is_cse = cse
        self.batches = []
        self.outputs = {}

    def __call__(self, images):
        self.batches.append(len(images))
        out = []
        for img in images:
            k = int(img[0, 0, 0])  # the test encodes the number of people in the image
            h, w = img.shape[:2]
            boxes = torch.tensor([[i, i, w - 1 - i, h - 1 - i] for i in range(k)], dtype=torch.float32).reshape(k, 4)
            scores = torch.linspace(0.95, 0.5, k) if k else torch.zeros(0)
            if self.cse:
                det = d2.Detections(boxes, scores, cse=(torch.randn(k, 16, 112, 112, generator=self.gen),
                                                        torch.randn(k, 2, 112, 112, generator=self.gen)))
            else:
                det = d2.Detections(boxes, scores, chart=(torch.randn(k, 25, 112, 112, generator=self.gen),
                                                          torch.randn(k, 2, 112, 112, generator=self.gen),
                                                          torch.rand(k, 25, 112, 112, generator=self.gen),
                                                          torch.rand(k, 25, 112, 112, generator=self.gen)))
            self.outputs[k, len(self.outputs)] = det
            out.append(det)
        return out

    def vertex_embeddings(self, mesh_name):
        assert mesh_name == "smpl_27554"
        return VERTEX_EMBEDDING


def _images(folder, people):
    folder.mkdir(exist_ok=True)
    for i, k in enumerate(people):
        img = np.full((60, 40, 3), 128, np.uint8)
        img[0, 0] = k
        assert cv2.imwrite(str(folder / f"img{i:02d}.png"), img)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _params(folder, **kw):
    """Params running on ``folder``, with config c.yaml and weights w.pkl beside it (made here)."""
    for name in ("c.yaml", "w.pkl"):
        (folder.parent / name).write_text("")
    return load_params_dict({"detectron2": {"config": str(folder.parent / "c.yaml"),
                                            "weights": str(folder.parent / "w.pkl"), "images": str(folder),
                                            **kw}}).detectron2


def _fake_model(monkeypatch, fake):
    """``fake`` stands in for the model, and Detectron2 counts as importable."""
    monkeypatch.setattr(d2, "build_predictor", lambda *a, **k: fake)
    monkeypatch.setattr(d2, "_import_detectron2", lambda: None)
    return fake


class _Template:
    n_vertices = 30
    hash = "t123"
    source = "anny"
    topology = "notoes_collapse10pc"
    embedding = np.zeros((30, 16), np.float32)


class _CseTemplate(_Template):
    source = "cse"
    topology = "smpl_27554"
    embedding = VERTEX_EMBEDDING


def test_missing_detectron2_says_how_to_install_and_names_other_sources(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "detectron2", None)  # import fails even where it is installed
    (tmp_path / "c.yaml").write_text("")
    (tmp_path / "w.pkl").write_bytes(b"")
    with pytest.raises(d2.Detectron2MissingError) as err:
        d2.build_predictor(str(tmp_path / "c.yaml"), str(tmp_path / "w.pkl"), "cpu", 0.8)
    msg = str(err.value)
    assert "pip install" in msg and "projects/DensePose" in msg
    assert "precomputed" in msg and "synthetic" in msg
    assert isinstance(err.value, ImportError)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="detectron2.weights"):
        (tmp_path / "c.yaml").write_text("")
        d2.build_predictor(str(tmp_path / "c.yaml"), str(tmp_path / "nope.pkl"), "cpu", 0.8)
    with pytest.raises(ValueError, match="detectron2.config is empty"):
        d2.build_predictor("", "w.pkl", "cpu", 0.8)


def test_infer_folder_batches_filters_and_skips(tmp_path):
    folder = _images(tmp_path / "imgs", [2, 0, 3, 1, 4])
    fake = FakePredictor()
    images, skipped = d2.infer_folder(fake, folder, 16, batch_size=2, score_threshold=0.6, max_instances=2)
    assert skipped == ["broken.jpg"]
    assert [im.name for im in images] == ["img00.png", "img01.png", "img02.png", "img03.png", "img04.png"]
    assert fake.batches == [1, 2, 2]  # broken.jpg sorts first and leaves its batch short
    # scores linspace(0.95, 0.5, k): threshold 0.6 then cap 2
    assert [len(im) for im in images] == [1, 0, 2, 1, 2]
    assert all(np.all(np.diff(im.scores) <= 0) for im in images)
    # the crops are the converter's output for the kept detections
    det = fake.outputs[3, 2]
    keep = torch.tensor([0, 1])
    ref = chart_output_to_crops(*(t[keep] for t in det.chart), 16)
    assert np.array_equal(images[2].labels, ref.labels.numpy()) and np.array_equal(images[2].uv, ref.uv.numpy())
    np.testing.assert_array_equal(images[2].boxes, det.boxes[keep].numpy())


def test_infer_folder_skips_a_truncated_jpeg_and_stops_on_a_decompression_bomb(tmp_path, caplog):
    folder = _images(tmp_path / "imgs", [1])
    truncated(folder / "cut.jpg", np.full((60, 40, 3), 128, np.uint8))
    images, skipped = d2.infer_folder(FakePredictor(), folder, 16)
    assert skipped == ["broken.jpg", "cut.jpg"] and [im.name for im in images] == ["img00.png"]
    assert f"skipping {folder / 'cut.jpg'}: truncated" in caplog.text
    header_bomb(folder / "bomb.png")
    with pytest.raises(ImageTooLargeError, match=r"bomb.png: 60000 x 60000 pixels exceeds the 100-megapixel cap"):
        d2.infer_folder(FakePredictor(), folder, 16)


def test_write_detectron2_store_with_fake_model(tmp_path, monkeypatch):
    folder = _images(tmp_path / "imgs", [2, 0, 1])
    (tmp_path / "test.txt").write_text("img02.png\n")
    fake = _fake_model(monkeypatch, FakePredictor())
    summary = d2.write_detectron2_store(_params(folder, score_threshold=0.5, test_list=str(tmp_path / "test.txt")),
                                       24, "cpu", _Template(), tmp_path / "dp.zarr", {"x": 1})
    assert summary.metrics() == {"source": "detectron2", "images": 3, "images_skipped": 1, "images_without_instances": 1, "instances": 3,
                       "train": 2, "test": 1, "skipped_empty_boxes": 0,
                       "skipped_boxes_outside_image": 0, "clipped_boxes": 0}
    root = open_densepose(tmp_path / "dp.zarr", template_hash="t123", kind="chart")
    assert root.attrs["images"] == ["img00.png", "img01.png", "img02.png"]
    assert root.attrs["skipped_images"] == ["broken.jpg"] and root.attrs["source"] == "detectron2"
    assert root["image"][:].tolist() == [0, 0, 2] and root["split"][:].tolist() == [0, 0, 1]
    assert root["labels"].shape == (3, 24, 24) and root["uv"].dtype == np.float16


def test_cse_model_needs_the_template_of_its_mesh_and_weights(tmp_path, monkeypatch):
    folder = _images(tmp_path / "imgs", [2])
    fake = _fake_model(monkeypatch, FakePredictor(cse=True))
    params = _params(folder, score_threshold=0.0)
    d2.write_detectron2_store(params, 8, "cpu", _CseTemplate(), tmp_path / "dp.zarr")
    root = open_densepose(tmp_path / "dp.zarr", kind="cse")
    det = fake.outputs[2, 0]
    ref = cse_output_to_crops(*det.cse, 8)
    np.testing.assert_allclose(root["embedding"][:].astype(np.float32), ref.embedding.numpy(), atol=1e-2, rtol=1e-3)
    assert np.array_equal(root["mask"][:], ref.mask.numpy()) and root.attrs["cse_mesh"] == "smpl_27554"
    # refused before any image is read: a chart template, or a CSE template of other weights
    with pytest.raises(ValueError, match="template.source: cse.*The template is 'anny'"):
        d2.write_detectron2_store(params, 8, "cpu", _Template(), tmp_path / "anny.zarr")
    other = type("Other", (_CseTemplate,), {"embedding": np.roll(VERTEX_EMBEDDING, 1, axis=0)})
    with pytest.raises(ValueError, match="not the template.s .*template.cse_weights = detectron2.weights = .*w.pkl"):
        d2.write_detectron2_store(params, 8, "cpu", other(), tmp_path / "other.zarr")
    assert fake.batches == [1]  # only the first, successful run read images
    assert not (tmp_path / "anny.zarr").exists() and not (tmp_path / "other.zarr").exists()


def test_no_surviving_instance_is_an_error_not_an_empty_store(tmp_path, monkeypatch):
    folder = _images(tmp_path / "imgs", [0, 1])
    _fake_model(monkeypatch, FakePredictor())
    with pytest.raises(d2.NoInstancesError, match="score threshold"):
        d2.write_detectron2_store(_params(folder, score_threshold=0.99), 8, "cpu", _Template(), tmp_path / "dp.zarr")
    assert not (tmp_path / "dp.zarr").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no image"):
        d2.infer_folder(FakePredictor(), empty, 8)


def test_device_resolution():
    assert d2.resolve_device is resolve_device and d2.resolve_device("cpu") == "cpu"
    assert d2.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


_CFG_TEXT = """
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  BACKBONE: {NAME: "build_resnet_fpn_backbone"}
  RESNETS: {DEPTH: 50, OUT_FEATURES: ["res2", "res3", "res4", "res5"]}
  FPN: {IN_FEATURES: ["res2", "res3", "res4", "res5"]}
  ANCHOR_GENERATOR: {SIZES: [[32], [64], [128], [256], [512]], ASPECT_RATIOS: [[0.5, 1.0, 2.0]]}
  RPN: {IN_FEATURES: ["p2", "p3", "p4", "p5", "p6"], POST_NMS_TOPK_TEST: 100}
  DENSEPOSE_ON: True
  ROI_HEADS: {NAME: "DensePoseROIHeads", IN_FEATURES: ["p2", "p3", "p4", "p5"], NUM_CLASSES: 1}
  ROI_BOX_HEAD: {NAME: "FastRCNNConvFCHead", NUM_FC: 2, POOLER_RESOLUTION: 7}
  ROI_DENSEPOSE_HEAD: {NAME: "DensePoseV1ConvXHead", POOLER_TYPE: "ROIAlign"}
INPUT: {MIN_SIZE_TEST: 128, MAX_SIZE_TEST: 256}
"""

# a CSE model (configs/cse/Base-DensePose-RCNN-FPN.yaml's head) with a direct embedder for mesh "sub"
_CSE_HEAD = """
  ROI_DENSEPOSE_HEAD:
    NAME: "DensePoseV1ConvXHead"
    POOLER_TYPE: "ROIAlign"
    NUM_COARSE_SEGM_CHANNELS: 2
    PREDICTOR_NAME: "DensePoseEmbeddingPredictor"
    LOSS_NAME: "DensePoseCseLoss"
    CSE:
      EMBED_SIZE: 16
      EMBEDDERS:
        sub: {TYPE: "vertex_direct", NUM_VERTICES: %d, INIT_FILE: "", IS_TRAINABLE: True}
"""


def _random_model(tmp_path, cfg_text: str, init=None):  # pragma: no cover - needs Detectron2
    """Saves a randomly initialised model of ``cfg_text`` as ``random.pth`` (``init(model)`` first)."""
    from densepose import add_densepose_config
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    (tmp_path / "cfg.yaml").write_text(cfg_text)
    cfg = get_cfg()
    add_densepose_config(cfg)
    cfg.merge_from_file(str(tmp_path / "cfg.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg)
    if init is not None:
        with torch.no_grad():
            init(model)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("random")


def _two_images_params(tmp_path):
    """Two generated images and the detectron2 params running ``random.pth`` on them."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    gen = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.jpg"), gen.integers(0, 255, (120, 90, 3), dtype=np.uint8))
    return load_params_dict({"detectron2": {"config": str(tmp_path / "cfg.yaml"),
                                            "weights": str(tmp_path / "random.pth"),
                                            "images": str(folder), "score_threshold": 0.0,
                                            "max_instances": 3, "batch_size": 2}}).detectron2


@pytest.mark.slow
@pytest.mark.skipif(not HAS_D2, reason="Detectron2 and its DensePose project are not installed here")
def test_random_densepose_rcnn_end_to_end(tmp_path):  # pragma: no cover - needs Detectron2
    _random_model(tmp_path, _CFG_TEXT)
    params = _two_images_params(tmp_path)
    summary = d2.write_detectron2_store(params, 32, "auto", _Template(), tmp_path / "dp.zarr")
    assert summary.metrics()["images"] == 2 and 1 <= summary.metrics()["instances"] <= 6
    root = open_densepose(tmp_path / "dp.zarr", kind="chart")
    assert root["labels"].shape[1:] == (32, 32)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_D2, reason="Detectron2 and its DensePose project are not installed here")
def test_random_cse_rcnn_with_its_own_template(template, tmp_path):  # pragma: no cover - needs Detectron2
    """A randomly initialised CSE model: the template built from its weights (pipeline.template.cse_mesh) holds
    exactly the model's vertex embeddings, and the stage runs; another template is refused."""
    import pickle

    import trimesh

    from pipeline.template.build import cse_template
    from pipeline.template.file import load_template

    v, f = trimesh.remesh.subdivide(template.vertices.astype(np.float64), template.faces)
    with open(tmp_path / "mesh.pkl", "wb") as fh:
        pickle.dump({"vertices": v, "faces": f}, fh)
    cfg_text = _CFG_TEXT.replace('  ROI_DENSEPOSE_HEAD: {NAME: "DensePoseV1ConvXHead", POOLER_TYPE: "ROIAlign"}\n',
                                 _CSE_HEAD % len(v))
    _random_model(tmp_path, cfg_text, init=lambda m: m.roi_heads.embedder.embedder_sub.embeddings.normal_())
    template.save(tmp_path / "reference.npz")
    t = cse_template(tmp_path / "mesh.pkl", tmp_path / "random.pth", "sub", load_template(tmp_path / "reference.npz"))
    params = _two_images_params(tmp_path)
    summary = d2.write_detectron2_store(params, 32, "auto", t, tmp_path / "dp.zarr")
    assert summary.metrics()["images"] == 2 and 1 <= summary.metrics()["instances"] <= 6
    root = open_densepose(tmp_path / "dp.zarr", kind="cse")
    assert root["embedding"].shape[1:] == (16, 32, 32) and root.attrs["cse_mesh"] == "sub"
    with pytest.raises(ValueError, match="template.source: cse"):
        d2.write_detectron2_store(params, 32, "auto", template, tmp_path / "anny.zarr")
