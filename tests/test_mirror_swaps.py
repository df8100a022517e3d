"""scripts/mirror_swaps.py: the share of an instance's keypoints that lie nearer their mirror vertex, and its bins."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import mirror_swaps as ms  # noqa: E402


def _body(n_pairs=30):
    """One instance: vertex i on the left at x = 10, its mirror i + n on the right at x = 40 (crop pixels)."""
    y = np.arange(n_pairs, dtype=np.float32)
    left = np.stack([np.full(n_pairs, 10.0, np.float32), y], 1)
    right = np.stack([np.full(n_pairs, 40.0, np.float32), y], 1)
    true_xy = np.concatenate([left, right])[None]  # (1, 2n, 2)
    mirror = np.concatenate([np.arange(n_pairs) + n_pairs, np.arange(n_pairs)])
    return true_xy, mirror


def test_a_whole_swap_gives_one_none_gives_zero_and_close_or_few_keypoints_give_no_share():
    true_xy, mirror = _body()
    visible = np.ones(true_xy.shape[:2], bool)
    one = np.ones(1)
    assert ms.mirror_share(true_xy + 1.0, visible, true_xy, mirror, one)[0] == 0.0
    swapped = true_xy[:, mirror] + 1.0  # every keypoint where its twin is
    assert ms.mirror_share(swapped, visible, true_xy, mirror, one)[0] == 1.0
    half = true_xy.copy()
    half[0, :15] = swapped[0, :15]  # 15 of 60 keypoints swapped
    assert np.isclose(ms.mirror_share(half, visible, true_xy, mirror, one)[0], 0.25)
    # 2 image pixels per crop pixel: the twins lie 15 crop pixels apart, still told apart; at 4 px, 7.5: not
    assert ms.mirror_share(swapped, visible, true_xy, mirror, np.array([2.0]))[0] == 1.0
    assert np.isnan(ms.mirror_share(swapped, visible, true_xy, mirror, np.array([4.0]))[0])
    few = visible.copy()
    few[0, 10:] = False  # 10 keypoints < MIN_KEYPOINTS
    assert np.isnan(ms.mirror_share(swapped, few, true_xy, mirror, one)[0])


def test_bins_count_every_instance_once_and_the_last_bin_is_closed():
    share = np.array([0.0, 0.1, 0.3, 0.49, 0.5, 1.0, np.nan])
    mpjpe = np.array([100, 110, 200, 210, 300, 320, 999.0])
    rows = ms.binned_rows("x", share, mpjpe)
    assert [r["instances"] for r in rows] == [2, 2, 2]  # the NaN instance is in no bin but in the total
    assert [r["mpjpe_mm"] for r in rows] == [105.0, 205.0, 310.0]
    assert np.isclose(rows[0]["instance_share"], round(2 / 7, 4)) and rows[2]["share_to"] == 1.0
    empty = ms.binned_rows("y", np.array([0.1]), np.array([5.0]))
    assert empty[1]["instances"] == 0 and np.isnan(empty[1]["mpjpe_mm"])
