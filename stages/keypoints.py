"""Stage `keypoints`: repaired IUV (or CSE) crops to template-vertex 2D keypoints.

    python -m stages.keypoints --params params.yaml --iuv data/iuv.zarr --template data/template.npz \
        --out data/keypoints.zarr --metrics metrics/keypoints.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pipeline.core.config import as_dict, load_params
from pipeline.core.stage import resolve_device
from pipeline.core.io import save_json, stage_outputs
from pipeline.keypoints.write import extract_keypoints
from pipeline.core.stage import cli, fix_threads
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
        p = params.keypoints
        device = resolve_device(params.common.device)
        template = load_template(args.template)
        t0 = time.perf_counter()
        summary = extract_keypoints(args.iuv, args.out, template, p.mode, p.min_visible_area, device=device,
                                    params=as_dict(p))
        dt = time.perf_counter() - t0
        log.info("%s mode on %s: %d instances in %.1f s (%.0f/s); kept %d, dropped %d showing < %.0f%% of the surface",
                 p.mode, device, summary["instances_in"], dt, summary["instances_in"] / dt, summary["instances_out"],
                 summary["dropped_small_visible_area"], 100 * p.min_visible_area)
        figures = ("median_error_px", "visibility_precision", "visibility_recall")
        if "median_error_px" in summary:
            line = "against ground truth: median error %.3f px, visibility precision %.3f, recall %.3f"
            values = [summary[k] for k in figures]
            if "exact" in summary:  # the same measures on the exact rendering: the mapping's own error
                line += "; from the exact IUV: %.3f px, precision %.3f, recall %.3f"
                values += [summary["exact"][k] for k in figures]
            log.info(line, *values)
        save_json(args.metrics, summary)
        log.info("wrote %s and %s", args.out, args.metrics)


if __name__ == "__main__":
    sys.exit(cli(main))
