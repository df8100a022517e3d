"""Stage `train`: the DP3D model (or a baseline) from the train split of the keypoints store.

    python -m stages.train --params params.yaml --keypoints data/keypoints.zarr --template data/template.npz \
        --lbo data/lbo.npz --out models/model.pt --live metrics/train

Many processes (one per GPU, or gloo on CPU): ``torchrun --nproc_per_node=N -m stages.train ...``
"""

from __future__ import annotations

import argparse
import logging

from pipeline.config import load_params
from pipeline.logs import setup_logging
from pipeline.train import train

log = logging.getLogger("stages.train")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--keypoints", required=True, help="keypoints store to read (train split)")
    ap.add_argument("--template", required=True, help="template .npz")
    ap.add_argument("--lbo", required=True, help="LBO eigenbasis .npz")
    ap.add_argument("--out", required=True, help="checkpoint to write")
    ap.add_argument("--live", default=None, help="dvclive folder for curves and metrics")
    args = ap.parse_args(argv)
    setup_logging()
    result = train(load_params(args.params), args.keypoints, args.template, args.lbo, args.out, args.live)
    log.info("wrote %s after %d steps", args.out, result.step)


if __name__ == "__main__":
    main()
