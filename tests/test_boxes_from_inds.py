"""scripts/boxes_from_inds.py: a boxes JSON for DensePose's *_IUV.png + *_INDS.png alone, which the precomputed
source then imports person by person (hand-made PNGs, and DensePose's own demo output when it is there)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.core.config import load_params_dict
from pipeline.core.errors import InputError
from pipeline.densepose.precomputed import read_iuv_folder, write_precomputed_store
from pipeline.densepose.store import open_densepose
from pipeline.iuv.repair import RepairOptions
from pipeline.iuv.store import open_iuv
from pipeline.iuv.write import repair_store

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "densepose-reference"  # real DensePose data, never copied into the repository
_SPEC = importlib.util.spec_from_file_location("boxes_from_inds", ROOT / "scripts" / "boxes_from_inds.py")
boxes_from_inds = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(boxes_from_inds)


def _pair(folder: Path, stem: str, people: dict[int, tuple[int, int, int, int]], size=(40, 60)) -> None:
    """``stem``_IUV.png and ``stem``_INDS.png: each person (value -> rows r0:r1, columns c0:c1) of part 5."""
    iuv = np.zeros((*size, 3), np.uint8)
    inds = np.zeros(size, np.uint8)
    for value, (r0, r1, c0, c1) in people.items():
        iuv[r0:r1, c0:c1] = (5, 100, 150)
        inds[r0:r1, c0:c1] = value
    assert cv2.imwrite(str(folder / f"{stem}_IUV.png"), iuv) and cv2.imwrite(str(folder / f"{stem}_INDS.png"), inds)


def test_one_box_per_instance_its_pixels_bounding_box_and_value(tmp_path):
    _pair(tmp_path, "a", {9: (2, 10, 3, 7), 4: (20, 40, 30, 60)})
    _pair(tmp_path, "b", {})
    assert boxes_from_inds.main([str(tmp_path)]) is None
    spec = json.loads((tmp_path / "boxes.json").read_text())
    a, b = spec["images"]
    assert a == {"file_name": "a.jpg", "iuv": "a_IUV.png", "inds": "a_INDS.png",
                 "boxes": [[30.0, 20.0, 60.0, 40.0], [3.0, 2.0, 7.0, 10.0]], "scores": [1.0, 1.0],
                 "inds_values": [4, 9]}
    assert b["file_name"] == "b.jpg" and b["boxes"] == [] and b["inds_values"] == []
    (im, _), skipped = read_iuv_folder(tmp_path, tmp_path / "boxes.json")
    assert skipped == [] and [int((lab == 5).sum()) for lab, _ in im.chart] == [20 * 30, 8 * 4]


def test_named_files_out_and_image_extension(tmp_path):
    _pair(tmp_path, "a", {1: (0, 5, 0, 5)})
    _pair(tmp_path, "c", {2: (0, 5, 0, 5)})
    out = tmp_path / "sub" / "mine.json"
    boxes_from_inds.main([str(tmp_path / "c_IUV.png"), "--out", str(out), "--image-ext", ".png"])
    (entry,) = json.loads(out.read_text())["images"]
    assert entry["file_name"] == "c.png" and entry["inds_values"] == [2]


@pytest.mark.parametrize("setup,match", [
    (lambda d: _pair(d, "a", {1: (0, 5, 0, 5)}) or (d / "a_INDS.png").unlink(), r"a_IUV.png: its index map .* does "
                                                                                  "not exist"),
    (lambda d: _pair(d, "a", {1: (0, 5, 0, 5)}) or cv2.imwrite(str(d / "a_INDS.png"), np.zeros((3, 3), np.uint8)),
     r"a_INDS.png: 3x3 pixels, but .*a_IUV.png has 60x40: not its index map"),
    (lambda d: (d / "a_IUV.png").write_bytes(b"junk"), r"a_IUV.png: cannot read it as a 3-channel IUV image"),
    (lambda d: None, r"no \*_IUV.png file in this folder"),
])
def test_bad_inputs_are_errors_naming_the_file_and_nothing_is_written(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(InputError, match=match):
        boxes_from_inds.main([str(tmp_path)])
    assert not (tmp_path / "boxes.json").exists()


def test_pngs_of_several_folders_are_refused(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        _pair(tmp_path / sub, "a", {1: (0, 5, 0, 5)})
    with pytest.raises(InputError, match="several folders"):
        boxes_from_inds.main([str(tmp_path / "x"), str(tmp_path / "y" / "a_IUV.png")])


def test_command_line_error_is_one_line_and_status_2(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "boxes_from_inds.py"), str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "error: " in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(not (REFERENCE / "demo_im_INDS.png").is_file(),
                    reason=f"DensePose's demo output is not in {REFERENCE} (real data kept outside the repository)")
def test_densepose_demo_output_imports_all_13_people(tmp_path):
    """DensePose-RCNN's output for its demo photo: INDS values 7..19. With the script's JSON every person is
    imported with its own pixels (before, 12 of the 13 crops came out empty)."""
    for name in ("demo_im_IUV.png", "demo_im_INDS.png"):
        (tmp_path / name).symlink_to(REFERENCE / name)
    boxes_from_inds.main([str(tmp_path)])
    (entry,) = json.loads((tmp_path / "boxes.json").read_text())["images"]
    assert entry["inds_values"] == list(range(7, 20)) and entry["file_name"] == "demo_im.jpg"
    params = load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(tmp_path),
                                               "boxes_json": str(tmp_path / "boxes.json")}}).precomputed
    template = type("T", (), {"hash": "abc", "source": "anny", "topology": "t",
                              "embedding": np.zeros((30, 16), np.float32)})()
    assert write_precomputed_store(params, 32, template, tmp_path / "dp.zarr").metrics()["instances"] == 13
    labels = open_densepose(tmp_path / "dp.zarr", template_hash="abc", kind="chart")["labels"][:]
    assert (((labels > 0) & (labels < 255)).sum(axis=(1, 2)) > 0).all()

    # the iuv stage counts foreground in image pixels: the 2-pixel person (value 11, a 2 x 1 box that fills its
    # 32 x 32 crop) and the 64-pixel one (value 9) are under the default iuv.min_foreground of 100
    p = load_params_dict({}).iuv
    s = repair_store(tmp_path / "dp.zarr", tmp_path / "iuv.zarr", RepairOptions.from_params(p), p.min_foreground, 1,
                     progress=False)
    kept = open_iuv(tmp_path / "iuv.zarr")["source_index"][:].tolist()
    assert s.instances_out == 11 and sorted(set(range(13)) - set(kept)) == [2, 4]  # values 9 and 11
