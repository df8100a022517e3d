"""The instances the ``evaluate`` stage measures: which store rows, read and reconstructed a batch at a time,
and the first ones kept whole for the reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple
import logging

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.logs import progress as progress_bar
from pipeline.core.store import StoreError

log = logging.getLogger(__name__)


# (B, N, 2) float32 keypoints (pixels), (B, N) bool visible, (B,) int store rows -> (B, N, 3) image frame
Reconstruct = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Kept:
    """The first evaluated instances, kept whole for the reports (depth-centred; camera-frame metres with
    ground truth, else image-frame pixels and no ``true``). error: the per-instance headline error."""

    rows: list = field(default_factory=list)
    xy: list = field(default_factory=list)
    visible: list = field(default_factory=list)
    pred: list = field(default_factory=list)
    true: list = field(default_factory=list)
    error: list = field(default_factory=list)

    def add(self, limit: int, **arrays) -> None:
        room = limit - len(self.rows)
        if room > 0:
            for k, v in arrays.items():
                v = v[:room]  # arrays copied: a view would keep the batch's whole array alive
                getattr(self, k).extend(list(np.array(v)) if isinstance(v, np.ndarray) else v)


class Batch(NamedTuple):
    """Store rows reconstructed together. read(name): another array of the store at these rows."""

    rows: np.ndarray     # (B,) int64
    xy: np.ndarray       # (B, N, 2) float32 pixels
    visible: np.ndarray  # (B, N) bool
    image: np.ndarray    # (B, N, 3) float64 reconstruction, image frame
    read: Callable[[str], np.ndarray]


def has_ground_truth(root) -> bool:
    return "gt" in root and {"vertices", "camera"} <= set(root["gt"].array_keys())


def rows_to_evaluate(root, path, ground_truth: bool) -> tuple[np.ndarray, str]:
    """(n,) store rows to evaluate and which they are: the test split, or without ground truth and
    without a test split every row ("all")."""
    split = root["split"][:]
    test = np.flatnonzero(split == 1)
    if len(test):
        return test, "test"
    if ground_truth or len(split) == 0:
        raise StoreError(f"{path}: no test instance (split == 1)")
    log.warning("%s: no test instance (split == 1): reconstructing all %d instances; the 2D re-projection error "
                "is then measured on instances the model was trained on", path, len(split))
    return np.arange(len(split)), "all"


def reconstructed_batches(root, rows: np.ndarray, reconstruct: Reconstruct, batch_size: int,
             progress: bool) -> Iterator[Batch]:
    """Reconstructs ``rows`` of the store ``batch_size`` at a time (each batch reads its span once)."""
    for a in progress_bar(range(0, len(rows), batch_size), desc="evaluate", unit="batch", enabled=progress):
        r = rows[a:a + batch_size]
        sel = slice(int(r[0]), int(r[-1]) + 1)  # read the span, keep the rows
        local = r - r[0]

        def read(name: str, sel=sel, local=local) -> np.ndarray:
            return root[name][sel][local]

        xy = read("xy")
        visible = read("visible").astype(bool)
        image = np.asarray(reconstruct(xy, visible, r), np.float64)
        if image.shape != xy.shape[:2] + (3,):
            raise InputError(f"reconstruct returned {image.shape}, expected {xy.shape[:2] + (3,)}")
        yield Batch(r, xy, visible, image, read)
        del xy, visible, image  # freed by the consumer before the next batch is read
