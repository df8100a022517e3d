"""Training the correspondence network on rendered crops with their exact IUV.

:class:`CropBatches` streams seeded random batches of the train rows of a store that holds synthetic
images (``densepose.zarr`` with ``synthetic.images``: ``rgb``, ``gt/iuv``, ``gt/occluder``); every
batch is photometrically augmented (:func:`augment`: brightness, contrast, per-channel gain, gamma,
Gaussian noise, all per image) and turned into the chart targets of :mod:`pipeline.correspondence.losses`.
:func:`train_network` runs Adam with a cosine learning-rate decay and returns the network and the
curve of its losses. Geometric augmentation is left out: a flip swaps left and right parts and
mirrors U, which the exact targets would have to follow.

Determinism: the batch order comes from ``default_rng([seed, step])``, the augmentation from
``torch.Generator`` seeded with ``[seed, step]``, the initial weights from ``torch.manual_seed(seed)``.
Size letters: ``B`` crops of a batch, ``S`` crop side (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.correspondence.losses import ChartTargets, chart_loss, chart_targets
from pipeline.correspondence.network import ChartNet, standardise, unit_images
from pipeline.template.file import decode_iuv

__all__ = ["CropBatch", "CropBatches", "augment", "train_network"]


class CropBatch(NamedTuple):
    """rgb: (B, S, S, 3) uint8; targets on the 112 x 112 grid."""

    rgb: torch.Tensor
    targets: ChartTargets


class CropBatches:
    """Seeded random batches of ``rows`` of a store with images (module docstring).

    Args:
        root: an open store with ``rgb``, ``gt/iuv`` and ``gt/occluder``. rows: (n,) int rows to draw from.
        batch_size: B. seed: the draw's seed.
    """

    def __init__(self, root, rows: np.ndarray, batch_size: int, seed: int):
        missing = [a for a in ("rgb", "gt/iuv", "gt/occluder") if a not in root]
        if missing:
            raise InputError(f"the store lacks {', '.join(missing)}: render it with synthetic.images: true")
        if len(rows) == 0 or batch_size < 1:
            raise InputError(f"training needs rows and a batch size >= 1, got {len(rows)} rows, batch {batch_size}")
        self.root, self.rows, self.batch_size, self.seed = root, np.sort(np.asarray(rows)), batch_size, seed

    def batch(self, step: int) -> CropBatch:
        """The batch of ``step`` (the same for the same step, whatever came before)."""
        rng = np.random.default_rng([self.seed, step])
        pick = np.sort(rng.choice(self.rows, size=min(self.batch_size, len(self.rows)), replace=False))
        labels, uv = decode_iuv(self.root["gt/iuv"].oindex[pick])  # exact: no missing pixels
        occluder = torch.from_numpy(np.asarray(self.root["gt/occluder"].oindex[pick]))
        targets = chart_targets(torch.from_numpy(labels), torch.from_numpy(uv), occluder)
        return CropBatch(torch.from_numpy(np.asarray(self.root["rgb"].oindex[pick])), targets)


def augment(raw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Photometric augmentation of images ``raw`` (B, 3, H, W) float in [0, 1] (:func:`unit_images`): per image
    brightness (x 0.7..1.3), contrast (0.7..1.3 about the mean), channel gains (0.9..1.1), gamma (0.8..1.25)
    and Gaussian noise (std 0..0.04). Returns images in [0, 1]."""
    b = raw.shape[0]

    def draw(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand((b, *shape, 1, 1), generator=generator)

    mean = raw.mean(dim=(1, 2, 3), keepdim=True)
    raw = (raw - mean) * draw(0.7, 1.3, 1) + mean
    raw = raw * draw(0.7, 1.3, 1) * draw(0.9, 1.1, 3)
    raw = raw.clamp(0, 1) ** draw(0.8, 1.25, 1)
    raw = raw + torch.randn(raw.shape, generator=generator) * draw(0.0, 0.04, 1)
    return raw.clamp(0, 1)


def train_network(batches: CropBatches, steps: int, lr: float = 3e-3, width: int = 32, seed: int = 0,
                  device: str = "cpu", log_every: int = 50, on_log=None) -> tuple[ChartNet, list[dict]]:
    """Trains a fresh :class:`ChartNet` for ``steps`` Adam steps (cosine decay of ``lr`` to 0).

    Args:
        on_log: called as ``on_log(step, record)`` every ``log_every`` steps and at the end (e.g. dvclive).
    Returns:
        the network in eval mode, and the logged records: ``step``, ``loss``, ``coarse``, ``fine``, ``uv``, ``lr``.
    """
    if steps < 1:
        raise InputError(f"the network trains for at least one step, got {steps}")
    torch.manual_seed(seed)
    net = ChartNet(width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    net.train()
    for step in range(steps):
        rate = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = rate
        batch = batches.batch(step)
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))
        x = standardise(augment(unit_images(batch.rgb), generator)).to(device)
        targets = ChartTargets(*(t.to(device) for t in batch.targets))
        loss, terms = chart_loss(net(x), targets)
        if not torch.isfinite(loss):
            raise InputError(f"correspondence training diverged at step {step} (loss {loss.item()}); lower the "
                             "learning rate")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            record = {"step": step + 1, "loss": loss.item(), **{k: v.item() for k, v in terms.items()}, "lr": rate}
            history.append(record)
            if on_log is not None:
                on_log(step + 1, record)
    return net.eval(), history
