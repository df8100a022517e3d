"""Writes the boxes JSON of ``densepose.source: precomputed``, ``precomputed.format: iuv_png`` for DensePose's
full-frame output alone: ``*_IUV.png`` and its instance map ``*_INDS.png`` (the original Detectron's
``infer_simple.py`` writes both, and no boxes).

One box per instance of the index map (each value but 0): the bounding box of its pixels, score 1.0, and its
value in ``inds_values``, so the import reads every instance by its own value (the original Detectron numbers
them by the detector's rank, e.g. 7..19, not 1..n)::

    python scripts/boxes_from_inds.py /data/dp                     # every *_IUV.png with its *_INDS.png
    python scripts/boxes_from_inds.py /data/dp/a_IUV.png --out /data/dp/boxes.json --image-ext .png

then ``precomputed.format: iuv_png``, ``precomputed.iuv_folder: /data/dp``, ``precomputed.boxes_json:
/data/dp/boxes.json``. The PNGs must share one folder (the JSON names them relative to it); ``file_name`` is the
IUV name without ``_IUV.png`` plus ``--image-ext`` (what ``precomputed.test_list`` lists). A PNG that cannot be
read, an IUV without its index map or of another size is an error naming it, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.errors import InputError  # noqa: E402
from pipeline.core.io import atomic_path  # noqa: E402
from pipeline.core.stage import cli  # noqa: E402
from pipeline.densepose.precomputed import instance_boxes  # noqa: E402

log = logging.getLogger("boxes_from_inds")

IUV_SUFFIX, INDS_SUFFIX = "_IUV.png", "_INDS.png"


def iuv_files(paths: list[str]) -> list[Path]:
    """The IUV PNGs named, or found (``*_IUV.png``, sorted) in the folders named; refused unless they share a folder."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob(f"*{IUV_SUFFIX}"))
            if not found:
                raise InputError(f"{p}: no *{IUV_SUFFIX} file in this folder")
            files += found
        elif p.name.endswith(IUV_SUFFIX):
            files.append(p)
        else:
            raise InputError(f"{p}: neither a folder nor a *{IUV_SUFFIX} file")
    folders = sorted({str(f.parent) for f in files})
    if len(folders) > 1:
        raise InputError(f"the IUV PNGs lie in several folders ({', '.join(folders)}): the boxes JSON names them "
                         "relative to one folder (precomputed.iuv_folder); run once per folder")
    return files


def image_entry(iuv_path: Path, image_ext: str) -> dict:
    """The boxes JSON entry of one IUV PNG and its index map (module docstring)."""
    from pipeline.core.image_files import ImageTooLargeError, read_data_image

    inds_path = iuv_path.with_name(iuv_path.name[: -len(IUV_SUFFIX)] + INDS_SUFFIX)

    def read(path: Path):  # (H, W[, C]) array or None
        try:
            return read_data_image(path)
        except ImageTooLargeError:
            raise
        except InputError:
            return None

    iuv = read(iuv_path)
    if iuv is None or iuv.ndim != 3 or iuv.shape[2] != 3:
        raise InputError(f"{iuv_path}: cannot read it as a 3-channel IUV image")
    if not inds_path.is_file():
        raise InputError(f"{iuv_path}: its index map {inds_path} does not exist (DensePose writes it beside the IUV "
                         "image); the boxes come from it")
    inds = read(inds_path)
    if inds is None:
        raise InputError(f"{inds_path}: cannot read it as an image")
    inds = inds if inds.ndim == 2 else inds[..., 0]
    if inds.shape != iuv.shape[:2]:
        raise InputError(f"{inds_path}: {inds.shape[1]}x{inds.shape[0]} pixels, but {iuv_path} has "
                         f"{iuv.shape[1]}x{iuv.shape[0]}: not its index map")
    values, boxes = instance_boxes(inds)
    return {"file_name": iuv_path.name[: -len(IUV_SUFFIX)] + image_ext, "iuv": iuv_path.name, "inds": inds_path.name,
            "boxes": boxes.tolist(), "scores": [1.0] * len(values), "inds_values": values.tolist()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="folders of *_IUV.png + *_INDS.png, or *_IUV.png files (one folder)")
    ap.add_argument("--out", help="boxes JSON to write (default: boxes.json in the PNGs' folder)")
    ap.add_argument("--image-ext", default=".jpg", help="extension of the photos, for file_name (default .jpg)")
    args = ap.parse_args(argv)
    files = iuv_files(args.paths)
    entries = [image_entry(f, args.image_ext) for f in files]
    out = Path(args.out) if args.out else files[0].parent / "boxes.json"
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps({"images": entries}, indent=1) + "\n")
    log.info("wrote %s: %d images, %d instances; import them with precomputed.format: iuv_png, "
             "precomputed.iuv_folder: %s, precomputed.boxes_json: %s", out, len(entries),
             sum(len(e["boxes"]) for e in entries), files[0].parent, out)


if __name__ == "__main__":
    sys.exit(cli(main))
