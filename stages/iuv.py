"""Stage `iuv`: repair DensePose output into clean, standard IUV images.

    python -m stages.iuv --params params.yaml --densepose data/densepose.zarr --out data/iuv.zarr \
        --preview data/iuv_preview --metrics metrics/iuv.json --frames data/iuv_frames
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import save_json, stage_outputs
from pipeline.core.stage import cli, fix_threads
from pipeline.iuv.write import write_iuv

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
        summary = write_iuv(params, args.densepose, args.out, args.preview, args.frames)
        for line in summary.lines():
            log.info("%s", line)
        save_json(args.metrics, summary.metrics())
        log.info("wrote %s, %s, %s, %s", args.out, args.metrics, args.preview, args.frames)


if __name__ == "__main__":
    sys.exit(cli(main))
