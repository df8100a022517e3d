"""Training batches streamed from ``data/keypoints.zarr`` (layout: :mod:`pipeline.keypoints.write`).

Memory stays bounded: an epoch visits the store's chunks in a seeded random order, reads
``chunks_in_memory`` of them at a time, shuffles their rows of the wanted split together with the
rows left over from the previous group, and cuts batches from them. Only ``split`` (one byte per
instance) is read whole.

Every epoch yields exactly ``steps_per_epoch = n_split // batch_size`` batches, so the stream is a
pure function of (seed, epoch) and a resumed run can skip straight to its step. Under
DistributedDataParallel every process reads the same rows and keeps its own slice of each global
batch (``rank``, ``world``), so the processes stay in step.

Every chunk is read through the checks of :func:`pipeline.keypoints.write.open_keypoints`: NaN or Inf
in ``xy`` (or the truth) and a damaged shard are a :class:`pipeline.core.store.StoreError` naming the store,
the array and the instance, with the fix (``dvc repro -f keypoints``), before any batch reaches the
model (not a NaN loss a few steps later).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.keypoints.store import open_keypoints

__all__ = ["KeypointBatch", "KeypointStream"]


class KeypointBatch(NamedTuple):
    """One process's slice of a batch (B instances): xy: (B, N, 2) float32 image pixels (0 where invisible);
    visible: (B, N) bool; rows: (B,) int64; count: (B, N) uint16 pixels mapping to each vertex. With
    ``truth``: vertices (B, N, 3) float32 true camera-frame metres and camera (B, 3) float32 f, cx, cy. With
    ``confidence``: confidence (B, N) float16 in [0, 1] of each keypoint (0 where invisible; METHOD.md §3.3)."""

    xy: torch.Tensor
    visible: torch.Tensor
    rows: torch.Tensor
    count: torch.Tensor
    vertices: torch.Tensor | None = None
    camera: torch.Tensor | None = None
    confidence: torch.Tensor | None = None


# the batch field of each array read
_FIELDS = {"xy": "xy", "visible": "visible", "count": "count", "gt/vertices": "vertices", "gt/camera": "camera",
           "confidence": "confidence"}


class KeypointStream:
    """Seeded epochs of batches of one split of a keypoints store.

    Args:
        path: the keypoints store. template_hash: checked against the store (None: not checked).
        split: 0 train, 1 test. batch_size: global batch (divided among ``world`` processes).
        chunks_in_memory: chunks read and shuffled together. seed: order of chunks and rows.
        exclude: (n,) bool rows left out (e.g. :func:`holdout_rows`), or None.
        truth: also yield the true vertices and cameras (``gt/vertices``, ``gt/camera``; an error without).
        confidence: also yield the keypoints' ``confidence`` (``loss.confidence``).
        hidden: (n, N) bool keypoints to yield as invisible (confidence 0), e.g. those round 1 turns away
            (:mod:`pipeline.train.rounds`), or None.
    """

    def __init__(self, path: str | Path, batch_size: int, chunks_in_memory: int = 8, seed: int = 0,
                 split: int = 0, template_hash: str | None = None, rank: int = 0, world: int = 1,
                 exclude: np.ndarray | None = None, truth: bool = False, confidence: bool = False,
                 hidden: np.ndarray | None = None):
        self.root = open_keypoints(path, template_hash)
        self.xy = self.root["xy"]
        self.truth = truth
        self.names = ("xy", "visible", "count") + (("gt/vertices", "gt/camera") if truth else ()) + \
            (("confidence",) if confidence else ())
        if truth:
            gt = self.root["gt"] if "gt" in self.root else None
            if gt is None or not {"vertices", "camera"} <= set(gt.array_keys()):
                raise InputError(f"{path}: no ground truth (gt/vertices, gt/camera): loss.oracle_3d needs "
                                 f"synthetic data; set loss.oracle_3d: 0")
            if str(self.root.attrs.get("projection", "orthographic")) != "orthographic":
                raise InputError(f"{path}: loss.oracle_3d needs orthographic synthetic data "
                                 f"(synthetic.projection: orthographic)")
        split_of = np.asarray(self.root["split"][:])
        self.chunk = int(self.xy.chunks[0])
        self.n = len(split_of)
        self.mask = split_of == split
        if exclude is not None:
            self.mask &= ~np.asarray(exclude, bool)
        self.n_split = int(self.mask.sum())
        if self.n_split < 2:
            raise InputError(f"{path}: {self.n_split} instances in split {split}; training needs at least 2")
        if batch_size % world:
            raise InputError(f"train.batch_size = {batch_size} is not divisible by the {world} processes")
        self.batch_size = min(batch_size, self.n_split - self.n_split % world)
        self.local = self.batch_size // world
        self.chunks_in_memory = chunks_in_memory
        self.seed, self.rank, self.world = seed, rank, world
        self.n_vertices = int(self.xy.shape[1])
        if hidden is not None and np.shape(hidden) != (self.n, self.n_vertices):
            raise ValueError(f"hidden is {np.shape(hidden)}, the store {(self.n, self.n_vertices)}")
        self.hidden = hidden

    @property
    def steps_per_epoch(self) -> int:
        return self.n_split // self.batch_size

    def _read(self, chunk_ids: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """The wanted rows of some chunks: one array per ``self.names``, and their (n,) row numbers."""
        names = self.names
        got, rows = {k: [] for k in names}, []
        for c in np.sort(chunk_ids):
            lo, hi = c * self.chunk, min((c + 1) * self.chunk, self.n)
            keep = np.flatnonzero(self.mask[lo:hi])
            if len(keep):
                for k in names:
                    a = np.asarray(self.root[k][lo:hi])[keep]
                    if self.hidden is not None and k in ("visible", "confidence"):
                        a = np.where(self.hidden[lo + keep], 0, a).astype(a.dtype)
                    got[k].append(a)
                rows.append(lo + keep)
        if not rows:
            return [np.zeros((0, *self.root[k].shape[1:]), self.root[k].dtype) for k in names], np.zeros(0, np.int64)
        return [np.concatenate(got[k]) for k in names], np.concatenate(rows)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[KeypointBatch]:
        """This process's batches of epoch ``epoch``, skipping its first ``skip`` batches."""
        rng = np.random.default_rng([self.seed, epoch])
        n_chunks = -(-self.n // self.chunk)
        order = rng.permutation(n_chunks)
        names = self.names
        buf = [np.zeros((0, *self.root[k].shape[1:]), self.root[k].dtype) for k in names]
        buf_rows = np.zeros(0, np.int64)
        done = 0
        lo, hi = self.rank * self.local, (self.rank + 1) * self.local
        for g in range(0, n_chunks, self.chunks_in_memory):
            if done >= self.steps_per_epoch:
                break
            group = order[g:g + self.chunks_in_memory]
            arrays, rows = self._read(group)
            perm = rng.permutation(len(buf_rows) + len(rows))
            buf = [np.concatenate([b, a])[perm] for b, a in zip(buf, arrays)]
            buf_rows = np.concatenate([buf_rows, rows])[perm]
            while len(buf_rows) >= self.batch_size and done < self.steps_per_epoch:
                if done >= skip:
                    slices = {_FIELDS[k]: torch.from_numpy(b[lo:hi].copy()) for k, b in zip(names, buf)}
                    yield KeypointBatch(rows=torch.from_numpy(buf_rows[lo:hi].copy()), **slices)
                buf = [b[self.batch_size:] for b in buf]
                buf_rows = buf_rows[self.batch_size:]
                done += 1
