"""Wall time and peak memory of the densepose sources that take many boxes on one image.

    PYTHONPATH=. python benchmarks/bench_many_boxes.py [--boxes 10000] [--sources iuv_png network detectron2]
        [--image 1920 1080] [--box-size 60 400] [--crop 112] [--detections 250] [--folder DIR] [--json]

Builds, in a temporary folder (``--folder``: kept there), one photo of ``--image`` pixels with ``--boxes`` person
boxes (random, ``--box-size`` pixels wide, twice as tall, inside the photo) in a boxes JSON, the photo's IUV PNG
(random parts, U and V) and its index map (each box's instance a rectangle in the middle of its box, drawn in the
boxes' order, with ``inds_values``), then runs each source in a fresh process writing ``densepose.zarr``:

- ``iuv_png``: ``densepose.source precomputed``, ``format: iuv_png`` (the photo crops ``rgb`` too);
- ``network``: ``densepose.source network`` on the photo with the boxes JSON, a small untrained correspondence
  network (width 4, input 32 pixels: what the source holds per box does not depend on the network's size);
- ``detectron2``: ``densepose.source detectron2`` with a stand-in model that finds ``--detections`` people in the
  photo (random 112 x 112 heatmaps: 3.9 MB a detection, held by the model's output, not by the source; a real
  model returns at most ``DETECTIONS_PER_IMAGE``, 100 by default, and ``detectron2.max_instances`` <= 1000).

For each it prints the instances written, the wall time, the process's peak RSS (``VmHWM`` of
``/proc/self/status``) and that peak less the RSS before the source ran (imports and inputs read): what the source
held. ``--json`` prints one JSON object a source instead. Prints numbers; not a test (tests/densepose/test_many_boxes.py
runs it small with a memory bound). About 3 minutes on 2 CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SOURCES = ("iuv_png", "network", "detectron2")


def make_inputs(folder: Path, n: int, image: tuple[int, int], box_size: tuple[int, int], seed: int = 0) -> None:
    """The photo ``a.jpg`` (PNG bytes under that name: lossless), ``a_IUV.png``, ``a_INDS.png`` and ``boxes.json``
    in ``folder``, and the photo alone in ``folder/photos`` (the detectron2 source reads every image of a folder)."""
    import cv2

    W, H = image
    rng = np.random.default_rng(seed)
    w = rng.uniform(*box_size, n)
    h = np.minimum(2 * w, H - 1)
    x0, y0 = rng.uniform(0, W - w), rng.uniform(0, H - h)
    boxes = np.round(np.stack([x0, y0, x0 + w, y0 + h], axis=1), 1)
    photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    iuv = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    iuv[..., 0] = rng.integers(1, 25, (H, W))
    inds = np.zeros((H, W), np.uint16)
    for k, (a, b, c, d) in enumerate(boxes):
        cx, cy, rx, ry = (a + c) / 2, (b + d) / 2, (c - a) / 6, (d - b) / 6
        inds[int(cy - ry):int(cy + ry) + 1, int(cx - rx):int(cx + rx) + 1] = k + 1
    (folder / "photos").mkdir(exist_ok=True)
    for name, img in (("a.jpg", photo), ("a_IUV.png", iuv), ("a_INDS.png", inds), ("photos/a.jpg", photo)):
        ok, data = cv2.imencode(".png", img)
        assert ok
        (folder / name).write_bytes(data.tobytes())
    entry = {"file_name": "a.jpg", "iuv": "a_IUV.png", "inds": "a_INDS.png", "boxes": boxes.tolist(),
             "scores": np.round(rng.uniform(0.5, 1.0, n), 3).tolist(), "inds_values": list(range(1, n + 1))}
    (folder / "boxes.json").write_text(json.dumps({"images": [entry]}))


class _StandIn:
    """A stand-in DensePose R-CNN: ``n`` people in every image, random boxes and heatmaps."""

    is_cse = False

    def __init__(self, n: int):
        self.n = n

    def __call__(self, images):
        import torch

        from pipeline.densepose.detectron2 import Detections

        out = []
        for img in images:
            gen = torch.Generator().manual_seed(0)
            H, W = img.shape[:2]
            xy = torch.rand(self.n, 2, generator=gen) * torch.tensor([W * 0.8, H * 0.5])
            wh = torch.rand(self.n, 2, generator=gen) * torch.tensor([W * 0.2, H * 0.5]) + 8
            chart = (torch.randn(self.n, 25, 112, 112, generator=gen), torch.randn(self.n, 2, 112, 112, generator=gen),
                     torch.rand(self.n, 25, 112, 112, generator=gen), torch.rand(self.n, 25, 112, 112, generator=gen))
            out.append(Detections(torch.cat([xy, xy + wh], 1), torch.full((self.n,), 0.9), chart=chart))
        return out


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: its peak), MB; ru_maxrss elsewhere."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(source: str, folder: Path, crop: int, detections: int) -> dict:
    """Runs one source on ``folder``'s inputs in this process; its instances, seconds and memory (MB)."""
    import logging

    import torch

    from pipeline.core.config import load_params_dict

    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    template = SimpleNamespace(hash="bench", source="anny", topology="t", embedding=np.zeros((30, 16), np.float32))
    out = folder / f"{source}.zarr"
    if source == "iuv_png":
        from pipeline.densepose.precomputed import write_precomputed_store

        params = load_params_dict({"precomputed": {"format": "iuv_png", "iuv_folder": str(folder),
                                                   "boxes_json": str(folder / "boxes.json")}}).precomputed

        def run():
            return write_precomputed_store(params, crop, template, out)
    elif source == "network":
        from pipeline.densepose.network import write_network_store
        from pipeline.network.checkpoint import save_network
        from pipeline.network.model import ChartNet

        torch.manual_seed(0)
        save_network(folder / "network.pt", ChartNet(4), 32, template.hash, {}, 0, {})
        params = load_params_dict({"densepose": {"source": "network", "crop": crop}, "common": {"device": "cpu"},
                                   "network_source": {"images": str(folder), "boxes_json": str(folder / "boxes.json")}})

        def run():
            return write_network_store(params, template, out, folder / "network.pt")
    else:
        from pipeline.densepose import detectron2 as d2

        d2.check_detectron2_inputs = lambda *a, **k: None  # the stand-in model needs no Detectron2
        d2.build_predictor = lambda *a, **k: _StandIn(detections)
        params = load_params_dict({"detectron2": {"images": str(folder / "photos"), "config": "-", "weights": "-",
                                                  "batch_size": 1, "score_threshold": 0.5}}).detectron2

        def run():
            return d2.write_detectron2_store(params, crop, "cpu", template, out)
    before = _status_mb("VmRSS")
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")  # peak RSS (VmHWM) := RSS now
    t0 = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    return {"source": source, "instances": summary.instances, "seconds": round(seconds, 2),
            "peak_mb": round(peak), "source_mb": round(peak - before)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=10_000)
    ap.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    ap.add_argument("--image", type=int, nargs=2, default=(1920, 1080), metavar=("W", "H"))
    ap.add_argument("--box-size", type=float, nargs=2, default=(60, 400), metavar=("MIN", "MAX"),
                    help="box widths in pixels (heights twice as much, within the image)")
    ap.add_argument("--crop", type=int, default=112, help="densepose.crop")
    ap.add_argument("--detections", type=int, default=250, help="people the stand-in model finds (detectron2)")
    ap.add_argument("--folder", type=Path, help="build the inputs here and keep them (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="one JSON object a source")
    ap.add_argument("--child", nargs=2, metavar=("SOURCE", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.crop, args.detections)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        make_inputs(folder, args.boxes, tuple(args.image), tuple(args.box_size))
        if not args.json:
            print(f"{args.boxes} boxes of {args.box_size[0]:g}..{args.box_size[1]:g} x twice as many pixels on one "
                  f"{args.image[0]} x {args.image[1]} image, crop {args.crop} (detectron2: {args.detections} "
                  "detections of a stand-in model)")
        for source in args.sources:
            done = subprocess.run([sys.executable, __file__, "--child", source, str(folder), "--crop", str(args.crop),
                                   "--detections", str(args.detections)], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{source} failed:\n{done.stderr[-3000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            if args.json:
                print(json.dumps(r))
            else:
                print(f"{source:10s}: {r['instances']:6d} instances in {r['seconds']:7.1f} s, peak RSS "
                      f"{r['peak_mb']:6d} MB, {r['source_mb']:6d} MB of it held by the source")


if __name__ == "__main__":
    main()
