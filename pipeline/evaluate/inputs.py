"""The inputs of the instances that ``reports/index.html`` shows: where each instance sits in its crop, and the
crops themselves (the repaired IUV of ``iuv.zarr``, the RGB image of ``densepose.zarr`` when it has one).

A crop is the instance's ``box`` (x0, y0, x1, y1, image pixels) resampled to S x S pixels; crop pixel ``(r, c)``
has its centre at image ``(x0 + (c + 0.5) w / S, y0 + (r + 0.5) h / S)`` (the layout of densepose.zarr), so
image point ``(x, y)`` is crop point ``((x - x0) S / w, (y - y0) S / h)``, pixel ``c`` covering ``[c, c + 1)``.

The two stores are opened with :func:`pipeline.core.store.open_store` and the few arrays read here (their schema,
template and these arrays' shapes checked), not through their stages' read sides: the ``evaluate`` stage imports
no module of ``iuv`` or ``densepose`` (``tests/test_layout.py``), so editing them does not rerun it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.store import open_store
from pipeline.template.file import part_rgb

__all__ = ["Inputs", "IUV_SCHEMA", "DENSEPOSE_SCHEMA", "DEFAULT_CROP", "to_crop", "store_rows", "read_inputs"]

IUV_SCHEMA = "iuv/2"              # pipeline/iuv/store.py
DENSEPOSE_SCHEMA = "densepose/1"  # pipeline/densepose/store.py
DEFAULT_CROP = 112                # crop side when the keypoints store records none (DensePose's heatmaps)


class Inputs(NamedTuple):
    """What the page shows of ``n`` instances besides their reconstructions. Crops are (S, S, 3) uint8 RGB or
    None (no store given, the instance not in it, or no such array)."""

    crop: int                        # S, the crop side in pixels
    box: np.ndarray | None           # (n, 4) float64 x0, y0, x1, y1 image pixels; None: the store has no box
    true_pixels: np.ndarray | None   # (n, N, 2) float64 true vertices projected to image pixels (gt/pixels)
    iuv: list                        # n (S, S, 3) uint8 parts of the repaired IUV (CSE: the mask, grey), or None
    rgb: list                        # n (S, S, 3) uint8 RGB crops, or None
    notes: list[str]                 # what could not be found, one line each


def to_crop(points: np.ndarray, box: np.ndarray, crop: int) -> np.ndarray:
    """(n, P, 2) float64 crop coordinates of image points (module docstring).

    Args:
        points: (n, P, 2) float x, y image pixels. box: (n, 4) float x0, y0, x1, y1. crop: S.
    """
    points, box = np.asarray(points, np.float64), np.asarray(box, np.float64)
    if points.ndim != 3 or points.shape[-1] != 2 or box.shape != (len(points), 4):
        raise InputError(f"points must be (n, P, 2) and box (n, 4), got {points.shape} and {box.shape}")
    size = np.maximum(box[:, 2:] - box[:, :2], 1e-9)  # (n, 2) w, h
    return (points - box[:, None, :2]) * (crop / size[:, None])


def store_rows(source_index: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """(n,) int64 row of each ``wanted`` densepose.zarr row in a store whose rows came from ``source_index``
    ((m,) int), -1 where it is not there."""
    source_index, wanted = np.asarray(source_index, np.int64), np.asarray(wanted, np.int64)
    out = np.full(len(wanted), -1, np.int64)
    if len(source_index) == 0:
        return out
    order = np.argsort(source_index, kind="stable")
    pos = np.minimum(np.searchsorted(source_index[order], wanted), len(order) - 1)
    found = source_index[order][pos] == wanted
    out[found] = order[pos][found]
    return out


def _read_rows(array, rows: np.ndarray) -> list:
    """Rows of a store array, None where a row is -1 (read in one sorted selection)."""
    out: list = [None] * len(rows)
    present = np.flatnonzero(rows >= 0)
    if len(present):
        wanted = np.unique(rows[present])
        values = array.get_orthogonal_selection((wanted,))
        for i in present:
            out[i] = values[np.searchsorted(wanted, rows[i])]
    return out


def _iuv_image(iuv: np.ndarray | None) -> np.ndarray | None:
    """(S, S, 3) uint8 part colours of an encoded IUV crop (white background, magenta missing)."""
    return None if iuv is None else np.round(255 * part_rgb(iuv[..., 0])).astype(np.uint8)


def _mask_image(mask: np.ndarray | None) -> np.ndarray | None:
    """(S, S, 3) uint8 grey silhouette of a CSE foreground mask (S, S) bool."""
    return None if mask is None else np.repeat(np.where(mask, 150, 255).astype(np.uint8)[..., None], 3, axis=-1)


def read_inputs(root, rows, iuv: str | Path | None = None, densepose: str | Path | None = None,
                template_hash: str | None = None) -> Inputs:
    """The inputs of the keypoints store's ``rows`` (:class:`Inputs`).

    Args:
        root: the opened keypoints.zarr. rows: (n,) int its rows, ascending.
        iuv, densepose: iuv.zarr and densepose.zarr, or None (no crops of that kind).
        template_hash: the template's, checked against each store's.
    Raises:
        StoreError: a store of another schema or template, or whose arrays read here have another shape.
    """
    rows = np.asarray(rows, np.int64)
    n = len(rows)
    crop = int(root.attrs.get("crop", DEFAULT_CROP))
    notes = []

    def read(name: str) -> np.ndarray | None:
        return np.asarray(root[name].get_orthogonal_selection((rows,))) if name in root and n else None

    box = read("box")
    true_pixels = read("gt/pixels")
    source = read("source_index")
    images, photos = [None] * n, [None] * n
    if box is None:
        notes.append("the keypoints store has no box: the reconstruction cannot be placed in a crop")
    if source is None and (iuv or densepose):
        notes.append("the keypoints store has no source_index: its crops cannot be found")
    if iuv is not None and source is not None:
        store = open_store(iuv, schema=IUV_SCHEMA, required=("source_index",), template_hash=template_hash,
                           layout={"iuv": (("S", "S", 3), "uint8"), "mask": (("S", "S"), "bool"),
                                   "source_index": ((), "int32")}, stage="iuv")
        at = store_rows(store["source_index"][:], source)
        name = "iuv" if "iuv" in store else "mask" if "mask" in store else None
        if name is not None:
            crop = int(store[name].shape[1])
            images = [(_iuv_image if name == "iuv" else _mask_image)(x) for x in _read_rows(store[name], at)]
        if name is None or (at < 0).any():
            notes.append(f"{iuv}: no IUV crop for {int((at < 0).sum()) if name else n} of the {n} instances")
    if densepose is not None and source is not None:
        store = open_store(densepose, schema=DENSEPOSE_SCHEMA, template_hash=template_hash,
                           layout={"rgb": (("S", "S", 3), "uint8")}, stage="densepose")
        if "rgb" in store:
            photos = _read_rows(store["rgb"], np.where(source < len(store["rgb"]), source, -1))
    return Inputs(crop, None if box is None else box.astype(np.float64),
                  None if true_pixels is None else true_pixels.astype(np.float64), images, photos, notes)
