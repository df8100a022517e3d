"""The ``network`` source (pipeline/densepose/network.py): images read with their conversions counted,
boxes resampled as the synthetic crops are rendered, a folder of images with a boxes JSON through the
Detectron2 source's writer with bad input refused or counted, and the synthetic images observed by the
network on the very instances of the synthetic source."""

import json

import cv2
import numpy as np
import pytest
from image_fixture import header_bomb, truncated
from network_fixture import person_everywhere_network

from pipeline.core.config import load_params_dict
from pipeline.core.errors import InputError
from pipeline.core.image_files import ImageTooLargeError, UnreadableImageError
from pipeline.densepose.network import box_crops, read_rgb, write_network_store
from pipeline.densepose.store import open_densepose
from pipeline.densepose.synthetic import write_synthetic_store
from pipeline.densepose.write import NoInstancesError
from pipeline.network.checkpoint import save_network
from pipeline.network.model import ChartNet


def _image(h=60, w=80) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_rgb_converts_grey_16bit_and_alpha_and_refuses_the_rest(tmp_path):
    rgb = _image()
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    got, notes = read_rgb(tmp_path / "c.png")
    assert np.array_equal(got, rgb) and notes == ()  # OpenCV's BGR turned back into RGB
    cv2.imwrite(str(tmp_path / "g.png"), rgb[..., 0])
    got, notes = read_rgb(tmp_path / "g.png")
    assert notes == ("images_grey",) and np.array_equal(got, np.repeat(rgb[..., :1], 3, axis=2))
    cv2.imwrite(str(tmp_path / "d.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    got, notes = read_rgb(tmp_path / "d.png")
    assert notes == ("images_16bit",) and np.array_equal(got, rgb)
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 40:] = 255
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([rgb[..., ::-1], alpha]))
    got, notes = read_rgb(tmp_path / "a.png")
    assert notes == ("images_alpha",)
    assert np.array_equal(got[:, 40:], rgb[:, 40:]) and np.all(got[:, :40] == 128)  # transparent: mid-grey
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cv2.imwrite(str(tmp_path / "f.tiff"), rgb.astype(np.float32))  # float samples: no known range
    for name in ("bad.png", "missing.png", "f.tiff"):
        with pytest.raises(UnreadableImageError, match=name):
            read_rgb(tmp_path / name)


def _read_rgb_before(path):
    """The network source's reader before pipeline/core/image_files.py (OpenCV, EXIF ignored), for comparison."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    notes = []
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
        notes.append("images_16bit")
    if img.ndim == 2:
        notes.append("images_grey")
        img = np.stack([img] * 3, axis=-1)
    else:
        img = img[..., [2, 1, 0] + ([3] if img.shape[2] == 4 else [])]
    if img.shape[2] == 4:
        notes.append("images_alpha")
        a = img[..., 3:].astype(np.float64) / 255.0
        img = np.round(img[..., :3] * a + 255.0 * 0.5 * (1 - a)).astype(np.uint8)
    return np.ascontiguousarray(img), tuple(notes)


def test_read_rgb_gives_the_arrays_of_before_on_images_without_exif(tmp_path):
    rgb = _image()
    y, x = np.mgrid[0:60, 0:80]
    smooth = np.stack([x * 3, y * 4, x + y], axis=-1).astype(np.uint8)
    alpha = (np.arange(80, dtype=np.uint8) * 3)[None, :].repeat(60, axis=0)
    writes = {"c.png": rgb[..., ::-1], "c.jpg": smooth[..., ::-1], "n.jpg": rgb[..., ::-1], "g.png": rgb[..., 0],
              "g.jpg": smooth[..., 0], "a.png": np.dstack([rgb[..., ::-1], alpha]), "c.bmp": rgb[..., ::-1],
              "c.webp": rgb[..., ::-1], "d.png": rgb[..., ::-1].astype(np.uint16) * 257}
    for name, img in writes.items():
        cv2.imwrite(str(tmp_path / name), img)
    for name in writes:
        got, want = read_rgb(tmp_path / name), _read_rgb_before(tmp_path / name)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1], name


def test_box_crops_sample_the_box_at_crop_pixel_centres():
    h, w = 40, 64
    x = np.tile(np.arange(w, dtype=np.uint8)[None, :, None] * 3, (h, 1, 3))  # value = 3 * column
    crops = box_crops(x, np.array([[8.0, 4.0, 24.0, 36.0], [0.0, 0.0, 64.0, 40.0]]), 16)
    assert crops.shape == (2, 16, 16, 3)
    # crop column c shows image x = 8 + (c + 0.5): the pixel centred there, column 8 + c
    assert np.array_equal(crops[0, 5, :, 0], (3 * (8 + np.arange(16))).astype(np.uint8))
    # a box four times the crop: each crop pixel averages its 4 columns (no aliasing)
    assert np.allclose(crops[1, 0, :, 0], 3 * (4 * np.arange(16) + 1.5), atol=0.51)


@pytest.fixture(scope="module")
def checkpoint(template, tmp_path_factory):
    return person_everywhere_network(tmp_path_factory.mktemp("ck") / "network.pt", template.hash)


def _folder(tmp_path, entries):
    rgb = _image(60, 80)
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "grey.png"), rgb[..., 0])
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb[..., ::-1], np.full((60, 80), 200, np.uint8)]))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "boxes.json").write_text(json.dumps({"images": entries}))
    return load_params_dict({"densepose": {"source": "network", "crop": 16},
                             "network_source": {"images": str(tmp_path), "boxes_json": str(tmp_path / "boxes.json")},
                             "common": {"device": "cpu"}})


def test_a_folder_with_boxes_becomes_a_densepose_store_with_every_skip_counted(template, checkpoint, tmp_path):
    params = _folder(tmp_path, [
        {"file_name": "a.png", "boxes": [[10, 5, 50, 55], [0, 0, 0, 10], [100, 100, 120, 130], [60, 10, 95, 50]],
         "scores": [0.9, 0.8, 0.7, 0.6]},
        {"file_name": "grey.png", "boxes": [[1, 1, 30, 40]]},
        {"file_name": "rgba.png", "boxes": []},
        {"file_name": "broken.jpg", "boxes": [[1, 1, 30, 40]]},
    ])
    out = tmp_path / "dp.zarr"
    summary = write_network_store(params, template, out, checkpoint)
    m = summary.metrics()
    assert m["source"] == "network" and m["instances"] == 3 and m["images"] == 3 and m["images_skipped"] == 1
    assert m["skipped_empty_boxes"] == 1 and m["skipped_boxes_outside_image"] == 1 and m["clipped_boxes"] == 1
    assert m["images_grey"] == 1 and m["images_alpha"] == 1 and m["images_without_instances"] == 1
    root = open_densepose(out, template.hash)
    assert root["labels"].shape == (3, 16, 16) and root["uv"].shape == (3, 2, 16, 16)
    assert np.allclose(root["box"][1], [60, 10, 80, 50])  # clipped to the 80-pixel-wide image
    assert (root["labels"][:] > 0).all() and root.attrs["skipped_images"] == ["broken.jpg"]


@pytest.mark.parametrize("entries, match", [
    ([{"file_name": "a.png", "boxes": [[np.nan, 0, 10, 10]]}], "not finite"),
    ([{"file_name": "a.png", "boxes": [[0, 0, 10, 10]], "scores": [1.5]}], "outside"),
    ([{"boxes": [[0, 0, 10, 10]]}], "file_name"),
    ([{"file_name": "a.png", "boxes": [[0, 0, 10]]}], "boxes"),
])
def test_bad_boxes_are_errors_naming_the_file_and_image(template, checkpoint, tmp_path, entries, match):
    params = _folder(tmp_path, entries)
    out = tmp_path / "dp.zarr"
    with pytest.raises(InputError, match=match) as e:
        write_network_store(params, template, out, checkpoint)
    assert "boxes.json" in str(e.value) and not out.exists()


def test_no_surviving_box_and_missing_inputs_are_errors(template, checkpoint, tmp_path):
    params = _folder(tmp_path, [{"file_name": "broken.jpg", "boxes": [[1, 1, 30, 40]]}])
    with pytest.raises(NoInstancesError):
        write_network_store(params, template, tmp_path / "dp.zarr", checkpoint)
    params = load_params_dict({"densepose": {"source": "network"}, "network_source": {
        "images": str(tmp_path / "nowhere"), "boxes_json": str(tmp_path / "none.json")}})
    with pytest.raises(InputError, match="network_source.images: folder not found") as e:
        write_network_store(params, template, tmp_path / "dp.zarr", checkpoint)
    assert "none.json" in str(e.value)


def test_a_truncated_image_is_skipped_and_counted_and_a_decompression_bomb_stops_the_source(template, checkpoint,
                                                                                           tmp_path, caplog):
    params = _folder(tmp_path, [{"file_name": "a.png", "boxes": [[10, 5, 50, 55]]},
                                {"file_name": "cut.jpg", "boxes": [[1, 1, 30, 40]]}])
    truncated(tmp_path / "cut.jpg", _image()[..., ::-1])
    out = tmp_path / "dp.zarr"
    m = write_network_store(params, template, out, checkpoint).metrics()
    assert m["images"] == 1 and m["images_skipped"] == 1 and m["instances"] == 1
    assert open_densepose(out, template.hash).attrs["skipped_images"] == ["cut.jpg"]
    assert f"skipping {tmp_path / 'cut.jpg'}: truncated" in caplog.text
    header_bomb(tmp_path / "bomb.png")
    params = _folder(tmp_path, [{"file_name": "a.png", "boxes": [[10, 5, 50, 55]]},
                                {"file_name": "bomb.png", "boxes": [[1, 1, 30, 40]]}])
    with pytest.raises(ImageTooLargeError, match=r"bomb.png: 60000 x 60000 pixels exceeds the 100-megapixel cap"):
        write_network_store(params, template, tmp_path / "bombed.zarr", checkpoint)
    assert not (tmp_path / "bombed.zarr").exists()


def test_a_checkpoint_of_another_template_or_no_checkpoint_is_refused(template, tmp_path):
    params = load_params_dict({"densepose": {"source": "network"}, "common": {"device": "cpu"}})
    save_network(tmp_path / "other.pt", ChartNet(4), 32, "another-template", {}, 0, {})
    with pytest.raises(InputError, match="another-template"):
        write_network_store(params, template, tmp_path / "dp.zarr", tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a correspondence network checkpoint"):
        write_network_store(params, template, tmp_path / "dp.zarr", tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        write_network_store(params, template, tmp_path / "dp.zarr", tmp_path / "none.pt")
    assert not (tmp_path / "dp.zarr").exists()


def test_the_synthetic_images_are_the_synthetic_sources_instances_seen_by_the_network(template, checkpoint,
                                                                                       tmp_path):
    params = load_params_dict({"densepose": {"source": "network"}, "common": {"device": "cpu"},
                               "synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 2}})
    write_network_store(params, template, tmp_path / "net.zarr", checkpoint)
    write_synthetic_store(tmp_path / "syn.zarr", template, params.synthetic, crop=112, seed=0, device="cpu")
    net = open_densepose(tmp_path / "net.zarr", template.hash)
    syn = open_densepose(tmp_path / "syn.zarr", template.hash)
    assert net.attrs["source"] == "network" and "rgb" in net
    for key in ("gt/joints", "gt/iuv", "box", "split", "gt/occluder" if "gt/occluder" in syn else "gt/occluded"):
        assert np.array_equal(net[key][:], syn[key][:]), key
    assert (net["labels"][:] > 0).all()  # this network's output, not the corruption model's
    assert not np.array_equal(net["labels"][:], syn["labels"][:])


@pytest.mark.parametrize("entries, match", [
    ([{"file_name": "a.png", "boxes": []}, {"file_name": "../a.png", "boxes": []}],
     r"images\[1\] \('../a.png'\), 'file_name': '../a.png' is not a path inside .*: give it relative to that folder"),
    ([{"file_name": "/etc/hostname", "boxes": []}], r"images\[0\] \('/etc/hostname'\), 'file_name': '/etc/hostname' "
                                                    r"is not a path inside"),
    ([{"file_name": "a.png", "boxes": [[10, 5, 50, 55]]}, {"file_name": "./a.png", "boxes": [[1, 1, 30, 40]]}],
     r"images\[1\] \('./a.png'\), 'file_name': './a.png' is listed again \(first by images\[0\]\): give each file one "
     r"entry"),
    ([{"file_name": "a.png", "boxes": []}, {"file_name": "gone.png", "boxes": [[1, 1, 30, 40]]}],
     r"images\[1\] \('gone.png'\), 'file_name': .*gone.png is missing"),
    ([{"file_name": "a.png", "boxes": [[50, 5, 10, 55]]}],
     r"image 'a.png' \(images\[0\]\), instance 0: box \[50.0, 5.0, 10.0, 55.0\] is inverted \(x1 < x0 or y1 < y0\)"),
    ([{"file_name": "a.png", "boxes": [[10, 5, 50, 55], [10, -30, 50, -2]]}],
     r"image 'a.png' \(images\[0\]\), instance 1: box \[10.0, -30.0, 50.0, -2.0\] lies wholly at negative "
     r"coordinates"),
    ([], r"there are no images in the JSON \(\"images\" is empty\)"),
])
def test_boxes_json_problems_are_errors_before_the_network_loads(template, tmp_path, entries, match):
    params = _folder(tmp_path, entries)
    with pytest.raises(InputError, match=match) as e:  # the checkpoint does not exist: it is never opened
        write_network_store(params, template, tmp_path / "dp.zarr", tmp_path / "no-checkpoint.pt")
    assert "boxes.json" in str(e.value) and not (tmp_path / "dp.zarr").exists()
