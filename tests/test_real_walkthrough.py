"""Real DensePose output, end to end (README: "Your own DensePose output"): DensePose-RCNN's IUV and INDS images of
the demo street photo -> boxes JSON -> densepose (precomputed, iuv_png) -> iuv -> keypoints -> train
(self-supervised) -> evaluate without ground truth -> reports/index.html. Reads ../shared/densepose-reference/
(CC BY-NC 4.0, never copied into the repository); skipped with the reason when that folder is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "densepose-reference"
pytestmark = pytest.mark.skipif(not (REFERENCE / "demo_im_IUV.png").exists(),
                                reason=f"DensePose's real demo output is not at {REFERENCE}")


def _stage(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def _params(tmp: Path, boxes: Path, **template) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["densepose"]["source"] = "precomputed"
    params["precomputed"].update(format="iuv_png", iuv_folder=str(REFERENCE), boxes_json=str(boxes))
    params["train"].update(epochs=40)
    params["template"].update(template)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's boxes JSON and the default template, written once."""
    tmp = tmp_path_factory.mktemp("real_demo")
    boxes = tmp / "boxes.json"
    run = subprocess.run([sys.executable, "scripts/boxes_from_inds.py", str(REFERENCE / "demo_im_IUV.png"), "--out",
                          str(boxes), "--image-ext", ".jpg"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    params = _params(tmp, boxes)
    run = _stage("template", "--params", str(params), "--out", str(tmp / "template.npz"), "--png", str(tmp / "t.png"))
    assert run.returncode == 0, run.stderr
    return tmp, boxes, params


@pytest.mark.slow
def test_real_demo_walkthrough_end_to_end(demo):
    tmp, boxes, params = demo
    p, t = str(params), str(tmp / "template.npz")
    assert len(json.loads(boxes.read_text())["images"][0]["boxes"]) == 13
    run = _stage("densepose", "--params", p, "--template", t, "--out", str(tmp / "densepose.zarr"), "--png",
                 str(tmp / "dp.png"), "--metrics", str(tmp / "dp.json"))
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp / "dp.json").read_text())["instances"] == 13  # every INDS value, not only 1..n
    import zarr

    rgb = zarr.open_group(str(tmp / "densepose.zarr"), mode="r")["rgb"][:]  # the photo under each box, for reports
    assert rgb.shape == (13, 112, 112, 3) and rgb.reshape(13, -1).std(axis=1).min() > 5
    run = _stage("iuv", "--params", p, "--densepose", str(tmp / "densepose.zarr"), "--out", str(tmp / "iuv.zarr"),
                 "--preview", str(tmp / "preview"), "--metrics", str(tmp / "iuv.json"), "--frames", str(tmp / "frames"))
    assert run.returncode == 0, run.stderr
    run = _stage("keypoints", "--params", p, "--iuv", str(tmp / "iuv.zarr"), "--template", t, "--out",
                 str(tmp / "keypoints.zarr"), "--metrics", str(tmp / "keypoints.json"))
    assert run.returncode == 0, run.stderr
    kept = json.loads((tmp / "keypoints.json").read_text())
    run = _stage("lbo", "--params", p, "--template", t, "--out", str(tmp / "lbo.npz"), "--png", str(tmp / "lbo.png"))
    assert run.returncode == 0, run.stderr
    run = _stage("train", "--params", p, "--keypoints", str(tmp / "keypoints.zarr"), "--template", t, "--lbo",
                 str(tmp / "lbo.npz"), "--out", str(tmp / "model.pt"), "--live", str(tmp / "train"))
    assert run.returncode == 0, run.stderr
    run = _stage("evaluate", "--params", p, "--model", str(tmp / "model.pt"), "--keypoints", str(tmp / "keypoints.zarr"),
                 "--template", t, "--metrics", str(tmp / "eval.json"), "--parts", str(tmp / "parts.csv"),
                 "--segmentation", str(tmp / "seg.csv"), "--reports", str(tmp / "reports"), "--iuv",
                 str(tmp / "iuv.zarr"), "--densepose", str(tmp / "densepose.zarr"))
    assert run.returncode == 0, run.stderr
    ev = json.loads((tmp / "eval.json").read_text())
    assert ev["ground_truth"] is False and ev["instances"] >= 3, (ev, kept)
    # the lifted bodies re-project onto the real keypoints within a few percent of the box
    assert np.isfinite(ev["reproj2d_mean_px"]) and ev["reproj2d_median_box_pct"] < 8.0, ev
    assert (tmp / "reports" / "index.html").stat().st_size > 1000
    # test-time refinement (eval.refine_steps, on by default) fits the real keypoints closer than the network alone,
    # which eval.json also gives (network_alone: the same model unrefined, on the same instances)
    network_alone = ev["network_alone"]
    assert ev["reproj2d_mean_px"] < 0.8 * network_alone["reproj2d_mean_px"], ev
    print(f"real demo: 2D re-projection {network_alone['reproj2d_mean_px']:.1f} px mean without refinement, "
          f"{ev['reproj2d_mean_px']:.1f} px with it ({ev['reproj2d_median_box_pct']:.1f} % of the box diagonal, median)")


def test_real_chart_output_with_own_charts_is_refused_by_the_stage(demo, tmp_path):
    tmp, boxes, _ = demo
    params = _params(tmp_path, boxes, charts="own")
    run = _stage("template", "--params", str(params), "--out", str(tmp_path / "own.npz"), "--png",
                 str(tmp_path / "own.png"))
    assert run.returncode == 0, run.stderr
    run = _stage("densepose", "--params", str(params), "--template", str(tmp_path / "own.npz"), "--out",
                 str(tmp_path / "dp.zarr"), "--png", str(tmp_path / "dp.png"), "--metrics", str(tmp_path / "dp.json"))
    assert run.returncode != 0
    assert "template.charts: densepose" in run.stderr
    assert not (tmp_path / "dp.zarr").exists() and not (tmp_path / "dp.json").exists()
