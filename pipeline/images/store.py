"""The read side of ``data/images.zarr`` (stage ``images``): a densepose store (layout: :mod:`pipeline.densepose.store`)
written by the synthetic source with photos (:mod:`pipeline.images.write`), so it adds ``rgb`` (n, S, S, 3) uint8,
``gt/occluder`` (n, S, S) bool and ``gt/crowd_box`` (n, 4) float32 to the densepose layout and holds both splits.
Size letters: ``n`` instances, ``S`` crop side (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.store import StoreGroup
from pipeline.densepose.store import open_densepose

__all__ = ["open_images"]


def open_images(path: str | Path, template_hash: str | None = None) -> StoreGroup:
    """Opens ``images.zarr`` read-only, checking it as a densepose store (:func:`pipeline.densepose.store.open_densepose`)
    for the template of ``template_hash``."""
    return open_densepose(path, template_hash)
