"""pipeline.densepose.convert: against a port of Detectron2's converters and naive per-pixel loops."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from pipeline.densepose.convert import (chart_output_to_crops, chart_result_to_crop, cse_output_to_crops,
                                        cut_result_to_box, int_box_xywh, resize_chart, resize_window)
from pipeline.template.file import decode_iuv, encode_iuv

BOXES = [(10.3, 20.7, 60.9, 220.2),   # tall
         (5.0, 5.0, 205.5, 65.1),     # wide
         (0.0, 0.0, 47.99, 48.2),     # square-ish
         (3.2, 4.4, 3.9, 90.0)]       # less than a pixel wide -> width 1


def _chart_outputs(n, gen):
    fine = torch.randn(n, 25, 112, 112, generator=gen)
    coarse = torch.randn(n, 2, 112, 112, generator=gen)
    u = torch.rand(n, 25, 112, 112, generator=gen)
    v = torch.rand(n, 25, 112, 112, generator=gen)
    return fine, coarse, u, v


def _detectron2_chart_result(fine, coarse, u, v, box_xyxy):
    """A line-by-line port of Detectron2's per-instance chart converter
    (segm_to_mask.resample_fine_and_coarse_segm_tensors_to_bbox + chart_output_to_chart_result.
    resample_uv_tensors_to_bbox), with its loop over parts."""
    x, y, w, h = int_box_xywh(box_xyxy)
    w, h = max(int(w), 1), max(int(h), 1)
    coarse_bbox = F.interpolate(coarse, (h, w), mode="bilinear", align_corners=False).argmax(dim=1)
    labels = (F.interpolate(fine, (h, w), mode="bilinear", align_corners=False).argmax(dim=1)
              * (coarse_bbox > 0).long()).squeeze(0)
    u_bbox = F.interpolate(u, (h, w), mode="bilinear", align_corners=False)
    v_bbox = F.interpolate(v, (h, w), mode="bilinear", align_corners=False)
    uv = torch.zeros([2, h, w], dtype=torch.float32)
    for part_id in range(1, u_bbox.size(1)):
        uv[0][labels == part_id] = u_bbox[0, part_id][labels == part_id]
        uv[1][labels == part_id] = v_bbox[0, part_id][labels == part_id]
    return labels, uv


def test_int_box_matches_detectron2_make_int_box():
    assert int_box_xywh((10.3, 20.7, 60.9, 220.2)) == (10, 20, 50, 199)
    assert int_box_xywh((3.2, 4.4, 3.9, 90.0)) == (3, 4, 1, 85)


def test_chart_output_matches_detectron2_converter_at_box_size():
    gen = torch.Generator().manual_seed(0)
    fine, coarse, u, v = _chart_outputs(len(BOXES), gen)
    for i, box in enumerate(BOXES):
        _, _, w, h = int_box_xywh(box)
        ref_labels, ref_uv = _detectron2_chart_result(fine[[i]], coarse[[i]], u[[i]], v[[i]], box)
        got = chart_output_to_crops(fine[[i]], coarse[[i]], u[[i]], v[[i]], (h, w))
        assert got.labels.shape == (1, h, w) and got.uv.shape == (1, 2, h, w)
        assert torch.equal(got.labels[0].long(), ref_labels)
        assert torch.equal(got.uv[0], ref_uv)
        assert 0 < (ref_labels > 0).float().mean() < 1  # random logits: both fore- and background


def _bilinear_naive(img, H, W):
    """Per-pixel bilinear resize with align_corners=False, written from the definition. img: (h, w)."""
    h, w = img.shape
    out = np.zeros((H, W))
    for r in range(H):
        sy = max((r + 0.5) * h / H - 0.5, 0.0)
        y0 = min(int(math.floor(sy)), h - 1)
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for c in range(W):
            sx = max((c + 0.5) * w / W - 0.5, 0.0)
            x0 = min(int(math.floor(sx)), w - 1)
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[r, c] = ((1 - ly) * ((1 - lx) * img[y0, x0] + lx * img[y0, x1])
                         + ly * ((1 - lx) * img[y1, x0] + lx * img[y1, x1]))
    return out


def test_chart_output_to_crop_against_per_pixel_loop():
    gen = torch.Generator().manual_seed(1)
    fine, coarse, u, v = (t[:, :, :9, :7] for t in _chart_outputs(2, gen))  # tiny, non-square
    S = 6
    got = chart_output_to_crops(fine, coarse, u, v, S)
    for i in range(2):
        f = np.stack([_bilinear_naive(fine[i, k].double().numpy(), S, S) for k in range(25)])
        c = np.stack([_bilinear_naive(coarse[i, k].double().numpy(), S, S) for k in range(2)])
        uu = np.stack([_bilinear_naive(u[i, k].double().numpy(), S, S) for k in range(25)])
        vv = np.stack([_bilinear_naive(v[i, k].double().numpy(), S, S) for k in range(25)])
        for r in range(S):
            for col in range(S):
                lab = int(np.argmax(f[:, r, col])) if np.argmax(c[:, r, col]) > 0 else 0
                assert got.labels[i, r, col] == lab
                want = (uu[lab, r, col], vv[lab, r, col]) if lab > 0 else (0.0, 0.0)
                np.testing.assert_allclose(got.uv[i, :, r, col].numpy(), want, atol=1e-5)


def test_chart_output_hand_computed_2x2_to_4x4():
    # one part (label 3) everywhere foreground; U ramps 0 -> 1 left to right on a 2x2 grid
    fine = torch.zeros(1, 25, 2, 2)
    fine[0, 3] = 5.0
    coarse = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2).clone()
    u = torch.zeros(1, 25, 2, 2)
    u[0, 3] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    v = torch.zeros(1, 25, 2, 2)
    v[0, 3] = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    got = chart_output_to_crops(fine, coarse, u, v, 4)
    assert (got.labels == 3).all()
    # align_corners=False: output columns sample at x = -0.25 (clamped 0), 0.25, 0.75, 1.25 (-> 1)
    np.testing.assert_allclose(got.uv[0, 0, 0].numpy(), [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(got.uv[0, 1, :, 0].numpy(), [0.0, 0.25, 0.75, 1.0])


def test_background_where_coarse_says_so_and_empty_batch():
    fine = torch.zeros(1, 25, 4, 4)
    fine[0, 7] = 1.0
    coarse = torch.zeros(1, 2, 4, 4)
    coarse[0, 0] = 1.0  # background everywhere
    u = torch.ones(1, 25, 4, 4)
    got = chart_output_to_crops(fine, coarse, u, u, 8)
    assert (got.labels == 0).all() and (got.uv == 0).all()
    empty = chart_output_to_crops(*(t[:0] for t in (fine, coarse, u, u)), 8)
    assert empty.labels.shape == (0, 8, 8)
    with pytest.raises(ValueError, match="share a shape"):
        chart_output_to_crops(fine, coarse, u[:, :3], u, 8)


def test_cse_output_matches_detectron2_get_closest_vertices_mask():
    gen = torch.Generator().manual_seed(2)
    emb = torch.randn(len(BOXES), 16, 112, 112, generator=gen)
    coarse = torch.randn(len(BOXES), 2, 112, 112, generator=gen)
    for i, box in enumerate(BOXES):
        _, _, w, h = int_box_xywh(box)
        got = cse_output_to_crops(emb[[i]], coarse[[i]], (h, w))
        # modeling/cse/utils.py: F.interpolate default align_corners (None == False), argmax(0) > 0
        ref_e = F.interpolate(emb[[i]], size=(h, w), mode="bilinear")[0]
        ref_m = F.interpolate(coarse[[i]], size=(h, w), mode="bilinear")[0].argmax(0) > 0
        assert torch.equal(got.embedding[0], ref_e) and torch.equal(got.mask[0], ref_m)
    crops = cse_output_to_crops(emb, coarse, 32)
    assert crops.embedding.shape == (4, 16, 32, 32) and crops.mask.dtype == torch.bool


def _resize_chart_naive(labels, uv, S):
    """Per-pixel: nearest-exact label; mean of same-label bilinear neighbours' U, V."""
    h, w = labels.shape
    out_l = np.zeros((S, S), np.int64)
    out_uv = np.zeros((2, S, S))
    for r in range(S):
        for c in range(S):
            yn, xn = min(int((r + 0.5) * h / S), h - 1), min(int((c + 0.5) * w / S), w - 1)
            lab = labels[yn, xn]
            out_l[r, c] = lab
            sy, sx = max((r + 0.5) * h / S - 0.5, 0), max((c + 0.5) * w / S - 0.5, 0)
            y0, x0 = min(int(sy), h - 1), min(int(sx), w - 1)
            num, den = np.zeros(2), 0.0
            for yy, wy in ((y0, 1 - (sy - y0)), (min(y0 + 1, h - 1), sy - y0)):
                for xx, wx in ((x0, 1 - (sx - x0)), (min(x0 + 1, w - 1), sx - x0)):
                    if labels[yy, xx] == lab:
                        num += wy * wx * uv[:, yy, xx]
                        den += wy * wx
            out_uv[:, r, c] = 0 if lab == 0 else num / den
    return out_l, out_uv


@pytest.mark.parametrize("hw", [(13, 5), (4, 11), (7, 7), (40, 23)])
def test_result_to_crop_against_naive_loop(hw):
    gen = np.random.default_rng(hw[0] * 100 + hw[1])
    labels = gen.integers(0, 4, size=hw)
    uv = gen.random((2, *hw)).astype(np.float32)
    uv[:, labels == 0] = 0
    got_l, got_uv = chart_result_to_crop(torch.from_numpy(labels), torch.from_numpy(uv), 9)
    ref_l, ref_uv = _resize_chart_naive(labels, uv, 9)
    assert np.array_equal(got_l.numpy(), ref_l)
    np.testing.assert_allclose(got_uv.numpy(), ref_uv, atol=1e-5)


def test_result_to_crop_is_torch_nearest_and_bilinear_inside_one_part():
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 25, (37, 21), generator=gen)
    uv = torch.rand(2, 37, 21, generator=gen)
    lab, _ = resize_chart(labels, uv, (16, 16))
    ref = F.interpolate(labels[None, None].float(), (16, 16), mode="nearest-exact")[0, 0].long()
    assert torch.equal(lab.long(), ref)
    one = torch.full((37, 21), 5)
    _, got_uv = resize_chart(one, uv, (16, 16))
    ref_uv = F.interpolate(uv[None], (16, 16), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(got_uv, ref_uv, atol=1e-6, rtol=0)


def test_missing_labels_and_nan_uv():
    labels = torch.tensor([[1, 1], [30, 1]])
    uv = torch.tensor([[[0.2, float("nan")], [0.5, 0.4]], [[0.1, 0.1], [0.5, 0.3]]])
    lab, out = resize_chart(labels, uv, 2)
    assert lab.tolist() == [[1, 1], [255, 1]]
    assert torch.isnan(out[:, 1, 0]).all()          # missing label -> NaN
    assert torch.isnan(out[:, 0, 1]).all()          # its only same-label source is NaN
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([0.2, 0.1]))


def test_encode_decode_iuv_detectron2_quantisation():
    labels = np.array([[0, 3], [24, 255]])
    uv = np.array([[[0.7, 1.0], [0.999, 0.5]], [[0.3, -0.1], [0.0, 0.5]]], np.float32)
    iuv = encode_iuv(labels, uv)
    assert iuv.tolist() == [[[0, 0, 0], [3, 255, 0]], [[24, 254, 0], [0, 0, 0]]]
    lab, dec = decode_iuv(iuv)
    assert lab.tolist() == [[0, 3], [24, 0]]
    np.testing.assert_allclose(dec[:, 0, 1], [1.0, 0.5 / 255])
    assert (dec[:, 0, 0] == 0).all()
    iuv[0, 0, 0] = 99
    assert decode_iuv(iuv)[0][0, 0] == 255 and np.isnan(decode_iuv(iuv)[1][:, 0, 0]).all()


def _bilinear_at(img, ys, xs):
    """Bilinear samples of img (h, w) at pixel coordinates ys (H,), xs (W,) (clamped to the edges)."""
    h, w = img.shape
    out = np.zeros((len(ys), len(xs)))
    for r, sy in enumerate(np.clip(ys, 0, h - 1)):
        y0 = min(int(math.floor(sy)), h - 1)
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for c, sx in enumerate(np.clip(xs, 0, w - 1)):
            x0 = min(int(math.floor(sx)), w - 1)
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[r, c] = ((1 - ly) * ((1 - lx) * img[y0, x0] + lx * img[y0, x1])
                         + ly * ((1 - lx) * img[y1, x0] + lx * img[y1, x1]))
    return out


def test_resize_window_of_the_whole_map_is_interpolate():
    t = torch.randn(3, 5, 112, 112, generator=torch.Generator().manual_seed(6))
    got = resize_window(t, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3), (17, 23))
    ref = F.interpolate(t.double(), (17, 23), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got.double(), ref, atol=1e-6, rtol=0)


def test_resize_window_samples_the_window_against_per_pixel_loop():
    t = torch.randn(2, 1, 9, 7, generator=torch.Generator().manual_seed(7))
    window = torch.tensor([[0.0, 0.0, 0.5, 0.25], [0.3, 0.6, 1.0, 1.0]])
    H, W = 5, 6
    got = resize_window(t, window, (H, W))
    for i, (u0, v0, u1, v1) in enumerate(window.tolist()):
        xs = (u0 + (np.arange(W) + 0.5) * (u1 - u0) / W) * 7 - 0.5
        ys = (v0 + (np.arange(H) + 0.5) * (v1 - v0) / H) * 9 - 0.5
        np.testing.assert_allclose(got[i, 0].numpy(), _bilinear_at(t[i, 0].double().numpy(), ys, xs), atol=1e-5)


def test_full_windows_leave_the_converters_bit_exact():
    gen = torch.Generator().manual_seed(8)
    fine, coarse, u, v = _chart_outputs(2, gen)
    full = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    a, b = chart_output_to_crops(fine, coarse, u, v, 16), chart_output_to_crops(fine, coarse, u, v, 16, window=full)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.uv, b.uv)
    half = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.0, 1.0, 1.0]])
    c = chart_output_to_crops(fine, coarse, u, v, 16, window=half)
    assert torch.equal(c.labels[0], a.labels[0]) and not torch.equal(c.labels[1], a.labels[1])
    e = cse_output_to_crops(u, coarse, 16, window=full)
    assert torch.equal(e.embedding, cse_output_to_crops(u, coarse, 16).embedding)


def test_cut_result_to_box():
    labels = torch.arange(50 * 70).reshape(70, 50)
    uv = torch.stack([labels, -labels]).float()
    # int box (-20, -10, 50, 70) clipped to (0, 0, 30, 60): rows 10.., columns 20..
    lab, cut_uv = cut_result_to_box(labels, uv, (-20.5, -10.2, 30.0, 60.0), (0.0, 0.0, 30.0, 60.0))
    assert torch.equal(lab, labels[10:70, 20:50]) and torch.equal(cut_uv, uv[:, 10:70, 20:50])
    lab, _ = cut_result_to_box(labels, uv, (0.0, 0.0, 50.0, 70.0), (49.5, 0.0, 50.0, 70.0))  # at least 1 pixel
    assert lab.shape == (70, 1) and torch.equal(lab, labels[:, 49:50])


def test_photo_crops_sample_the_box_on_the_crop_grid():
    from pipeline.densepose.convert import photo_crops

    h, w = 40, 60
    yy, xx = np.mgrid[0:h, 0:w]
    photo = np.stack([xx * 4, yy * 6, np.full_like(xx, 200)], axis=-1).astype(np.uint8)  # R = 4x, G = 6y
    crops = photo_crops(photo, np.array([[10.0, 5.0, 30.0, 25.0], [50.0, 30.0, 70.0, 50.0]]), 10)
    assert crops.shape == (2, 10, 10, 3) and crops.dtype == np.uint8
    # crop pixel (r, c) samples the photo at x = x0 + (c + .5) * 2 - .5, y = y0 + (r + .5) * 2 - .5
    assert crops[0, 0, 0, 0] == photo[5, 10, 0] + 2 and crops[0, 9, 9, 1] == photo[23, 28, 1] + 3
    assert (crops[1, -1, -1] == 0).all()  # outside the photo: black
