"""Stage `keypoints`: repaired IUV (or CSE) crops to template-vertex 2D keypoints.

    python -m stages.keypoints --params params.yaml --iuv data/iuv.zarr --template data/template.npz \
        --out data/keypoints.zarr --metrics metrics/keypoints.json
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import save_json, stage_outputs
from pipeline.core.stage import cli, fix_threads
from pipeline.keypoints.write import write_keypoints
from pipeline.template.file import load_template

log = logging.getLogger("stages.keypoints")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--iuv", required=True, help="iuv.zarr to read")
    ap.add_argument("--template", required=True, help="template .npz to read")
    ap.add_argument("--out", required=True, help="keypoints.zarr to write")
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    args = ap.parse_args(argv)

    with stage_outputs(args.out, args.metrics):
        params = load_params(args.params)
        fix_threads(params.common.threads)
        summary = write_keypoints(params, args.iuv, load_template(args.template), args.out)
        for line in summary.lines():
            log.info("%s", line)
        save_json(args.metrics, summary.metrics())
        log.info("wrote %s and %s", args.out, args.metrics)


if __name__ == "__main__":
    sys.exit(cli(main))
