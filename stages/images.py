"""Stage `images`: the rendered images the correspondence network learns from.

    python -m stages.images --params params.yaml --template data/template.npz --out data/images.zarr \
        --png data/images_contact.png --metrics metrics/images.json

``network.train_bodies + network.test_bodies`` Anny bodies (drawn apart from the synthetic source's),
``network.views`` crops each, rendered as photo-like images with their exact IUV; everything else from the
``synthetic`` section (pipeline/images/write.py).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import save_figure, save_json, stage_outputs, written
from pipeline.core.stage import cli, fix_threads
from pipeline.densepose.figures import contact_sheet_figure
from pipeline.images.store import open_images
from pipeline.images.write import write_images_store
from pipeline.template.file import load_template

log = logging.getLogger("stages.images")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--template", required=True, help="template .npz to read")
    ap.add_argument("--out", required=True, help="images store (a densepose store with images) to write")
    ap.add_argument("--png", required=True, help="contact sheet (image | exact IUV | corrupted IUV) to write")
    ap.add_argument("--metrics", required=True, help="counts JSON to write")
    args = ap.parse_args(argv)

    with stage_outputs(args.out, args.png, args.metrics):
        params = load_params(args.params)
        fix_threads(params.common.threads)
        template = load_template(args.template)
        summary = write_images_store(params, template, args.out)
        for line in summary.lines():
            log.info("%s", line)
        save_json(args.metrics, summary.metrics())
        save_figure(contact_sheet_figure(open_images(written(args.out), template.hash)), args.png)
    log.info("wrote %s, %s, %s", args.out, args.metrics, args.png)


if __name__ == "__main__":
    sys.exit(cli(main))
