"""Speed of the correspondence network (pipeline/network/model.py) on this machine's CPU threads:
inference boxes/s and training steps/s at a few widths, input 112 x 112 (the default crop), and the whole
per-box inference of ``densepose.source: network`` on a photo (box resampling, network, Detectron2's
converters onto the 112-pixel crop).

    PYTHONPATH=. python benchmarks/bench_network.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from pipeline.densepose.network import box_crops
from pipeline.network.checkpoint import predict_crops
from pipeline.network.losses import chart_loss, chart_targets
from pipeline.network.model import ChartNet, normalise_images


def _median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA {torch.cuda.is_available()}")
    rgb = torch.randint(0, 256, (64, 112, 112, 3), dtype=torch.uint8)
    labels = torch.randint(0, 25, (16, 112, 112))
    targets = chart_targets(labels, torch.rand((16, 2, 112, 112)))
    for width in (8, 16, 32):
        net = ChartNet(width).eval()
        params = sum(p.numel() for p in net.parameters())
        x = normalise_images(rgb)

        def infer():
            with torch.no_grad():
                net(x)

        dt = _median_seconds(infer)
        net.train()
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        xt = normalise_images(rgb[:16])

        def step():
            loss, _ = chart_loss(net(xt), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()

        st = _median_seconds(step, 3)
        print(f"width {width:3d} ({params / 1e6:.2f} M parameters): inference {64 / dt:7.1f} boxes/s (batch 64), "
              f"training {1 / st:5.2f} steps/s (batch 16, {16 / st:6.1f} boxes/s)")
        photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        boxes = np.array([[40 + 9 * k, 30 + 5 * k, 240 + 9 * k, 430 + 5 * k] for k in range(64)], np.float32)
        net.eval()

        def source():
            predict_crops(net, box_crops(photo, boxes, 112), 112, 112, "cpu", 64)

        dt = _median_seconds(source)
        print(f"width {width:3d}: densepose.source network, 64 boxes of 200 x 400 pixels in a 640 x 480 photo: "
              f"{64 / dt:7.1f} boxes/s (resampling, network, converters)")


if __name__ == "__main__":
    main()
