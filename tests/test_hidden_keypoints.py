"""scripts/hidden_keypoints.py: the ROC AUC and the rows that compare hidden-keypoint flags."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import hidden_keypoints as hk  # noqa: E402


def test_roc_auc_is_one_for_a_perfect_flag_a_half_for_ties_and_matches_the_pair_count():
    hidden = np.array([False, False, True, True])
    assert hk.roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), hidden) == 1.0
    assert hk.roc_auc(np.zeros(4), hidden) == 0.5
    rng = np.random.default_rng(0)
    s, lab = rng.normal(size=200), rng.random(200) < 0.3
    pairs = (s[lab][:, None] > s[~lab][None]).mean()  # continuous scores: no ties
    assert hk.roc_auc(s, lab) == pytest.approx(pairs)
    with pytest.raises(ValueError, match="both"):
        hk.roc_auc(s, np.zeros(200, bool))


def test_flag_rows_cut_every_flag_at_the_first_flags_share():
    hidden = np.array([True, True, False, False, False, False, False, False])
    scores = {"normal_z": np.array([0.5, 0.2, 0.3, -0.5, -0.4, -0.3, -0.2, -0.1]),  # 3 of 8 above 0
              "residual": np.arange(8, 0, -1, dtype=float)}  # perfect ranking
    rows = {r["flag"]: r for r in hk.flag_rows(scores, hidden, instances=1)}
    assert rows["normal_z"]["flagged_share"] == pytest.approx(3 / 8, abs=1e-3)
    assert rows["normal_z"]["precision"] == pytest.approx(2 / 3, abs=1e-3) and rows["normal_z"]["recall"] == 1.0
    assert rows["residual"]["auc"] == 1.0 and rows["residual"]["recall"] == 1.0
    assert rows["residual"]["flagged_share"] <= 3 / 8


def test_hidden_positions_tell_mirror_patches_from_silhouettes():
    true_xy = np.array([[[0, 0], [10, 0], [0, 10], [10, 10]]], float)  # vertices 0 <-> 1 and 2 <-> 3 mirror
    mirror = np.array([1, 0, 3, 2])
    xy = true_xy.copy()
    xy[0, 0] = [9, 0]  # a mirror patch: vertex 0 named where its mirror is seen
    xy[0, 2] = [0, 12]  # a silhouette: vertex 2 named 2 px off, nearer its own projection
    visible = np.ones((1, 4), bool)
    hidden = np.array([[True, False, True, False]])
    out = hk.hidden_positions(xy, visible, hidden, true_xy, mirror)
    assert out == {"hidden_median_px": 5.5, "visible_median_px": 0.0, "hidden_nearer_mirror": 0.5}
