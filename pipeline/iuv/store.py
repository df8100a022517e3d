"""``data/iuv.zarr``, the read side of the ``iuv`` stage: its layout, schema and :func:`open_iuv`
(written by :mod:`pipeline.iuv.write`; METHOD.md §2).

``data/iuv.zarr`` layout (``n`` kept instances, crops ``S x S``, ``D`` embedding dims):

====================  =====================  ==============================================
array                 shape, dtype           meaning
====================  =====================  ==============================================
iuv                   (n, S, S, 3) uint8     chart output: Detectron2-encoded IUV (I, 255U, 255V)
mask                  (n, S, S) bool         CSE output: repaired foreground
embedding             (n, D, S, S) float16   CSE output: repaired pixel embeddings, 0 off the mask
box, score, image,    as in densepose.zarr   carried through
split
source_index          (n,) int32             the instance's row in densepose.zarr
pixels_filled         (n,) int32             missing pixels repaired (holes included)
holes_filled          (n,) int32             hole pixels filled
components_dropped    (n,) int32             small components removed
pixels_dropped        (n,) int32             foreground pixels removed
filled                (n, S, S) bool         pixels the repair made (label or U, V filled, holes
                                             included; CSE: embedding copied), not the input's:
                                             the keypoints stage's confidence (1 byte a pixel,
                                             mostly 0: a few % of ``iuv``'s bytes compressed)
gt/iuv                (n, S, S, 3) uint8     synthetic only: the exact IUV, as in densepose.zarr
                                             (the keypoints stage measures keypoints on it too)
gt/...                as in densepose.zarr   the other synthetic ground truth carried through,
                                             except the per-pixel ``gt/depth``
====================  =====================  ==============================================

Group attributes: ``schema`` (:data:`SCHEMA`), ``params`` (the iuv section), ``counts``, and those of
densepose.zarr carried through (``kinds``, ``crop``, ``images``, ``source``, ``template_hash``, ...).

:func:`open_iuv` checks the layout above and refuses NaN or Inf read from the arrays of
:data:`pipeline.densepose.store.FINITE` (:func:`pipeline.core.store.open_store`).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.store import FINITE, StoreGroup, open_store
from pipeline.densepose.store import densepose_layout, require_kind

__all__ = ["SCHEMA", "COUNT_NAMES", "CARRIED", "GT_DROPPED", "iuv_layout", "open_iuv"]

SCHEMA = "iuv/2"  # 2: filled
CARRIED = ("box", "score", "image", "split")
COUNT_NAMES = ("pixels_filled", "holes_filled", "components_dropped", "pixels_dropped")  # per instance
GT_DROPPED = ("gt/depth", "gt/occluder")  # per-pixel truth that no later stage reads
_KIND_ARRAYS = {"chart": ("iuv",), "cse": ("mask", "embedding")}


def iuv_layout() -> dict:
    """Every array an iuv.zarr may hold: name -> (per-instance shape in symbols S, D, N, J, dtype)."""
    dp = densepose_layout()
    layout = {k: v for k, v in dp.items()
              if k in CARRIED + ("mask", "embedding") or (k.startswith("gt/") and k not in GT_DROPPED)}
    layout["iuv"] = (("S", "S", 3), "uint8")
    layout.update({k: ((), "int32") for k in ("source_index",) + tuple(COUNT_NAMES)})
    layout["filled"] = (("S", "S"), "bool")
    return layout


def open_iuv(path: str | Path, template_hash: str | None = None, kind: str | None = None) -> StoreGroup:
    """Opens ``iuv.zarr`` read-only, checking schema, template, layout and that ``kind`` is present."""
    root = open_store(path, schema=SCHEMA, required=CARRIED + ("source_index", "filled"), template_hash=template_hash,
                      layout=iuv_layout(), finite=FINITE, stage="iuv")
    require_kind(root, path, kind, _KIND_ARRAYS)
    return root
