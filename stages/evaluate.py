"""Stage `evaluate`: reconstruct the test split, write the metrics and the reports.

With ground truth (synthetic data) the 3D metrics; without (real images) the 2D re-projection error of the
test split, or of every instance when there is no test split (pipeline/evaluate/loop.py).

    python -m stages.evaluate --params params.yaml --model models/model.pt --keypoints data/keypoints.zarr \
        --template data/template.npz --metrics metrics/eval.json --parts metrics/eval_parts.csv \
        --segmentation metrics/segmentation.csv --reports reports --iuv data/iuv.zarr --densepose data/densepose.zarr
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import stage_outputs
from pipeline.core.stage import cli, fix_threads, resolve_device
from pipeline.evaluate.loop import evaluate, model_reconstructor
from pipeline.evaluate.results import write_metrics
from pipeline.template.file import load_template

log = logging.getLogger("stages.evaluate")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", required=True, help="checkpoint to read (models/model.pt)")
    ap.add_argument("--keypoints", required=True, help="keypoints.zarr (the test split; ground truth if synthetic)")
    ap.add_argument("--template", required=True, help="template .npz to read")
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    ap.add_argument("--parts", required=True, help="per-part CSV to write (a DVC plot)")
    ap.add_argument("--segmentation", required=True, help="per-region segmentation CSV to write (a DVC plot)")
    ap.add_argument("--reports", required=True, help="report folder to (re)write")
    ap.add_argument("--iuv", help="iuv.zarr: the IUV crops reports/index.html shows (optional)")
    ap.add_argument("--densepose", help="densepose.zarr: its RGB crops, when it has them, for index.html (optional)")
    args = ap.parse_args(argv)

    with stage_outputs(args.metrics, args.parts, args.segmentation, args.reports):
        params = load_params(args.params)
        fix_threads(params.common.threads)
        device = resolve_device(params.common.device)
        template = load_template(args.template)
        model = model_reconstructor(args.model, template, device, params.eval.batch_size, refine=params.eval)
        log.info("model %s (step %s) on %s; initial segmentation %s", args.model, model.info.get("step"), device,
                 "saved" if model.segmentation_init is not None else "not saved")
        result = evaluate(args.keypoints, template, model.run, model.segmentation, params.eval, args.reports,
                          device=device, segmentation_init=model.segmentation_init,
                          holdout=(params.train.val_share, params.common.seed), iuv=args.iuv,
                          densepose=args.densepose, checkpoint=model.info, alone=model.alone)
        write_metrics(result, args.metrics, args.parts, args.segmentation)
        for line in result.lines():
            log.info("%s", line)
        log.info("wrote %s, %s, %s and %s", args.metrics, args.parts, args.segmentation, args.reports)

if __name__ == "__main__":
    sys.exit(cli(main))
