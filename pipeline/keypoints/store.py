"""``data/keypoints.zarr``, the read side of the ``keypoints`` stage: its layout, schema,
:func:`open_keypoints` and the validation hold-out :func:`holdout_rows` (written by
:mod:`pipeline.keypoints.write`; METHOD.md §3). Training and evaluation import only this module of
the stages before them, besides the template's read side.

``data/keypoints.zarr`` layout (``n`` kept instances, ``N`` template vertices):

=================  ====================  ===================================================
array              shape, dtype          meaning
=================  ====================  ===================================================
xy                 (n, N, 2) float32     vertex keypoints, image pixels; 0 where invisible
visible            (n, N) bool           some pixel maps to the vertex
count              (n, N) uint16         pixels mapping to the vertex
confidence         (n, N) float16        in [0, 1], 0 where invisible: the share of the vertex's
                                         pixels the IUV repair did not make times its agreement
                                         with its mesh neighbours (pipeline/keypoints/confidence.py)
visible_area       (n,) float32          share of the template's surface area visible
box, score,        as in densepose.zarr  carried through
image, split
source_index       (n,) int32            the instance's row in densepose.zarr
gt/vertices,       as in densepose.zarr  synthetic ground truth carried through (not the
gt/visible, ...                          per-pixel ``gt/iuv`` and ``gt/depth``)
gt/pixels          (n, N, 2) float32     synthetic only: true vertices projected to image pixels
=================  ====================  ===================================================

Group attributes: ``schema`` (:data:`SCHEMA`), ``mode`` (iuv or cse), ``template_hash``,
``params`` (the keypoints section), ``counts``, and those of iuv.zarr carried through.

:func:`open_keypoints` checks this layout (N the same in every array) and refuses NaN or Inf read
from ``xy``, ``confidence``, ``visible_area``, ``gt/pixels`` and the float arrays carried through, wherever batches
are read (training, evaluation): a :class:`pipeline.core.store.StoreError` naming the store, the array and
the instances, with the fix (``dvc repro -f keypoints``).

:func:`instances_fingerprint` names which instances a store holds (its images, and each row's image, box and
split), whatever their keypoints: the trainer records its store's in the checkpoint, so the evaluation can tell
whether it measures the model on the instances it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.store import FINITE, INSTANCE_SPECS, SPLIT_TRAIN, StoreGroup, open_store, truth_specs

__all__ = ["SCHEMA", "CARRIED", "GT_DROPPED", "keypoint_specs", "keypoints_layout", "open_keypoints", "holdout_rows",
           "instances_fingerprint"]

SCHEMA = "keypoints/2"  # 2: confidence
CARRIED = (*INSTANCE_SPECS, "source_index")  # copied from iuv.zarr
GT_DROPPED = ("gt/iuv", "gt/depth", "gt/occluder")  # per-pixel truth: gt/iuv is read for the exact measures, not written


def keypoint_specs(n_vertices: int | str) -> dict:
    """Per-instance shapes and dtypes of the keypoint arrays (``xy``, ``visible``, ``count``, ``confidence``,
    ``visible_area``) of N = ``n_vertices`` vertices (a symbol to describe the layout)."""
    return {"xy": ((n_vertices, 2), "float32"), "visible": ((n_vertices,), "bool"), "count": ((n_vertices,), "uint16"),
            "confidence": ((n_vertices,), "float16"), "visible_area": ((), "float32")}


def keypoints_layout() -> dict:
    """Every array a keypoints.zarr may hold: name -> (per-instance shape in symbols N, J, dtype)."""
    layout = {**INSTANCE_SPECS, "source_index": ((), "int32")}  # CARRIED
    layout.update({k: v for k, v in truth_specs("N", "J", "S").items() if k not in GT_DROPPED})
    layout.update(keypoint_specs("N"))
    layout["gt/pixels"] = (("N", 2), "float32")
    return layout


def open_keypoints(path: str | Path, template_hash: str | None = None) -> StoreGroup:
    """Opens ``keypoints.zarr`` read-only, checking schema, template, layout and shard files; reads of
    ``xy`` and the other float arrays refuse NaN and Inf (module docstring)."""
    return open_store(path, schema=SCHEMA, required=("xy", "visible", "count", "confidence", "split"),
                      template_hash=template_hash, layout=keypoints_layout(),
                      finite=FINITE + ("xy", "confidence", "visible_area", "gt/pixels"), stage="keypoints")


def holdout_rows(root, share: float, seed: int) -> np.ndarray:
    """(n,) bool: the train rows (``split == 0``) of a keypoints store held out for validation.

    Whole groups are held out, so no body (synthetic ``gt/body``) or image (``image``) is on both sides:
    ``round(share * groups)`` of the train groups, drawn with ``seed``. ``share`` 0 holds out nothing.
    """
    split = np.asarray(root["split"][:])
    out = np.zeros(len(split), bool)
    if share <= 0:
        return out
    key = "gt/body" if "gt" in root and "body" in root["gt"] else "image" if "image" in root else None
    group = np.asarray(root[key][:]) if key else np.arange(len(split))
    train = split == SPLIT_TRAIN
    groups = np.unique(group[train])
    n_out = int(round(share * len(groups)))
    if n_out == 0 or n_out == len(groups):
        raise InputError(f"train.val_share = {share}: holds out {n_out} of {len(groups)} train groups "
                         f"({key or 'rows'}); choose a share that leaves both sides non-empty")
    chosen = np.random.default_rng(seed).permutation(groups)[:n_out]
    out[train] = np.isin(group[train], chosen)
    return out


def instances_fingerprint(root) -> str:
    """Which instances a keypoints store holds, and which are train rows: sha256 (16 hex digits) of the ``images``
    attribute and of the ``image``, ``box`` and ``split`` arrays (name, dtype, shape, bytes). Two stores of the same
    detections with the same split share it, however their keypoints were made (iuv and keypoints params)."""
    h = hashlib.sha256(json.dumps([str(name) for name in root.attrs.get("images", [])]).encode())
    for name in ("image", "box", "split"):
        a = np.ascontiguousarray(root[name][:]) if name in root else np.zeros(0, np.uint8)
        h.update(f"{name} {a.dtype.str} {a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
