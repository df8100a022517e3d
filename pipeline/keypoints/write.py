"""The ``keypoints`` stage's work: repaired IUV (or CSE) crops to template-vertex keypoints and their confidence
(:mod:`pipeline.keypoints.confidence`; layout: :mod:`pipeline.keypoints.store`). :func:`write_keypoints` is the stage's entry point; ``densepose.kind``
picks the correspondence read (chart: IUV through a lookup table; cse: nearest vertex embedding).

On synthetic data ``counts`` (and the stage's metrics) hold the keypoint accuracy and visibility
precision/recall of the written keypoints (from the repaired IUV) against ``gt/pixels`` and
``gt/visible`` and, for chart data, the same measures of keypoints from the exact rendering ``gt/iuv``
of the same instances under ``exact``: what the IUV-to-keypoint mapping itself achieves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.core.cluster import map_chunks
from pipeline.core.config import Params, as_dict
from pipeline.core.errors import InputError
from pipeline.core.stage import resolve_device
from pipeline.core.store import StoreError, StoreWriter
from pipeline.geometry.cameras import project
from pipeline.geometry.mesh import vertex_areas
from pipeline.iuv.store import open_iuv
from pipeline.keypoints.confidence import keypoint_confidence
from pipeline.keypoints.lookup import (aggregate, drop_inconsistent, iuv_lookup_table, iuv_to_vertices,
                                       nearest_embedding, one_ring, visible_area_share)
from pipeline.keypoints.store import CARRIED, GT_DROPPED, SCHEMA, keypoint_specs
from pipeline.template.file import Template

log = logging.getLogger(__name__)

__all__ = ["KeypointsSummary", "ChunkContext", "ChunkResult", "write_keypoints", "extract_keypoints", "keypoint_chunk",
           "keypoint_quality", "quality_summary"]



@dataclass(frozen=True)
class KeypointsSummary:
    """What the ``keypoints`` stage did. :meth:`metrics` is ``metrics/keypoints.json`` and the store's
    ``counts`` attribute (no timings); the stage logs :meth:`lines`.

    Attributes:
        kind: ``densepose.kind`` (chart or cse).  instances_in, instances_out: instances read and kept.
        quality: on synthetic data, the :func:`quality_summary` of the written keypoints against the truth.
        exact: on synthetic chart data, the same measures of keypoints mapped from the exact rendering
            ``gt/iuv``: what the IUV-to-keypoint mapping itself achieves (without the consistency check).
        dropped_inconsistent: keypoints of kept instances removed by :func:`drop_inconsistent`.
        seconds, device: logged only.
    """

    kind: str
    instances_in: int
    instances_out: int
    quality: Mapping[str, float] | None = None
    exact: Mapping[str, float] | None = None
    dropped_inconsistent: int = 0
    seconds: float = 0.0
    device: str = ""

    def metrics(self) -> dict:
        out = {"instances_in": self.instances_in, "instances_out": self.instances_out,
               "dropped_small_visible_area": self.instances_in - self.instances_out,
               "dropped_inconsistent_keypoints": self.dropped_inconsistent, **(self.quality or {})}
        if self.exact is not None:
            out["exact"] = dict(self.exact)
        return out

    def lines(self) -> list[str]:
        rate = f" in {self.seconds:.1f} s ({self.instances_in / self.seconds:.0f}/s)" if self.seconds else ""
        out = [f"{self.kind} correspondence on {self.device or 'cpu'}: {self.instances_in} instances{rate}; kept "
               f"{self.instances_out}"]
        for what, q in (("against ground truth", self.quality), ("from the exact IUV", self.exact)):
            if q is not None:
                out.append(f"{what}: median error {q['median_error_px']:.3f} px, visibility precision "
                           f"{q['visibility_precision']:.3f}, recall {q['visibility_recall']:.3f}")
        return out


def write_keypoints(params: Params, iuv: str | Path, template: Template, out: str | Path) -> KeypointsSummary:
    """The ``keypoints`` stage: ``iuv`` (iuv.zarr) to ``out`` (keypoints.zarr) for ``template``."""
    device = resolve_device(params.common.device)
    t0 = time.perf_counter()
    summary = extract_keypoints(iuv, out, template, params.densepose.kind, params.keypoints.min_visible_area,
                                device=device, params=as_dict(params.keypoints),
                                max_inconsistency=params.keypoints.max_inconsistency,
                                confidence_sigma=params.keypoints.confidence_sigma, workers=params.cluster.workers, scheduler=params.cluster.scheduler)
    return replace(summary, seconds=time.perf_counter() - t0, device=device)

def keypoint_quality(xy, visible, gt_pixels, gt_visible, boxes, crop: int) -> np.ndarray:
    """Sums for the keypoint metrics of a block: pixel distances and visibility confusion.

    Returns:
        (distances (P,) float64 of visible vertices, in source-image pixels and in crop pixels,
        and [tp, fp, fn] counts of predicted against true visibility).
    """
    d = np.linalg.norm(xy - gt_pixels, axis=-1)  # (n, N)
    scale = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / crop  # image px per crop px
    d_crop = d / scale[:, None]
    tp = int((visible & gt_visible).sum())
    fp = int((visible & ~gt_visible).sum())
    fn = int((~visible & gt_visible).sum())
    return d[visible], d_crop[visible], np.array([tp, fp, fn])


def quality_summary(blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """The keypoint metrics of a whole store.

    Args:
        blocks: the :func:`keypoint_quality` output of every block.
    Returns:
        dict of ``median_error_px``, ``mean_error_px`` (source-image pixels), ``median_error_crop_px``,
        ``visibility_precision`` and ``visibility_recall`` (0 where nothing is predicted or true).
    """
    d = np.concatenate([b[0] for b in blocks])
    d_crop = np.concatenate([b[1] for b in blocks])
    tp, fp, fn = (int(x) for x in np.sum([b[2] for b in blocks], axis=0))
    return {"median_error_px": float(np.median(d)), "mean_error_px": float(d.mean()),
            "median_error_crop_px": float(np.median(d_crop)),
            "visibility_precision": tp / max(tp + fp, 1), "visibility_recall": tp / max(tp + fn, 1)}


@dataclass(frozen=True)
class ChunkContext:
    """What every chunk of :func:`extract_keypoints` needs (sent to each worker once): the source store's
    path, the correspondence ``kind``, the IUV ``lut`` (25, 256, 256) int32 (chart) or the template's
    ``embedding`` (N, D) float (cse), vertex ``areas`` (N,), the :func:`one_ring` ``ring`` (N, K) (the
    consistency check and the confidence), the thresholds, the confidence's σ (crop pixels), the crop side, the
    ground truth carried and measured, the camera ``projection`` and the torch ``device`` of the embedding
    search."""

    src: str
    kind: str
    lut: np.ndarray | None
    areas: np.ndarray
    ring: np.ndarray
    embedding: np.ndarray | None
    min_visible_area: float
    max_inconsistency: float
    confidence_sigma: float
    crop: int
    gt_names: list[str]
    has_gt: bool
    has_exact: bool
    projection: str
    device: str


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's kept rows (``block``, None when none is kept), their count, the keypoints dropped as
    inconsistent, and :func:`keypoint_quality` of the written and of the exact keypoints (None without truth)."""

    block: dict | None
    kept: int
    dropped: int
    quality: tuple | None
    exact: tuple | None


def keypoint_chunk(ctx: ChunkContext, a: int, b: int) -> ChunkResult:
    """Keypoints of rows ``a:b`` of the iuv store ``ctx.src`` (one task of :func:`extract_keypoints`)."""
    root = open_iuv(ctx.src)
    n_v = len(ctx.areas)
    boxes = root["box"][a:b]
    filled = root["filled"][a:b]
    if ctx.kind == "chart":
        vertex = iuv_to_vertices(root["iuv"][a:b], ctx.lut)
    else:
        mask = root["mask"][a:b]
        emb = root["embedding"][a:b].astype(np.float32)  # (n, D, S, S)
        vertex = np.full(mask.shape, -1, np.int64)
        pix = np.moveaxis(emb, 1, -1)[mask]  # (P, D)
        vertex[mask] = nearest_embedding(pix, ctx.embedding, device=ctx.device)
    kp = aggregate(vertex, boxes, n_v)
    gone = np.zeros(kp.visible.shape, bool)
    if ctx.max_inconsistency > 0:
        kp, gone = drop_inconsistent(kp, ctx.ring, boxes, ctx.crop, ctx.max_inconsistency)
    confidence = keypoint_confidence(kp, vertex, filled, ctx.ring, boxes, ctx.crop, ctx.confidence_sigma)
    share = visible_area_share(kp.visible, ctx.areas)
    keep = share >= ctx.min_visible_area
    block = {"xy": kp.xy[keep], "visible": kp.visible[keep], "count": kp.count[keep], "visible_area": share[keep],
             "confidence": confidence[keep]}
    rows = {k: root[k][a:b] for k in CARRIED + tuple(ctx.gt_names)}
    block.update({k: v[keep] for k, v in rows.items()})
    quality = exact = None
    if ctx.has_gt:
        camera = rows["gt/camera"]  # (n, 3) f, cx, cy
        gt_px = project(rows["gt/vertices"], camera[:, 0], camera[:, 1:], ctx.projection).astype(np.float32)
        block["gt/pixels"] = gt_px[keep]
        quality = keypoint_quality(kp.xy[keep], kp.visible[keep], gt_px[keep], rows["gt/visible"][keep], boxes[keep],
                                   ctx.crop)
    if ctx.has_exact:
        ex = aggregate(iuv_to_vertices(root["gt/iuv"][a:b][keep], ctx.lut), boxes[keep], n_v)
        exact = keypoint_quality(ex.xy, ex.visible, gt_px[keep], rows["gt/visible"][keep], boxes[keep], ctx.crop)
    return ChunkResult(block if keep.any() else None, int(keep.sum()), int(gone[keep].sum()), quality, exact)


def extract_keypoints(src: str | Path, dst: str | Path, template: Template, kind: str, min_visible_area: float,
                      device: str = "cpu", params: dict | None = None, progress: bool = True,
                      max_inconsistency: float = 0.0, confidence_sigma: float = 4.0, workers: int = 1,
                      scheduler: str = "") -> KeypointsSummary:
    """Writes ``keypoints.zarr`` from the ``kind`` ("chart" or "cse") output of ``iuv.zarr``; returns its summary:
    counts and, on synthetic data, the :func:`quality_summary` of the written keypoints against the ground
    truth. For chart data, when
    iuv.zarr holds the exact rendering ``gt/iuv``, also ``exact``: the same measures of keypoints
    mapped (same lookup table) from ``gt/iuv`` of the kept instances; they are not written.
    ``max_inconsistency`` > 0: keypoints farther than this many crop pixels from their mesh neighbours'
    are dropped (:func:`pipeline.keypoints.lookup.drop_inconsistent`), before the visible-area check.
    ``confidence_sigma``: σ of the keypoints' confidence, crop pixels (:mod:`pipeline.keypoints.confidence`).
    ``workers``, ``scheduler``: where the chunks run (:func:`pipeline.core.cluster.map_chunks`); the store is
    the same whatever they are.

    Raises:
        StoreError: another template, a missing array, or no instance left (nothing written then).
    """
    if kind not in ("chart", "cse"):
        raise InputError(f"densepose.kind = {kind!r}: allowed 'chart' or 'cse'")
    root = open_iuv(src, template_hash=template.hash, kind=kind)
    attrs = dict(root.attrs)
    n_in, n_v = root["box"].shape[0], len(template.vertices)
    crop = int(attrs["crop"])
    gt_all = [f"gt/{k}" for k in sorted(root["gt"].array_keys())] if "gt" in root else []
    gt_names = [k for k in gt_all if k not in GT_DROPPED]
    has_gt = {"gt/vertices", "gt/visible", "gt/camera"} <= set(gt_names)
    has_exact = has_gt and kind == "chart" and "gt/iuv" in gt_all
    if "gt/vertices" in gt_names and root["gt/vertices"].shape[1] != n_v:
        raise StoreError(f"{src}: gt/vertices has {root['gt/vertices'].shape[1]} vertices, the template {n_v}")
    specs = keypoint_specs(n_v)
    specs.update({k: (root[k].shape[1:], root[k].dtype.str) for k in CARRIED + tuple(gt_names)})
    if has_gt:
        specs["gt/pixels"] = ((n_v, 2), "float32")
    out_attrs = {k: v for k, v in attrs.items() if k not in ("schema", "params", "counts")}
    out_attrs.update(schema=SCHEMA, kind=kind, params=params or {})

    lut = iuv_lookup_table(template.chart_part, template.chart_uv, template.chart_vertex) if kind == "chart" else None
    shared = ChunkContext(str(Path(src).resolve()), kind, lut, vertex_areas(template.vertices, template.faces),
                          one_ring(template.faces, n_v), template.embedding if kind == "cse" else None,
                          min_visible_area, max_inconsistency, confidence_sigma, crop,
                          gt_names, has_gt, has_exact, attrs.get("projection", "orthographic"), device)
    chunk = int(root["box"].chunks[0])
    kept, dropped, quality, quality_exact = 0, 0, [], []  # keypoint_quality of each block
    with StoreWriter.create(dst, n_in, specs, out_attrs, chunk=chunk) as w:
        results = map_chunks(keypoint_chunk, [(a, min(a + chunk, n_in)) for a in range(0, n_in, chunk)], workers,
                             scheduler, shared=(shared,), desc="keypoints", progress=progress)
        try:
            for res in results:
                if res.block is not None:
                    w.append(res.block)
                kept += res.kept
                dropped += res.dropped
                quality += [res.quality] if res.quality is not None else []
                quality_exact += [res.exact] if res.exact is not None else []
        finally:
            results.close()
        if kept == 0:
            raise StoreError(f"{src}: no instance shows {min_visible_area:.0%} of the template's surface; "
                             "nothing to write (lower keypoints.min_visible_area?)")
        summary = KeypointsSummary(kind, n_in, kept, quality_summary(quality) if has_gt else None,
                                   quality_summary(quality_exact) if has_exact else None, dropped)
        w.set_attrs(counts=summary.metrics())
    return summary
