"""Stage `evaluate`: reconstruct the test split, write the metrics and the reports.

    python -m stages.evaluate --params params.yaml --model models/model.pt --keypoints data/keypoints.zarr \
        --template data/template.npz --metrics metrics/eval.json --parts metrics/eval_parts.csv --reports reports
"""

from __future__ import annotations

import argparse
import logging
import time

from pipeline.config import load_params
from pipeline.devices import resolve_device
from pipeline.evaluate import evaluate, model_reconstructor, write_metrics
from pipeline.logs import setup_logging
from pipeline.template import load_template

log = logging.getLogger("stages.evaluate")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", required=True, help="checkpoint to read (models/model.pt)")
    ap.add_argument("--keypoints", required=True, help="keypoints.zarr with the test split and ground truth")
    ap.add_argument("--template", required=True, help="template .npz to read")
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    ap.add_argument("--parts", required=True, help="per-part CSV to write (a DVC plot)")
    ap.add_argument("--reports", required=True, help="report folder to (re)write")
    args = ap.parse_args(argv)
    setup_logging()

    params = load_params(args.params)
    device = resolve_device(params.common.device)
    template = load_template(args.template)
    run, segmentation, info = model_reconstructor(args.model, template, device, params.eval.batch_size)
    log.info("model %s (step %s) on %s", args.model, info.get("step"), device)
    t0 = time.perf_counter()
    result = evaluate(args.keypoints, template, run, segmentation, params.eval, args.reports, device=device)
    write_metrics(result, args.metrics, args.parts)
    log.info("evaluated %d test instances in %.1f s; wrote %s, %s and %s", result.metrics["test_instances"],
             time.perf_counter() - t0, args.metrics, args.parts, args.reports)


if __name__ == "__main__":
    main()
