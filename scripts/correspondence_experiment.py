"""A first measure of the correspondence network against the hand-made corruption model (issue 15, until the
network has its own DVC stage): renders the default synthetic bodies with images, trains ChartNet for a
CPU-time budget, and prints DensePose's measures of both on held-out test crops as JSON.

    PYTHONPATH=. python scripts/correspondence_experiment.py --minutes 12 --width 16 [--out result.json]

Needs ``data/template.npz`` (``dvc repro template``). Occluder pixels are not counted as the person's.
Measured 2026-11-28 on 2 CPU cores (width 16, 12 min budget -> 2,040-2,153 steps of 16, seeds 0, 1, 2):
network part accuracy 0.497 +- 0.015, U/V error 0.184 +- 0.004, GPS 0.630 +- 0.009, GPS AP 0.31 +- 0.02;
corruption model 0.872, 0.032, 0.899, 0.85.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.core.config import load_params_dict
from pipeline.densepose.network.measures import Geodesics, instance_measures, summarise
from pipeline.densepose.network.model import normalise_images
from pipeline.densepose.network.train import CropBatches, train_network
from pipeline.densepose.convert import chart_output_to_crops
from pipeline.densepose.store import open_densepose
from pipeline.densepose.synthetic.source import write_synthetic_store
from pipeline.geometry.charts import ChartLocator
from pipeline.template.file import decode_iuv, load_template


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget (CPU time of this machine)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0, help="seed of the initial weights, batches and augmentation")
    ap.add_argument("--test", type=int, default=300, help="test crops measured")
    ap.add_argument("--template", default="data/template.npz")
    ap.add_argument("--store", default=None, help="where to render the images (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="JSON file to write (default: standard output, after Warp's banner)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    template = load_template(args.template)
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "images.zarr"
    params = load_params_dict({"synthetic": {"images": True}})
    t0 = time.perf_counter()
    write_synthetic_store(store, template, params.synthetic, crop=params.densepose.crop, seed=0, device="cpu")
    rendered = time.perf_counter() - t0
    root = open_densepose(store, template.hash)
    split = root["split"][:]
    train_rows, test_rows = np.flatnonzero(split == 0), np.flatnonzero(split == 1)[: args.test]
    batches = CropBatches(root, train_rows, 16, seed=args.seed)
    t0 = time.perf_counter()
    train_network(batches, 5, width=args.width, seed=args.seed)
    steps = max(1, int(args.minutes * 60 / ((time.perf_counter() - t0) / 5)))
    t0 = time.perf_counter()
    net, history = train_network(batches, steps, lr=args.lr, width=args.width, seed=args.seed,
                                 log_every=max(1, steps // 10))
    trained = time.perf_counter() - t0
    locator = ChartLocator(template.chart_part, template.chart_uv, template.chart_vertex)
    geodesics = Geodesics(template)
    rgb, iuv = root["rgb"].oindex[test_rows], root["gt/iuv"].oindex[test_rows]
    occluder = root["gt/occluder"].oindex[test_rows]
    corrupted_labels, corrupted_uv = root["labels"].oindex[test_rows], root["uv"].oindex[test_rows].astype(np.float32)
    network, corruption = [], []
    with torch.no_grad():
        for a in range(0, len(test_rows), 50):
            out = net(normalise_images(torch.from_numpy(rgb[a:a + 50])))
            crops = chart_output_to_crops(out.fine_segm, out.coarse_segm, out.u, out.v, params.densepose.crop)
            for k in range(len(crops.labels)):
                i = a + k
                labels, uv = decode_iuv(iuv[i])
                person = (labels > 0) & ~occluder[i]
                network.append(instance_measures(crops.labels[k].numpy(), crops.uv[k].numpy(), labels, uv, person,
                                                 locator, geodesics))
                corruption.append(instance_measures(corrupted_labels[i], corrupted_uv[i], labels, uv, person, locator,
                                                    geodesics))
    result = json.dumps({"render_seconds": round(rendered, 1), "train_seconds": round(trained, 1), "steps": steps,
                         "width": args.width, "seed": args.seed, "last_losses": history[-1],
                         "network": summarise(network), "corruption": summarise(corruption)}, indent=2)
    if args.out:
        Path(args.out).write_text(result + "\n")
    else:
        print(result)


if __name__ == "__main__":
    main()
