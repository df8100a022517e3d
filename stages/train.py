"""Stage `train`: the DP3D model (or a baseline) from the train split of the keypoints store.

    python -m stages.train --params params.yaml --keypoints data/keypoints.zarr --template data/template.npz \
        --lbo data/lbo.npz --out models/model.pt --live metrics/train

Many processes (one per GPU, or gloo on CPU): ``cluster.processes: N`` (the stage starts itself under
``torchrun --nproc_per_node=N -m stages.train ...``; several machines: run torchrun yourself)

Until training ends, the checkpoint and the curves live as ``models/.model.pt.partial`` and
``metrics/.train.partial`` (``train.resume: true`` continues from them); the outputs appear together
at the end. An earlier run's ``models/model.pt`` and curves stay until then, through a failed or
killed run (``keep``: pipeline/core/io.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import stage_outputs
from pipeline.core.ranks import from_environment, torchrun_when_asked
from pipeline.core.stage import cli, fix_threads
from pipeline.train.loop import train

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

    params = load_params(args.params)
    torchrun_when_asked("stages.train", sys.argv[1:] if argv is None else argv, params.cluster.processes)
    # process 0 writes the outputs; under torchrun the others only train
    outputs = [p for p in (args.out, args.live) if p is not None] if from_environment().writer else []
    with stage_outputs(*outputs, keep=tuple(outputs)):
        fix_threads(params.common.threads)
        result = train(params, args.keypoints, args.template, args.lbo, args.out, args.live)
    for line in result.lines():
        log.info("%s", line)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    sys.exit(cli(main))
