"""Stage `network`: the correspondence network (a per-box DensePose chart predictor) trained on the images.

    python -m stages.network --params params.yaml --images data/images.zarr --template data/template.npz \
        --out models/network.pt --live metrics/network --report metrics/correspondence.json \
        --stamp sources/network.txt

``--stamp`` (sources/network.txt: the checkpoint's path and sha256) is what dvc.yaml's densepose stage depends on
for ``densepose.source: network`` (sources/dvc.yaml holds this stage), so only that source trains the network.

Many processes (one per GPU, or gloo on CPU): ``cluster.processes: N`` (the stage starts itself under
``torchrun --nproc_per_node=N -m stages.network ...``; several machines: run torchrun yourself)

Until training ends, the checkpoint and the curves live as ``models/.network.pt.partial`` and
``metrics/.network.partial`` (``network.resume: true`` continues from them); the outputs appear together at
the end, with DensePose's measures of the network and of the corruption model on the held-out crops
(pipeline/network/train.py). An earlier run's ``models/network.pt`` and curves stay until then,
through a failed or killed run (``keep``: pipeline/core/io.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import stage_outputs
from pipeline.core.ranks import from_environment, torchrun_when_asked
from pipeline.core.stage import cli, fix_threads
from pipeline.network.train import fit_network

log = logging.getLogger("stages.network")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--images", required=True, help="images store to learn from (stage images)")
    ap.add_argument("--template", required=True, help="template .npz")
    ap.add_argument("--out", required=True, help="checkpoint to write")
    ap.add_argument("--live", default=None, help="dvclive folder for the training curves")
    ap.add_argument("--report", required=True, help="JSON of DensePose's measures on the held-out crops")
    ap.add_argument("--stamp", default=None, help="the checkpoint's path and sha256 to write (sources/network.txt)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    torchrun_when_asked("stages.network", sys.argv[1:] if argv is None else argv, params.cluster.processes)
    # process 0 writes the outputs; under torchrun the others only train
    lead = from_environment().writer
    outputs = [p for p in (args.out, args.live, args.report, args.stamp) if p is not None] if lead else []
    resumable = [p for p in (args.out, args.live) if p is not None] if lead else []
    with stage_outputs(*outputs, keep=tuple(resumable)):
        fix_threads(params.common.threads)
        result = fit_network(params, args.images, args.template, args.out, args.live, args.report if lead else None,
                             args.stamp if lead else None)
    for line in result.lines():
        log.info("%s", line)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    sys.exit(cli(main))
