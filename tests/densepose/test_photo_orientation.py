"""A phone photo stored sideways (EXIF orientation 6) is read upright by every source, as Detectron2's
``read_image`` reads it (``_apply_exif_orientation``, then the format): the same (H, W), and a box made by
Detectron2 on it crops the same region in the network, precomputed and detectron2 sources."""

import json

import cv2
import numpy as np
import torch
from image_fixture import marked, save_oriented
from PIL import Image, ImageOps

from pipeline.densepose import detectron2 as d2
from pipeline.densepose.convert import photo_crops
from pipeline.densepose.network import box_crops, read_rgb
from pipeline.densepose.precomputed import dump_images_to_instances, image_size, read_iuv_folder

BOX = np.array([[21.0, 2.0, 39.0, 15.0]], np.float32)  # x0, y0, x1, y1 on the upright photo: around the red block


def _detectron2_read_image(path, format="RGB"):
    """What ``detectron2.data.detection_utils.read_image(path, format)`` returns (Pillow: EXIF transposed, then
    converted; BGR reversed from RGB)."""
    rgb = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    return rgb[..., ::-1] if format == "BGR" else rgb


class _Recorder:
    """A predictor that keeps the images it is given and finds nobody."""

    is_cse = False

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen += images
        return [d2.Detections(torch.zeros(0, 4), torch.zeros(0)) for _ in images]


def test_a_box_on_a_sideways_phone_photo_crops_the_same_region_in_every_source(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    photo = save_oriented(folder / "phone.jpg", marked(40, 60), 6)  # stored 60 wide and 40 high
    upright = _detectron2_read_image(photo)
    assert upright.shape == (60, 40, 3)
    want = photo_crops(upright, BOX, 16)
    red = (want[..., 0] > 180) & (want[..., 1] < 90)
    assert red.sum() > 40  # the box holds the red block on the upright photo...
    stored = np.asarray(Image.open(photo).convert("RGB"))  # ...and not on the photo as stored (EXIF ignored)
    assert not ((photo_crops(stored, BOX, 16)[..., 0] > 180) & (photo_crops(stored, BOX, 16)[..., 1] < 90)).any()

    # network source: the image it runs on, and the crop it gives the network
    rgb, notes = read_rgb(photo)
    assert np.array_equal(rgb, upright) and notes == ()
    assert np.array_equal(box_crops(rgb, BOX, 16), box_crops(upright, BOX, 16))

    # precomputed source: the size of a dump's image, and the photo under an IUV image (crops for reports)
    assert image_size("phone.jpg", folder) == (60, 40)
    iuv = np.zeros((60, 40, 3), np.uint8)
    iuv[2:15, 21:39] = (2, 128, 128)
    assert cv2.imwrite(str(folder / "phone_IUV.png"), iuv)
    (tmp_path / "boxes.json").write_text(json.dumps({"images": [
        {"file_name": "phone.jpg", "iuv": "phone_IUV.png", "boxes": BOX.tolist()}]}))
    images, skipped = read_iuv_folder(folder, tmp_path / "boxes.json")
    assert skipped == [] and np.array_equal(images[0].photo, upright)
    assert np.array_equal(dump_images_to_instances(images, 16)[0].rgb, want)

    # detectron2 source: the model gets Detectron2's BGR image; the store records the upright size
    recorder = _Recorder()
    (folder / "phone_IUV.png").unlink()
    instances, skipped = d2.infer_folder(recorder, folder, 16)
    assert skipped == [] and np.array_equal(recorder.seen[0], _detectron2_read_image(photo, "BGR"))
    assert instances[0].size == (60, 40)
