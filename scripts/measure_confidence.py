"""How well the keypoints' confidence (pipeline/keypoints/confidence.py; METHOD.md §3.3) tells the right keypoints
from the wrong ones, on a chart iuv.zarr with synthetic ground truth:

    python scripts/measure_confidence.py [--iuv data/iuv.zarr] [--template data/template.npz] [--count 720]
    python scripts/measure_confidence.py --bodies 100    # a fresh synthetic store (default params, 6 views a body)

A keypoint is wrong when it lies more than 3, 5 or 10 crop pixels from its true vertex projected (gt/pixels). Prints
the neighbour distance d's percentiles for right and wrong keypoints, how often the keypoints with 0 or 1 visible
neighbour and those with filled pixels are wrong, the AUC (the chance that a right keypoint has a higher score than
a wrong one, ties half) of the repair share u, the agreement a and the confidence c = u a, and, per σ, the mean
weight of right and wrong keypoints, the share of the summed error the > 10 px ones carry with the weights, the
weighted mean error and the effective share of keypoints (Σw)² / (n Σw²).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from pipeline.evaluate.metrics import roc_auc
from pipeline.geometry.cameras import project
from pipeline.iuv.store import open_iuv
from pipeline.keypoints.confidence import agreement, unfilled_share
from pipeline.keypoints.lookup import (aggregate, crop_scale, iuv_lookup_table, iuv_to_vertices, neighbour_distance,
                                       neighbour_median, one_ring)
from pipeline.template.file import load_template

SIGMAS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0)


def auc(score: np.ndarray, wrong: np.ndarray) -> float:
    """P(score of a right keypoint > score of a wrong one), ties counted half (Mann-Whitney)."""
    return roc_auc(score, ~np.asarray(wrong, bool))


def synthetic_iuv(folder: Path, template, bodies: int) -> Path:
    """densepose.zarr (default params but ``bodies`` train bodies, a fifth as many test bodies) and its iuv.zarr."""
    from pipeline.core.config import load_params_dict
    from pipeline.densepose.synthetic import write_synthetic_store
    from pipeline.iuv.repair import RepairOptions
    from pipeline.iuv.write import repair_store

    p = load_params_dict({"synthetic": {"train_bodies": bodies, "test_bodies": max(1, bodies // 5)}})
    write_synthetic_store(folder / "dp.zarr", template, p.synthetic, crop=p.densepose.crop, seed=0, device="cpu")
    repair_store(folder / "dp.zarr", folder / "iuv.zarr", RepairOptions.from_params(p.iuv), p.iuv.min_foreground, 1,
                 progress=False, kinds=["chart"])
    return folder / "iuv.zarr"


def measure(iuv_path: Path, template, count: int) -> None:
    root = open_iuv(iuv_path, template.hash, kind="chart")
    n = min(count, root["box"].shape[0])
    boxes, filled = root["box"][:n], root["filled"][:n]
    crop = int(root.attrs["crop"])
    vertex = iuv_to_vertices(root["iuv"][:n], iuv_lookup_table(template.chart_part, template.chart_uv,
                                                                template.chart_vertex))
    n_v = len(template.vertices)
    kp = aggregate(vertex, boxes, n_v)
    ring = one_ring(template.faces, n_v)
    camera = root["gt/camera"][:n]
    truth = project(root["gt/vertices"][:n], camera[:, 0], camera[:, 1:], root.attrs.get("projection", "orthographic"))
    err = np.linalg.norm(kp.xy - truth, axis=-1) / crop_scale(boxes, crop)[:, None]  # crop pixels
    d = neighbour_distance(kp, ring, boxes, crop)
    m = neighbour_median(kp.xy, kp.visible, ring)[1]
    u = unfilled_share(vertex, filled, n_v)
    v = kp.visible
    e, d_v, m_v, u_v = err[v], d[v], m[v], u[v]
    print(f"{n} instances, {v.sum()} visible keypoints; error median {np.median(e):.2f}, mean {e.mean():.2f} crop px; "
          f"filled: {(filled.sum() / max((vertex >= 0).sum(), 1)):.4f} of the foreground pixels")
    for name, sel in (("0 visible neighbours", m_v == 0), ("1 visible neighbour", m_v == 1), (">= 2", m_v >= 2),
                      ("no pixel filled (u = 1)", u_v == 1), ("some filled (0 < u < 1)", (u_v > 0) & (u_v < 1)),
                      ("all filled (u = 0)", u_v == 0)):
        print(f"  {name:24s} {sel.mean():.3f} of the keypoints, error median {np.median(e[sel]):.2f}, "
              f"> 5 px {np.mean(e[sel] > 5):.3f}")
    judged = m_v >= 2
    for limit in (3.0, 5.0, 10.0):
        wrong = e > limit
        print(f"error > {limit:g} crop px: {wrong.mean():.3f} of the keypoints; d percentiles 10 25 50 75 90 95 (crop px)")
        for name, sel in (("right", judged & ~wrong), ("wrong", judged & wrong)):
            print(f"  {name}: " + " ".join(f"{q:.2f}" for q in np.percentile(d_v[sel], [10, 25, 50, 75, 90, 95])))
        print(f"  AUC: -d (>= 2 neighbours) {auc(-d_v[judged], wrong[judged]):.3f}; over all visible: "
              f"u {auc(u_v, wrong):.3f}, a {auc(agreement(d_v, 4.0), wrong):.3f}, "
              f"c (σ 4) {auc(u_v * agreement(d_v, 4.0), wrong):.3f}")
    print(f"per σ (wrong: > 10 px, right: <= 5 px); unweighted: the > 10 px keypoints carry "
          f"{e[e > 10].sum() / e.sum():.3f} of the summed error, mean error {e.mean():.2f}")
    for sigma in SIGMAS:
        w = u_v * agreement(d_v, sigma)
        print(f"  σ {sigma:4.1f}: mean weight right {w[e <= 5].mean():.3f}, wrong {w[e > 10].mean():.3f}; their share "
              f"of the error {(w * e)[e > 10].sum() / (w * e).sum():.3f}; weighted mean error "
              f"{(w * e).sum() / w.sum():.2f}; effective share {w.sum() ** 2 / (w ** 2).sum() / len(w):.3f}; "
              f"AUC (> 10 px) {auc(w, e > 10):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iuv", type=Path, default=Path("data/iuv.zarr"))
    ap.add_argument("--template", type=Path, default=Path("data/template.npz"))
    ap.add_argument("--count", type=int, default=720, help="instances read (the first ones)")
    ap.add_argument("--bodies", type=int, default=0, help="> 0: measure a fresh synthetic store of this many bodies")
    args = ap.parse_args()
    if args.bodies > 0:
        from pipeline.core.config import load_params_dict
        from pipeline.template.build import build_template

        template = build_template(load_params_dict({}).template)  # the default template, built in memory
        with tempfile.TemporaryDirectory() as tmp:
            measure(synthetic_iuv(Path(tmp), template, args.bodies), template, args.count)
    else:
        measure(args.iuv, load_template(args.template), args.count)


if __name__ == "__main__":
    main()
