"""The DensePose layout table (pipeline/template/densepose_layout.py) is what scripts/measure_densepose_layout.py
measures on DensePose's own files (../shared/densepose-reference/, not in the repository; skipped without them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.template.densepose_layout import ORIENTATION_SHARE, OUTLINE, OUTLINE_CORNERS, TORSO_ARMPIT_U

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "densepose-reference"
pytestmark = pytest.mark.skipif(not (REFERENCE / "texture_atlas_200.png").exists(),
                                reason=f"DensePose's atlas and demo output are not at {REFERENCE}")


@pytest.fixture(scope="module")
def measure():
    spec = importlib.util.spec_from_file_location("measure_densepose_layout",
                                                  ROOT / "scripts" / "measure_densepose_layout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_real_atlas_and_demo_give_the_layout_table(measure):
    atlas = cv2.imread(str(REFERENCE / "texture_atlas_200.png"), cv2.IMREAD_GRAYSCALE)
    iuv = cv2.imread(str(REFERENCE / "demo_im_IUV.png"))
    inds = cv2.imread(str(REFERENCE / "demo_im_INDS.png"), cv2.IMREAD_UNCHANGED)
    for p in range(1, 25):
        outline, corners = measure.tile_outline(atlas, p)
        assert np.allclose(outline, OUTLINE[p], atol=6e-4) and list(corners) == list(OUTLINE_CORNERS[p]), p
    shares = measure.orientation_shares(iuv, inds)
    assert all(abs(shares[p] - ORIENTATION_SHARE[p]) < 0.006 for p in range(1, 25))
    seams = measure.torso_landmarks(iuv, inds)
    assert abs(seams[(1, 17)][2] - TORSO_ARMPIT_U[1]) < 0.04 and abs(seams[(2, 15)][2] - TORSO_ARMPIT_U[2]) < 0.01
