"""Stage `densepose`: DensePose output per instance into data/densepose.zarr, from the source in params.

    python -m stages.densepose --params params.yaml --template data/template.npz \
        --out data/densepose.zarr --png data/densepose_contact.png --metrics metrics/densepose.json

``densepose.source``: ``synthetic`` renders posed Anny bodies (pipeline/densepose/synthetic/source.py); ``detectron2``
runs a DensePose R-CNN on a folder of images (pipeline/densepose/detectron2.py); ``precomputed`` imports
``apply_net.py dump`` files or IUV PNG folders (pipeline/densepose/precomputed.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import as_dict, load_params
from pipeline.densepose.figures import contact_sheet_figure
from pipeline.densepose.store import open_densepose
from pipeline.core.io import save_figure, save_json, stage_outputs, written
from pipeline.core.stage import cli, fix_threads
from pipeline.template.file import load_template

log = logging.getLogger("stages.densepose")


def _record(params, section: str) -> dict:
    """The params that made the store, for its attributes."""
    return {k: as_dict(getattr(params, k)) for k in ("common", "densepose", section)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--template", required=True, help="template .npz to read")
    ap.add_argument("--out", required=True, help="densepose.zarr store to write")
    ap.add_argument("--png", required=True, help="contact sheet of the first 16 instances to write")
    ap.add_argument("--metrics", required=True, help="counts JSON to write (instances, skipped images, ...)")
    args = ap.parse_args(argv)

    with stage_outputs(args.out, args.png, args.metrics):
        params = load_params(args.params)
        fix_threads(params.common.threads)
        source = params.densepose.source
        template = load_template(args.template)
        log.info("read %s: %d vertices, hash %s; source %s", args.template, template.n_vertices, template.hash, source)
        if source == "synthetic":
            from pipeline.densepose.synthetic.source import write_synthetic_store

            counts = write_synthetic_store(
                args.out, template, params.synthetic, crop=params.densepose.crop, seed=params.common.seed,
                device=params.common.device,
                params=_record(params, "synthetic"))
            n, s = counts["instances"], params.densepose.crop
            log.info("wrote %s: %d instances (%d train, %d test) of %d bodies, pose modes %s, on %s in %.1f s "
                     "(%.0f instances/s)", args.out, n, counts["train"], counts["test"],
                     counts["bodies"], counts["modes"], counts["device"], counts["seconds"],
                     counts["instances_per_second"])
            log.info("per instance: %.0f%% of the crop is foreground, %.0f of %d vertices visible, %.1f hidden by "
                     "occluders", 100 * counts["foreground_pixels"] / (n * s * s), counts["visible_vertices"] / n,
                     template.n_vertices, counts["occluded_vertices"] / n)
        elif source == "detectron2":
            from pipeline.densepose.detectron2 import write_detectron2_store

            counts = write_detectron2_store(params.detectron2, params.densepose.crop, params.common.device, template,
                                            args.out, _record(params, "detectron2"))
        else:
            from pipeline.densepose.precomputed import write_precomputed_store

            counts = write_precomputed_store(params.precomputed, params.densepose.crop, template, args.out,
                                             _record(params, "precomputed"))
        # the metrics file holds what is reproducible: counts, not timings
        metrics = {k: v for k, v in counts.items() if k not in ("seconds", "instances_per_second", "device")}
        save_json(args.metrics, {"source": source, **metrics})
        save_figure(contact_sheet_figure(open_densepose(written(args.out), template.hash)), args.png)
        log.info("wrote %s", args.png)


if __name__ == "__main__":
    sys.exit(cli(main))
