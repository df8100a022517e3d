"""Batches of the images the correspondence network learns from (``data/images.zarr``, stage ``images``:
:mod:`pipeline.images.write`).

:class:`CropBatches` streams seeded random batches of a store's train rows: the batch of step ``t`` is
drawn from ``default_rng([seed, t])`` whatever came before (resuming reproduces it); the train rows are
read into memory once when they fit in :data:`MEMORY_BYTES` (else each batch reads its rows, in order).
Size letters: ``B`` crops of a batch, ``S`` crop side (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.network.losses import ChartTargets, chart_targets
from pipeline.template.file import decode_iuv

__all__ = ["CropBatch", "CropBatches"]

_ARRAYS = ("rgb", "gt/iuv", "gt/occluder")
MEMORY_BYTES = 4 << 30  # train rows up to this size are held in memory (1,000 crops of 112 px: 80 MB)


class CropBatch(NamedTuple):
    """rgb: (B, S, S, 3) uint8; targets on the 112 x 112 grid."""

    rgb: torch.Tensor
    targets: ChartTargets


class CropBatches:
    """Seeded random batches of ``rows`` of a store with images (module docstring).

    Args:
        root: an open store with ``rgb``, ``gt/iuv`` and ``gt/occluder``. rows: (n,) int rows to draw from.
        batch_size: B. seed: the draw's seed. memory: the most bytes of rows held in memory.
    """

    def __init__(self, root, rows: np.ndarray, batch_size: int, seed: int, memory: int = MEMORY_BYTES):
        missing = [a for a in _ARRAYS if a not in root]
        if missing:
            raise InputError(f"the store lacks {', '.join(missing)}: render it with synthetic.images: true")
        if len(rows) == 0 or batch_size < 1:
            raise InputError(f"training needs rows and a batch size >= 1, got {len(rows)} rows, batch {batch_size}")
        self.root, self.rows, self.batch_size, self.seed = root, np.sort(np.asarray(rows)), batch_size, seed
        # a batch's rows lie in many chunks, each decompressed whole: when the rows fit in ``memory`` bytes,
        # they are read once, in order
        size = sum(int(np.prod(root[a].shape[1:])) * root[a].dtype.itemsize for a in _ARRAYS) * len(self.rows)
        self.cache = {a: np.asarray(root[a].oindex[self.rows]) for a in _ARRAYS} if size <= memory else None

    def _read(self, name: str, pick: np.ndarray) -> np.ndarray:
        if self.cache is None:
            return np.asarray(self.root[name].oindex[pick])
        return self.cache[name][np.searchsorted(self.rows, pick)]

    def batch(self, step: int) -> CropBatch:
        """The batch of ``step`` (the same for the same step, whatever came before)."""
        rng = np.random.default_rng([self.seed, step])
        pick = np.sort(rng.choice(self.rows, size=min(self.batch_size, len(self.rows)), replace=False))
        labels, uv = decode_iuv(self._read("gt/iuv", pick))  # exact: no missing pixels
        occluder = torch.from_numpy(self._read("gt/occluder", pick))
        targets = chart_targets(torch.from_numpy(labels), torch.from_numpy(uv), occluder)
        return CropBatch(torch.from_numpy(self._read("rgb", pick)), targets)
