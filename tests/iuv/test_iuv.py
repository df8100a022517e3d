"""Each repair on small hand-built arrays, with exact expected results."""

import numpy as np
import pytest

from pipeline.iuv.repair import RepairOptions, iuv_quality, missing_pixels, repair_chart, repair_cse
from pipeline.template.file import decode_uv, encode_iuv

S = 24


def two_parts():
    """A 12x16 rectangle: part 3 on the left (U=0.2, V=0.4), part 4 on the right (U=0.9, V=0.1)."""
    labels = np.zeros((S, S), np.uint8)
    uv = np.full((2, S, S), np.nan, np.float32)
    labels[6:18, 4:12], labels[6:18, 12:20] = 3, 4
    uv[0][labels == 3], uv[1][labels == 3] = 0.2, 0.4
    uv[0][labels == 4], uv[1][labels == 4] = 0.9, 0.1
    return labels, uv


def test_encode_is_detectron2s_and_decode_takes_bin_centres():
    labels = np.array([[0, 1, 24]], np.uint8)
    uv = np.array([[[0.5, 0.0, 1.0]], [[0.5, 0.999, 0.5]]], np.float32)
    iuv = encode_iuv(labels, uv)
    assert iuv.dtype == np.uint8 and iuv.shape == (1, 3, 3)
    assert iuv[0].tolist() == [[0, 0, 0], [1, 0, 254], [24, 255, 127]]  # I raw, never scaled
    assert decode_uv(np.array([0, 127, 255], np.uint8)).tolist() == pytest.approx([0.5 / 255, 127.5 / 255, 1.0])


def test_clean_input_is_left_exactly_as_it_is():
    labels, uv = two_parts()
    out_l, out_uv, counts, filled = repair_chart(labels, uv, RepairOptions(min_component_area=5))
    assert np.array_equal(out_l, labels) and not filled.any()
    assert np.array_equal(out_uv[:, labels > 0], uv[:, labels > 0]) and np.all(out_uv[:, labels == 0] == 0)
    assert tuple(counts) == (0, 0, 0, 0)


def test_nan_blob_inside_one_part_is_inpainted_from_that_part_only():
    labels, uv = two_parts()
    uv[:, 10:13, 9:12] = np.nan  # touches the border with part 4 (column 12)
    out_l, out_uv, counts, filled = repair_chart(labels, uv)
    assert np.array_equal(out_l, labels)
    assert np.allclose(out_uv[0][labels == 3], 0.2, atol=1e-4) and np.allclose(out_uv[1][labels == 3], 0.4, atol=1e-4)
    assert np.allclose(out_uv[0][labels == 4], 0.9)
    assert counts.pixels_filled == 9 and counts.holes_filled == 0
    assert filled[10:13, 9:12].all() and filled.sum() == 9  # exactly the inpainted pixels


def test_missing_labels_take_the_nearest_valid_part_never_a_mean():
    labels, uv = two_parts()
    labels[8:16, 6:11] = 255  # inside part 3, nearer part 3 pixels than part 4
    uv[:, 8:16, 6:11] = np.nan
    out_l, out_uv, counts, filled = repair_chart(labels, uv)
    assert np.all(out_l[8:16, 6:11] == 3)  # never 255, never (3 + 4) / 2
    assert np.allclose(out_uv[0][out_l == 3], 0.2, atol=1e-4)
    assert counts.pixels_filled == 40 and filled[8:16, 6:11].all() and filled.sum() == 40


def test_hole_spanning_a_part_border_is_filled_from_each_side():
    labels, uv = two_parts()
    labels[10:14, 9:16] = 0  # a hole: columns 9..11 in part 3, 12..15 in part 4
    uv[:, 10:14, 9:16] = np.nan
    out_l, out_uv, counts, filled = repair_chart(labels, uv)
    assert np.all(out_l[10:14, 9:12] == 3) and np.all(out_l[10:14, 12:16] == 4)
    assert filled[10:14, 9:16].all() and filled.sum() == 28  # filled holes are filled pixels
    assert np.allclose(out_uv[0, 10:14, 9:12], 0.2, atol=1e-4) and np.allclose(out_uv[0, 10:14, 12:16], 0.9, atol=1e-4)
    assert counts.holes_filled == 28 and counts.pixels_filled == 28
    off_l, _, off_counts, _ = repair_chart(labels, uv, RepairOptions(fill_holes=False))
    assert np.all(off_l[10:14, 9:16] == 0) and off_counts.holes_filled == 0


def test_speck_components_below_the_minimum_area_are_dropped():
    labels, uv = two_parts()
    labels[1, 1:3] = 5
    uv[:, 1, 1:3] = 0.5
    out_l, _, counts, _ = repair_chart(labels, uv, RepairOptions(min_component_area=5))
    assert np.all(out_l[1, 1:3] == 0) and counts.components_dropped == 1 and counts.pixels_dropped == 2
    kept, _, c2, _ = repair_chart(labels, uv, RepairOptions(min_component_area=0))
    assert np.all(kept[1, 1:3] == 5) and c2.components_dropped == 0


def test_all_nan_instance_becomes_empty_and_counted():
    labels = np.zeros((S, S), np.uint8)
    labels[5:10, 5:10] = 255
    uv = np.full((2, S, S), np.nan, np.float32)
    out_l, out_uv, counts, _ = repair_chart(labels, uv)
    assert not out_l.any() and not out_uv.any()
    assert counts.pixels_dropped == 25 and counts.pixels_filled == 0


def test_part_with_labels_but_no_uv_anywhere_is_dropped():
    labels, uv = two_parts()
    uv[:, labels == 4] = np.nan
    out_l, _, counts, filled = repair_chart(labels, uv)
    assert not np.any(out_l == 4) and np.all(out_l[labels == 3] == 3)
    assert counts.pixels_dropped == 96 and counts.pixels_filled == 0 and not filled.any()  # dropped, not filled


def test_empty_instance_stays_empty():
    out_l, out_uv, counts, _ = repair_chart(np.zeros((S, S), np.uint8), np.full((2, S, S), np.nan, np.float32))
    assert not out_l.any() and not out_uv.any() and tuple(counts) == (0, 0, 0, 0)


def test_out_of_range_uv_is_missing():
    labels, uv = two_parts()
    uv[0, 7, 5] = 1.7
    bad_label, bad_uv = missing_pixels(labels, uv)
    assert bad_uv.sum() == 1 and bad_uv[7, 5] and not bad_label.any()


def test_smoothing_stays_within_parts():
    labels, uv = two_parts()
    rng = np.random.default_rng(0)
    noisy = uv + np.where(labels > 0, rng.normal(0, 0.02, uv.shape), 0).astype(np.float32)
    _, out_uv, _, _ = repair_chart(labels, noisy, RepairOptions(smooth_sigma=2.0))
    # means per part stay at their own values: nothing leaks across the border
    assert abs(out_uv[0][labels == 3].mean() - 0.2) < 0.01 and abs(out_uv[0][labels == 4].mean() - 0.9) < 0.01
    assert out_uv[0][labels == 3].std() < noisy[0][labels == 3].std() / 2
    _, flat, _, filled = repair_chart(labels, uv, RepairOptions(smooth_sigma=2.0))
    assert not filled.any()  # smoothing changes U, V but fills nothing
    assert np.allclose(flat[0][labels == 3], 0.2, atol=1e-5) and np.allclose(flat[0][labels == 4], 0.9, atol=1e-5)


def test_cse_mask_repair_and_nearest_embedding():
    mask = np.zeros((S, S), bool)
    mask[4:20, 4:20] = True
    emb = np.zeros((3, S, S), np.float32)
    emb[:, :, :12] = np.array([1, 0, 0], np.float32)[:, None, None]
    emb[:, :, 12:] = np.array([0, 1, 0], np.float32)[:, None, None]
    emb[:, 8:10, 8:10] = np.nan
    mask[14:16, 15:17] = False  # a hole
    out_m, out_e, counts, filled = repair_cse(mask, emb, RepairOptions())
    assert out_m[14:16, 15:17].all() and counts.holes_filled == 4
    assert filled[14:16, 15:17].all() and filled[8:10, 8:10].all() and filled.sum() == 8
    assert np.array_equal(out_e[:, 8, 8], [1, 0, 0]) and np.array_equal(out_e[:, 15, 16], [0, 1, 0])
    assert counts.pixels_filled == 8 and not out_e[:, ~out_m].any()


def test_quality_counts_missing_as_wrong():
    labels, uv = two_parts()
    gt = encode_iuv(labels, uv)[None]
    perfect = iuv_quality(labels[None], uv[None], gt)
    assert perfect["part_accuracy"] == 1.0 and perfect["uv_error"] < 0.5 / 255 + 1e-6
    broken = labels.copy()
    broken[6:9, 4:12] = 255
    q = iuv_quality(broken[None], uv[None], gt)
    assert q["part_accuracy"] == pytest.approx(1 - 24 / 192)
    assert q["uv_error"] == pytest.approx(24 / 192, abs=1e-3)


def test_only_holes_up_to_the_maximum_area_are_filled():
    labels, uv = two_parts()
    labels[8:10, 5:7] = 0      # 4 pixels: a dropout hole
    labels[11:17, 13:19] = 0   # 36 pixels: a real gap
    uv[:, labels == 0] = np.nan
    out_l, _, counts, _ = repair_chart(labels, uv, RepairOptions(max_hole_area=10))
    assert np.all(out_l[8:10, 5:7] == 3) and np.all(out_l[11:17, 13:19] == 0) and counts.holes_filled == 4
