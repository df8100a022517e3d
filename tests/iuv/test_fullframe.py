"""pipeline.iuv.fullframe: pasting crops back, overlaps, clipping and the PNG round trip."""

import json

import cv2
import numpy as np
import pytest

from pipeline.densepose.precomputed import read_iuv_folder
from pipeline.iuv.fullframe import paste_iuv, save_fullframe


def _crop(part, u, v, S=4):
    c = np.zeros((S, S, 3), np.uint8)
    c[...] = (part, u, v)
    return c


def test_crop_at_its_own_size_is_copied_exactly():
    gen = np.random.default_rng(0)
    crop = np.stack([gen.integers(0, 25, (6, 5)), gen.integers(0, 256, (6, 5)), gen.integers(0, 256, (6, 5))],
                    axis=-1).astype(np.uint8)
    crop[crop[..., 0] == 0] = 0
    crop = np.pad(crop, ((0, 0), (0, 1), (0, 0)))[None, :, :6]  # (1, 6, 6, 3)
    frame = paste_iuv(crop, [[2.7, 3.2, 8.9, 9.5]], [1.0], (12, 10))  # int box x=2, y=3, w=6, h=6
    assert np.array_equal(frame.iuv[3:9, 2:8], crop[0])
    assert frame.iuv[:3].sum() == 0 and frame.iuv[:, :2].sum() == 0
    assert np.array_equal(frame.index[3:9, 2:8], np.where(crop[0, ..., 0] > 0, 1, 0))


def test_overlap_higher_score_wins_and_background_does_not_erase():
    crops = np.stack([_crop(1, 10, 20), _crop(2, 30, 40), _crop(3, 50, 60)])
    crops[2, :, :2] = 0  # instance 2's left half is background
    boxes = [[0, 0, 4, 4],   # scores: 0.5
             [2, 2, 6, 6],   # 0.9 -> wins its overlap with 0
             [0, 0, 4, 4]]   # 0.7 -> beats 0 on its right half only
    frame = paste_iuv(crops, boxes, [0.5, 0.9, 0.7], (7, 7))
    want_index = np.zeros((7, 7), np.int32)
    want_index[0:4, 0:2] = 1
    want_index[0:4, 2:4] = 3
    want_index[2:6, 2:6] = 2
    assert np.array_equal(frame.index, want_index)
    assert tuple(frame.iuv[0, 0]) == (1, 10, 20) and tuple(frame.iuv[0, 3]) == (3, 50, 60)
    assert tuple(frame.iuv[3, 3]) == (2, 30, 40) and tuple(frame.iuv[6, 6]) == (0, 0, 0)


def test_resize_nearest_parts_and_clipping():
    crop = np.zeros((1, 2, 2, 3), np.uint8)
    crop[0, 0, 0] = (5, 255, 0)
    crop[0, 1, 1] = (9, 0, 255)
    frame = paste_iuv(crop, [[-2, -2, 6, 6]], [1.0], (5, 5))  # 8x8 box, clipped to the image
    full = np.zeros((8, 8), int)
    full[:4, :4], full[4:, 4:] = 5, 9
    assert np.array_equal(frame.iuv[..., 0], full[2:7, 2:7])
    assert (frame.iuv[..., 1][frame.iuv[..., 0] == 5] == 255).all()
    assert (frame.iuv[..., 2][frame.iuv[..., 0] == 9] == 255).all()
    empty = paste_iuv(crop, [[10, 10, 20, 20]], [1.0], (5, 5))
    assert empty.iuv.sum() == 0 and empty.index.sum() == 0


def test_png_channel_order_and_import_round_trip(tmp_path):
    crops = np.stack([_crop(4, 100, 200, S=8), _crop(11, 7, 9, S=8)])
    boxes = np.array([[3, 4, 19, 24], [10, 10, 26, 22]], np.float32)
    frame = paste_iuv(crops, boxes, [0.8, 0.9], (30, 32))
    save_fullframe(frame, tmp_path / "a_IUV.png", tmp_path / "a_INDS.png")
    back = cv2.imread(str(tmp_path / "a_IUV.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(back, frame.iuv)                     # OpenCV array order: I, U, V
    rgb = cv2.cvtColor(back, cv2.COLOR_BGR2RGB)                # what PIL would show: V, U, I
    assert tuple(rgb[5, 4]) == (200, 100, 4)
    inds = cv2.imread(str(tmp_path / "a_INDS.png"), cv2.IMREAD_UNCHANGED)
    assert inds.dtype == np.uint16 and np.array_equal(inds, frame.index)
    (tmp_path / "boxes.json").write_text(json.dumps({"images": [
        {"file_name": "a.jpg", "iuv": "a_IUV.png", "inds": "a_INDS.png", "boxes": boxes.tolist(),
         "scores": [0.8, 0.9]}]}))
    (im,), skipped = read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    lab1, uv1 = im.chart[1]
    assert skipped == [] and (lab1.numpy() == 11).all()
    np.testing.assert_allclose(uv1[0].numpy(), 7.5 / 255)
    lab0 = im.chart[0][0].numpy()
    assert set(np.unique(lab0)) == {0, 4}                      # instance 1 took the overlap


def test_bad_shapes():
    with pytest.raises(ValueError, match="expected crops"):
        paste_iuv(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((1, 4)), [1.0], (5, 5))
