"""Stage `template`: build the canonical mesh, its 24-chart atlas and tables.

    python -m stages.template --params params.yaml --out data/template.npz --png data/template_parts.png
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import save_figure, stage_outputs
from pipeline.core.stage import GEOMETRY_THREADS, cli, fix_threads
from pipeline.template.build import build_template
from pipeline.template.figures import template_parts_figure

log = logging.getLogger("stages.template")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, help="template .npz to write")
    ap.add_argument("--png", required=True, help="parts and charts figure to write")
    args = ap.parse_args(argv)

    with stage_outputs(args.out, args.png):
        params = load_params(args.params).template
        fix_threads(GEOMETRY_THREADS)
        what = {"anny": params.topology, "smpl": params.smpl_model,
                "cse": f"{params.cse_mesh_file}, embeddings of {params.cse_mesh} from {params.cse_weights}"}
        log.info("building template from %s (%s)", params.source, what.get(params.source, "?"))
        t = build_template(params)
        t.save(args.out)
        save_figure(template_parts_figure(t), args.png)
        log.info("wrote %s: %d vertices, %d faces, %d chart points, embedding dim %d, hash %s",
                 args.out, len(t.vertices), len(t.faces), len(t.chart_part), t.embedding.shape[1], t.hash)
        log.info("wrote %s", args.png)


if __name__ == "__main__":
    sys.exit(cli(main))
