"""Stage `iuv`: repair DensePose output into clean, standard IUV images.

    python -m stages.iuv --params params.yaml --densepose data/densepose.zarr --out data/iuv.zarr \
        --preview data/iuv_preview --metrics metrics/iuv.json --frames data/iuv_frames
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pipeline.core.config import as_dict, load_params
from pipeline.core.io import atomic_path, save_json, stage_outputs, written
from pipeline.iuv.repair import RepairOptions
from pipeline.iuv.fullframe import export_store_frames
from pipeline.iuv.preview import write_preview
from pipeline.iuv.store import open_iuv
from pipeline.iuv.write import repair_store
from pipeline.core.stage import cli, fix_threads

log = logging.getLogger("stages.iuv")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--densepose", required=True, help="densepose.zarr to read")
    ap.add_argument("--out", required=True, help="iuv.zarr to write")
    ap.add_argument("--preview", required=True, help="folder of preview PNGs to write")
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    ap.add_argument("--frames", required=True,
                    help="folder of full-frame IUV and instance-index PNGs to write (real images only)")
    args = ap.parse_args(argv)

    with stage_outputs(args.out, args.preview, args.metrics, args.frames):
        params = load_params(args.params)
        fix_threads(params.common.threads)
        p = params.iuv
        opts = RepairOptions.from_params(p)
        kind = "chart" if params.keypoints.mode == "iuv" else "cse"  # only what the keypoints stage will read
        t0 = time.perf_counter()
        summary = repair_store(args.densepose, args.out, opts, p.min_foreground, p.workers, params=as_dict(p),
                               kinds=[kind])
        dt = time.perf_counter() - t0
        log.info("repaired %s output of %d instances in %.1f s (%.0f/s, %d workers); kept %d, dropped %d with < %d foreground pixels",
                 kind, summary["instances_in"], dt, summary["instances_in"] / dt, p.workers, summary["instances_out"],
                 summary["dropped_small_foreground"], p.min_foreground)
        for when in ("before", "after"):
            if f"quality_{when}" in summary:
                q = summary[f"quality_{when}"]
                log.info("%s repair: part accuracy %.4f, U/V error %.4f, foreground IoU %.4f", when,
                         q["part_accuracy"], q["uv_error"], q["foreground_iou"])
        save_json(args.metrics, summary)
        write_preview(args.densepose, written(args.out), args.preview, p.previews)
        with atomic_path(args.frames) as tmp:
            tmp.mkdir()
            root = open_iuv(written(args.out))
            if root.attrs.get("source") != "synthetic" and "iuv" in root:  # synthetic images are virtual
                log.info("wrote %d full-frame IUV images", export_store_frames(root, tmp))
        log.info("wrote %s, %s, %s, %s", args.out, args.metrics, args.preview, args.frames)


if __name__ == "__main__":
    sys.exit(cli(main))
