"""Training batches streamed from ``data/keypoints.zarr`` (layout: :mod:`pipeline.keypoints_store`).

Memory stays bounded: an epoch visits the store's chunks in a seeded random order, reads
``chunks_in_memory`` of them at a time, shuffles their rows of the wanted split together with the
rows left over from the previous group, and cuts batches from them. Only ``split`` (one byte per
instance) is read whole.

Every epoch yields exactly ``steps_per_epoch = n_split // batch_size`` batches, so the stream is a
pure function of (seed, epoch) and a resumed run can skip straight to its step. Under
DistributedDataParallel every process reads the same rows and keeps its own slice of each global
batch (``rank``, ``world``), so the processes stay in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from pipeline.keypoints_store import open_keypoints

__all__ = ["KeypointBatch", "KeypointStream"]


class KeypointBatch(NamedTuple):
    """xy: (b, N, 2) float32 image pixels (0 where invisible); visible: (b, N) bool; rows: (b,) int64."""

    xy: torch.Tensor
    visible: torch.Tensor
    rows: torch.Tensor


class KeypointStream:
    """Seeded epochs of batches of one split of a keypoints store.

    Args:
        path: the keypoints store. template_hash: checked against the store (None: not checked).
        split: 0 train, 1 test. batch_size: global batch (divided among ``world`` processes).
        chunks_in_memory: chunks read and shuffled together. seed: order of chunks and rows.
    """

    def __init__(self, path: str | Path, batch_size: int, chunks_in_memory: int = 8, seed: int = 0,
                 split: int = 0, template_hash: str | None = None, rank: int = 0, world: int = 1):
        self.root = open_keypoints(path, template_hash)
        self.xy, self.visible = self.root["xy"], self.root["visible"]
        split_of = np.asarray(self.root["split"][:])
        self.chunk = int(self.xy.chunks[0])
        self.n = len(split_of)
        self.mask = split_of == split
        self.n_split = int(self.mask.sum())
        if self.n_split < 2:
            raise ValueError(f"{path}: {self.n_split} instances in split {split}; training needs at least 2")
        if batch_size % world:
            raise ValueError(f"train.batch_size = {batch_size} is not divisible by the {world} processes")
        self.batch_size = min(batch_size, self.n_split - self.n_split % world)
        self.local = self.batch_size // world
        self.chunks_in_memory = chunks_in_memory
        self.seed, self.rank, self.world = seed, rank, world
        self.n_vertices = int(self.xy.shape[1])

    @property
    def steps_per_epoch(self) -> int:
        return self.n_split // self.batch_size

    def _read(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xy, vis, rows = [], [], []
        for c in np.sort(chunk_ids):
            lo, hi = c * self.chunk, min((c + 1) * self.chunk, self.n)
            keep = np.flatnonzero(self.mask[lo:hi])
            if len(keep):
                xy.append(np.asarray(self.xy[lo:hi])[keep])
                vis.append(np.asarray(self.visible[lo:hi])[keep])
                rows.append(lo + keep)
        if not rows:
            return (np.zeros((0, self.n_vertices, 2), np.float32), np.zeros((0, self.n_vertices), bool),
                    np.zeros(0, np.int64))
        return np.concatenate(xy), np.concatenate(vis), np.concatenate(rows)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[KeypointBatch]:
        """This process's batches of epoch ``epoch``, skipping its first ``skip`` batches."""
        rng = np.random.default_rng([self.seed, epoch])
        n_chunks = -(-self.n // self.chunk)
        order = rng.permutation(n_chunks)
        buf_xy = np.zeros((0, self.n_vertices, 2), np.float32)
        buf_vis = np.zeros((0, self.n_vertices), bool)
        buf_rows = np.zeros(0, np.int64)
        done = 0
        lo, hi = self.rank * self.local, (self.rank + 1) * self.local
        for g in range(0, n_chunks, self.chunks_in_memory):
            if done >= self.steps_per_epoch:
                break
            group = order[g:g + self.chunks_in_memory]
            xy, vis, rows = self._read(group)
            perm = rng.permutation(len(buf_rows) + len(rows))
            buf_xy = np.concatenate([buf_xy, xy])[perm]
            buf_vis = np.concatenate([buf_vis, vis])[perm]
            buf_rows = np.concatenate([buf_rows, rows])[perm]
            while len(buf_rows) >= self.batch_size and done < self.steps_per_epoch:
                if done >= skip:
                    yield KeypointBatch(torch.from_numpy(buf_xy[lo:hi].copy()),
                                        torch.from_numpy(buf_vis[lo:hi].copy()),
                                        torch.from_numpy(buf_rows[lo:hi].copy()))
                buf_xy, buf_vis, buf_rows = (buf_xy[self.batch_size:], buf_vis[self.batch_size:],
                                             buf_rows[self.batch_size:])
                done += 1
