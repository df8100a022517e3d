"""Stage `densepose`: DensePose output per instance into data/densepose.zarr, from the source in params.

    python -m stages.densepose --params params.yaml --template data/template.npz --network models/network.pt \
        --out data/densepose.zarr --png data/densepose_contact.png --metrics metrics/densepose.json

``densepose.source``: ``synthetic`` renders posed Anny bodies (pipeline/densepose/synthetic.py, with
pipeline/render/); ``detectron2`` runs a DensePose R-CNN on a folder of images (pipeline/densepose/detectron2.py);
``precomputed`` imports ``apply_net.py dump`` files or IUV PNG folders (pipeline/densepose/precomputed.py);
``network`` runs stage network's correspondence network on the synthetic bodies' images or on a folder of images
with person boxes (pipeline/densepose/network.py).

With ``cluster.processes`` = P > 1 the stage runs itself as P processes under ``torchrun`` (one a GPU; gloo
processes on CPU), each on its share of the bodies or images (pipeline/core/ranks.py); rank 0 writes a store
byte-identical to one process's. Several machines: start it with ``torchrun --nnodes ...`` yourself (docs/stages.md, "Many GPUs").
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

from pipeline.core.config import load_params
from pipeline.core.io import save_figure, save_json, stage_outputs, written
from pipeline.core.ranks import join, torchrun_when_asked
from pipeline.core.stage import cli, fix_threads
from pipeline.densepose import detectron2, network, precomputed, synthetic
from pipeline.densepose.door import check_chart_convention
from pipeline.densepose.figures import contact_sheet_figure
from pipeline.densepose.store import open_densepose
from pipeline.template.file import load_template

log = logging.getLogger("stages.densepose")

# densepose.source -> its entry point; every source has write_store(params, template, out, ranks) -> DenseposeSummary
# (ranks other than 0 end inside it once their share is done; the network source also takes the checkpoint)
SOURCES = {"synthetic": synthetic.write_store, "detectron2": detectron2.write_store,
           "precomputed": precomputed.write_store, "network": network.write_store}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--template", required=True, help="template .npz to read")
    ap.add_argument("--network", default="models/network.pt", help="correspondence network (densepose.source network)")
    ap.add_argument("--out", required=True, help="densepose.zarr store to write")
    ap.add_argument("--png", required=True, help="contact sheet of the first 16 instances to write")
    ap.add_argument("--metrics", required=True, help="counts JSON to write (instances, skipped images, ...)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    torchrun_when_asked("stages.densepose", sys.argv[1:] if argv is None else argv, params.cluster.processes)
    ranks = join()  # under torchrun every rank renders or infers its share; rank 0 writes the outputs
    with stage_outputs(*((args.out, args.png, args.metrics) if ranks.writer else ())):
        fix_threads(params.common.threads)
        template = load_template(args.template)
        log.info("read %s: %d vertices, hash %s; source %s", args.template, template.n_vertices, template.hash,
                 params.densepose.source)
        check_chart_convention(template.charts, params.densepose.source, params.densepose.kind)
        sources = {**SOURCES, "network": partial(network.write_store, checkpoint=args.network)}
        summary = sources[params.densepose.source](params, template, args.out, ranks=ranks)
        for line in summary.lines():
            log.info("%s", line)
        save_json(args.metrics, summary.metrics())
        save_figure(contact_sheet_figure(open_densepose(written(args.out), template.hash)), args.png)
        log.info("wrote %s, %s, %s", args.out, args.metrics, args.png)


if __name__ == "__main__":
    sys.exit(cli(main))
