"""The ``data/densepose.zarr`` store: DensePose output per instance, whatever its source.

Every source (synthetic, detectron2, precomputed) writes this layout, so later stages do not care
where the data came from. ``n`` instances, crops of ``S x S`` pixels covering each box, ``D``
embedding dims, ``N`` template vertices, ``J`` joints.

=================  =====================  ==================================================
array              shape, dtype           meaning
=================  =====================  ==================================================
labels             (n, S, S) uint8        chart models: part 0..24 (0 background), 255 = missing
uv                 (n, 2, S, S) float16   chart models: U, V in [0, 1]; NaN = missing
embedding          (n, D, S, S) float16   CSE models: pixel embeddings (not normalised)
mask               (n, S, S) bool         CSE models: foreground
box                (n, 4) float32         x0, y0, x1, y1 in image pixels
score              (n,) float32           detection score (1 for synthetic)
image              (n,) int32             index into the ``images`` attribute
split              (n,) uint8             0 train, 1 test
gt/vertices        (n, N, 3) float32      synthetic only: camera-frame vertices, metres
gt/visible         (n, N) bool            synthetic only: vertex seen by the camera (3D test)
gt/occluded        (n, N) bool            synthetic only: vertex hidden by a pasted occluder or a neighbour
gt/joints          (n, J, 3) float32      synthetic only: camera-frame joints, metres
gt/iuv             (n, S, S, 3) uint8     synthetic only: exact IUV (Detectron2 encoding)
gt/depth           (n, S, S) float32      synthetic only: camera-frame z of the surface, metres (0 off body)
gt/camera          (n, 3) float32         synthetic only: f, cx, cy: image = f (x, y) + (cx, cy) when
                                          orthographic (f pixels/metre), f (x, y) / z + (cx, cy) when
                                          perspective (attribute ``projection``)
gt/body            (n,) int32             synthetic only: the body (phenotype and pose) of the instance
gt/mode            (n,) int8              synthetic only: the body's pose mode, an index into the ``pose_modes``
                                          attribute (walk, reach, sit, bend)
rgb                (n, S, S, 3) uint8     synthetic with ``synthetic.images``: the photo-like RGB crop (sRGB)
gt/occluder        (n, S, S) bool         synthetic with ``synthetic.images``: pixels of the body hidden by the
                                          pasted occluder or by a neighbour, and the occluder's other pixels
gt/crowd_box       (n, 4) float32         synthetic with ``synthetic.images``: the neighbour's box (x0, y0, x1, y1,
                                          image pixels, margin as ``box``); NaN without a neighbour
=================  =====================  ==================================================

Crop pixel ``(r, c)`` has image centre ``(x0 + (c + 0.5) w / S, y0 + (r + 0.5) h / S)``.
Group attributes: ``schema`` (:data:`SCHEMA`), ``source``, ``crop`` (S), ``kinds`` (a list of
"chart" and/or "cse"), ``images`` (list of image names), ``template_hash``, ``params``; the synthetic
source adds ``projection``, ``image_size`` and ``pose_modes`` (the names ``gt/mode`` indexes); real-image
sources add ``image_sizes`` ([H, W] per image, [0, 0] when unknown) and ``skipped_images``, and CSE
output from them ``cse_mesh`` (the mesh its embeddings refer to: the template's, ``template.source:
cse``; synthetic CSE maps use the template's own embeddings).

:func:`open_densepose` checks the layout above (dtypes and per-instance shapes, S the ``crop``
attribute) and refuses NaN or Inf read from the arrays of :data:`FINITE` (:func:`pipeline.core.store.open_store`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.core.errors import InputError
from pipeline.core.store import (FINITE, INSTANCE_SPECS, SPLIT_TEST, SPLIT_TRAIN, StoreError, StoreGroup, open_store,
                                 truth_specs)

__all__ = ["SCHEMA", "SPLIT_TRAIN", "SPLIT_TEST", "FINITE", "KIND_ARRAYS", "densepose_specs", "densepose_layout",
           "open_densepose", "require_kind"]

SCHEMA = "densepose/1"
KIND_ARRAYS = {"chart": ("labels", "uv"), "cse": ("embedding", "mask")}
_KIND_FIX = {
    "cse": "densepose.kind: cse needs CSE output: set synthetic.cse: true (densepose.source: synthetic), use a "
           "DensePose CSE model or dump (detectron2, precomputed), or set densepose.kind: chart",
    "chart": "densepose.kind: chart needs chart (IUV) output: use a DensePose chart model or dump, or set "
             "densepose.kind: cse",
}


def densepose_specs(crop: int | str, chart: bool = True, cse_dim: int | str | None = None,
                    n_vertices: int | str | None = None, n_joints: int | str = 14, images: bool = False) -> dict:
    """Per-instance shapes and dtypes of the store's arrays, for :class:`pipeline.core.store.StoreWriter`.

    Args:
        crop: S. chart: write ``labels``/``uv``. cse_dim: D, to write ``embedding``/``mask``.
        n_vertices: N, to write the synthetic ground truth under ``gt/``. n_joints: J. images: write the
        synthetic RGB crops ``rgb`` and their occluder masks ``gt/occluder``.
        Sizes may be symbols ("S") to describe the layout (:func:`densepose_layout`).
    """
    if not chart and cse_dim is None:
        raise InputError("a densepose store holds chart output, CSE output or both")
    s = crop
    specs = dict(INSTANCE_SPECS)
    if chart:
        specs["labels"] = ((s, s), "uint8")
        specs["uv"] = ((2, s, s), "float16")
    if cse_dim is not None:
        specs["embedding"] = ((cse_dim, s, s), "float16")
        specs["mask"] = ((s, s), "bool")
    if n_vertices is not None:
        specs.update(truth_specs(n_vertices, n_joints, s))
    if images:
        specs["rgb"] = ((s, s, 3), "uint8")
        specs["gt/occluder"] = ((s, s), "bool")
        specs["gt/crowd_box"] = ((4,), "float32")
    return specs


def densepose_layout() -> dict:
    """Every array a densepose.zarr may hold: name -> (per-instance shape in symbols S, D, N, J, dtype)."""
    return densepose_specs("S", chart=True, cse_dim="D", n_vertices="N", n_joints="J", images=True)


def require_kind(root: StoreGroup, path: str | Path, kind: str | None, arrays: Mapping[str, tuple[str, ...]]) -> None:
    """Raises StoreError (with the params fix) unless the store holds ``kind`` output ("chart", "cse"; None:
    any) and its ``arrays[kind]``."""
    if kind is None:
        return
    held = list(root.attrs.get("kinds", []))
    if kind not in held:
        raise StoreError(f"{path}: holds {held} output, not {kind!r}; {_KIND_FIX.get(kind, '')}")
    missing = [a for a in arrays[kind] if a not in root]
    if missing:
        raise StoreError(f"{path}: {kind} output without its array(s) {', '.join(map(repr, missing))}; {root.fix}")


def open_densepose(path: str | Path, template_hash: str | None = None, kind: str | None = None) -> StoreGroup:
    """Opens ``densepose.zarr`` read-only, checking schema, template, layout and that ``kind`` is present."""
    root = open_store(path, schema=SCHEMA, required=("box", "score", "image", "split"), template_hash=template_hash,
                      layout=densepose_layout(), finite=FINITE, stage="densepose")
    require_kind(root, path, kind, KIND_ARRAYS)
    return root
