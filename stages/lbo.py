"""Stage `lbo`: the K smallest Laplace-Beltrami eigenpairs of the template.

    python -m stages.lbo --params params.yaml --template data/template.npz --out data/lbo.npz --png data/lbo.png
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import load_params
from pipeline.core.io import save_figure, stage_outputs
from pipeline.core.stage import GEOMETRY_THREADS, cli, fix_threads
from pipeline.geometry.draw import eigenfunctions_figure
from pipeline.geometry.lbo import eigenbasis, save_basis
from pipeline.template.file import load_template

log = logging.getLogger("stages.lbo")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--template", required=True, help="template .npz to read")
    ap.add_argument("--out", required=True, help="eigenbasis .npz to write")
    ap.add_argument("--png", required=True, help="figure of the first eigenfunctions to write")
    args = ap.parse_args(argv)

    with stage_outputs(args.out, args.png):
        k = load_params(args.params).lbo.k
        fix_threads(GEOMETRY_THREADS)
        t = load_template(args.template)
        log.info("read %s: %d vertices (hash %s); solving for %d eigenpairs", args.template, len(t.vertices), t.hash,
                 k)
        basis = eigenbasis(t.vertices, t.faces, k, name=args.template)
        save_basis(args.out, basis, t.hash)
        save_figure(eigenfunctions_figure(t.vertices, t.faces, basis.evecs, basis.evals, t.up, t.forward), args.png)
    for line in basis.lines():
        log.info("%s", line)
    log.info("wrote %s and %s", args.out, args.png)


if __name__ == "__main__":
    sys.exit(cli(main))
