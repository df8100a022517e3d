"""The ``iuv`` stage's work: repair every instance of ``densepose.zarr`` into ``iuv.zarr`` (layout:
:mod:`pipeline.iuv.store`), then its preview and, for real images, the full-frame IUV PNGs.
:func:`write_iuv` is the stage's entry point; it repairs only the correspondence kind that
``densepose.kind`` names (the one the keypoints stage reads).

Instances are repaired in parallel, one Zarr chunk of instances per task, on Dask workers
(:func:`pipeline.core.cluster.map_chunks`: ``cluster.workers`` local processes or the cluster at
``cluster.scheduler``); results are written in instance order, so the store does not depend on either.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.cluster import map_chunks
from pipeline.core.config import Params, as_dict
from pipeline.core.io import written
from pipeline.core.store import StoreError, StoreWriter
from pipeline.densepose.store import open_densepose
from pipeline.iuv.repair import QUALITY_SUMS, RepairOptions, quality_from_sums, quality_sums, repair_chart, repair_cse
from pipeline.iuv.store import CARRIED, COUNT_NAMES, GT_DROPPED, SCHEMA, open_iuv
from pipeline.template.file import encode_iuv

log = logging.getLogger(__name__)

__all__ = ["IuvSummary", "write_iuv", "repair_store", "repair_rows", "image_foreground"]


@dataclass(frozen=True)
class IuvSummary:
    """What the ``iuv`` stage did. :meth:`metrics` is ``metrics/iuv.json`` and the store's ``counts``
    attribute (reproducible counts, no timings); the stage logs :meth:`lines`.

    Attributes:
        kinds: the outputs repaired ("chart", "cse").  instances_in, instances_out: instances read and kept.
        repairs: the totals of :data:`pipeline.iuv.store.COUNT_NAMES` (pixels filled, holes filled, ...).
        quality_before, quality_after: part accuracy, U/V error, foreground IoU against the exact ``gt/iuv``
            (synthetic chart data only, else None).
        frames: full-frame IUV images written (real images only).  seconds, workers: logged only.
    """

    kinds: tuple[str, ...]
    instances_in: int
    instances_out: int
    repairs: Mapping[str, int]
    quality_before: Mapping[str, float] | None = None
    quality_after: Mapping[str, float] | None = None
    frames: int = 0
    seconds: float = 0.0
    workers: int = 1

    def metrics(self) -> dict:
        out = {"instances_in": self.instances_in, "instances_out": self.instances_out,
               "dropped_small_foreground": self.instances_in - self.instances_out, **self.repairs}
        if self.quality_before is not None:
            out.update(quality_before=dict(self.quality_before), quality_after=dict(self.quality_after))
        return out

    def lines(self) -> list[str]:
        rate = f" in {self.seconds:.1f} s ({self.instances_in / self.seconds:.0f}/s, {self.workers} workers)" \
            if self.seconds else ""
        out = [f"repaired {'+'.join(self.kinds)} output of {self.instances_in} instances{rate}; kept "
               f"{self.instances_out}; " + ", ".join(f"{k} {v}" for k, v in self.repairs.items())]
        for when, q in (("before", self.quality_before), ("after", self.quality_after)):
            if q is not None:
                out.append(f"{when} repair: part accuracy {q['part_accuracy']:.4f}, U/V error {q['uv_error']:.4f}, "
                           f"foreground IoU {q['foreground_iou']:.4f}")
        if self.frames:
            out.append(f"{self.frames} full-frame IUV images")
        return out


def write_iuv(params: Params, densepose: str | Path, out: str | Path, preview: str | Path,
              frames: str | Path) -> IuvSummary:
    """The ``iuv`` stage: repairs the ``densepose.kind`` output of ``densepose`` into ``out`` (iuv.zarr), draws
    ``preview``/instances.png and writes ``frames`` (full-frame IUV PNGs for real images; empty otherwise)."""
    # imported here, not above: the Dask workers import this module for `_repair_chunk`, and torch (the frames)
    # and matplotlib (the preview) would add seconds to each worker's start for nothing they use
    from pipeline.iuv.fullframe import write_frames
    from pipeline.iuv.preview import write_preview

    p = params.iuv
    t0 = time.perf_counter()
    c = params.cluster
    summary = repair_store(densepose, out, RepairOptions.from_params(p), p.min_foreground, c.workers,
                           params=as_dict(p), kinds=[params.densepose.kind], scheduler=c.scheduler)
    write_preview(densepose, written(out), preview, p.previews)
    n_frames = write_frames(open_iuv(written(out)), frames)
    return dataclasses.replace(summary, frames=n_frames, seconds=time.perf_counter() - t0, workers=c.workers)

def repair_rows(rows: dict, opts: RepairOptions, min_foreground: int) -> dict:
    """Repairs a block of instances read from densepose.zarr.

    Args:
        rows: arrays of the block keyed as in densepose.zarr (``labels``/``uv`` and/or
            ``mask``/``embedding``, plus the carried and ``gt/`` arrays).
    Returns:
        dict with ``keep`` (n,) bool (foreground left, at least ``min_foreground`` of it in image pixels:
        :func:`image_foreground`), the repaired arrays of all rows (``iuv``, ``mask``,
        ``embedding`` as present), the four counts (n,) int32, ``filled`` (n, S, S) bool (the pixels the
        repair made; the counts and ``filled`` are the chart output's when both kinds are repaired), and
        ``quality`` (2, 7) sums before/after repair (zeros without ground truth).
    """
    chart, cse = "labels" in rows, "embedding" in rows
    n = len(rows["box"])
    out = {k: np.zeros(n, np.int32) for k in COUNT_NAMES}
    crop = (rows["labels"] if chart else rows["mask"]).shape[-1]
    out["filled"] = np.zeros((n, crop, crop), bool)
    fg_area = np.zeros(n, np.int64)
    if chart:
        labels, uv = rows["labels"], rows["uv"].astype(np.float32)
        rep_l = np.zeros_like(labels)
        rep_uv = np.zeros(uv.shape, np.float32)
        for i in range(n):
            rep_l[i], rep_uv[i], counts, out["filled"][i] = repair_chart(labels[i], uv[i], opts)
            for k, c in zip(COUNT_NAMES, counts):
                out[k][i] = c
        out["iuv"] = encode_iuv(rep_l, rep_uv)
        fg_area = (rep_l > 0).sum(axis=(1, 2))
        quality = np.zeros((2, len(QUALITY_SUMS)))
        if "gt/iuv" in rows:
            quality[0] = quality_sums(labels, uv, rows["gt/iuv"])
            quality[1] = quality_sums(rep_l, rep_uv, rows["gt/iuv"])
        out["quality"] = quality
    if cse:
        mask, emb = rows["mask"], rows["embedding"]
        out["mask"] = np.zeros_like(mask)
        out["embedding"] = np.zeros(emb.shape, np.float16)
        for i in range(n):
            m, e, counts, filled = repair_cse(mask[i], emb[i], opts)
            out["mask"][i], out["embedding"][i] = m, e.astype(np.float16)
            if not chart:
                out["filled"][i] = filled
                for k, c in zip(COUNT_NAMES, counts):
                    out[k][i] = c
        if not chart:
            fg_area = out["mask"].sum(axis=(1, 2))
            out["quality"] = np.zeros((2, len(QUALITY_SUMS)))
    out["keep"] = (fg_area > 0) & (image_foreground(fg_area, rows["box"], crop) >= min_foreground)
    return out


def image_foreground(crop_foreground: np.ndarray, boxes: np.ndarray, crop: int) -> np.ndarray:
    """Foreground in image pixels: each crop's foreground share times its box's area (the crop resamples the box,
    so a 2 x 1-pixel box's 112 x 112 crop is still 2 image pixels at most).

    Args:
        crop_foreground: (n,) foreground pixels of the S x S crops.  boxes: (n, 4) x0, y0, x1, y1 image pixels.
        crop: S.
    Returns:
        (n,) float64.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return np.asarray(crop_foreground, np.float64) * area / float(crop * crop)


def _repair_chunk(src: str, names: list[str], opts: RepairOptions, min_foreground: int, start: int, stop: int):
    """One task: reads what the repair needs of rows start..stop, returns the repaired rows."""
    root = open_densepose(src)
    rows = {k: root[k][start:stop] for k in names}
    return start, repair_rows(rows, opts, min_foreground)


def repair_store(src: str | Path, dst: str | Path, opts: RepairOptions, min_foreground: int, workers: int,
                 params: dict | None = None, progress: bool = True, kinds: list[str] | None = None,
                 scheduler: str = "") -> IuvSummary:
    """Repairs every instance of ``src`` (densepose.zarr) into ``dst`` (iuv.zarr), atomically.

    ``kinds`` picks the outputs to repair and write ("chart", "cse"; default: all the store holds):
    the default pipeline needs only the chart output, and CSE embeddings are 16 channels a pixel.
    ``workers``, ``scheduler``: where the chunks are repaired (:func:`pipeline.core.cluster.map_chunks`).

    Returns:
        the summary: instance counts, total repair counts, and quality before/after repair against
        ``gt/iuv`` when the source has it (synthetic data).
    Raises:
        StoreError: the source is unusable, or no instance survives (no store is written then).
    """
    root = open_densepose(src)
    attrs = dict(root.attrs)
    held = list(attrs.get("kinds", []))
    kinds = held if kinds is None else list(kinds)
    if not kinds or not set(kinds) <= set(held):
        raise StoreError(f"{src}: holds {held} output; cannot repair {kinds}")
    attrs["kinds"] = kinds
    n_in = root["box"].shape[0]
    gt_all = sorted(f"gt/{k}" for k in root["gt"].array_keys()) if "gt" in root else []
    names = [k for kind, ks in (("chart", ("labels", "uv")), ("cse", ("mask", "embedding"))) if kind in kinds
             for k in ks] + ["box"]
    names += [k for k in gt_all if k == "gt/iuv"]  # for the quality measures
    gt_names = [k for k in gt_all if k not in GT_DROPPED]
    crop = int(attrs["crop"])
    specs = {k: (root[k].shape[1:], root[k].dtype.str) for k in CARRIED + tuple(gt_names)}
    if "chart" in kinds:
        specs["iuv"] = ((crop, crop, 3), "uint8")
    if "cse" in kinds:
        specs["mask"] = ((crop, crop), "bool")
        specs["embedding"] = (root["embedding"].shape[1:], "float16")
    specs["source_index"] = ((), "int32")
    specs.update({k: ((), "int32") for k in COUNT_NAMES})
    specs["filled"] = ((crop, crop), "bool")
    chunk = int(root["box"].chunks[0])
    ranges = [(s, min(s + chunk, n_in)) for s in range(0, n_in, chunk)]
    out_attrs = {k: v for k, v in attrs.items() if k not in ("schema", "params", "counts")}
    out_attrs.update(schema=SCHEMA, params=params or dataclasses.asdict(opts))

    totals = dict.fromkeys(COUNT_NAMES, 0)
    quality = np.zeros((2, len(QUALITY_SUMS)))
    kept = 0
    with StoreWriter.create(dst, n_in, specs, out_attrs, chunk=chunk) as w:
        results = map_chunks(_repair_chunk, ranges, workers, scheduler,
                             shared=(str(Path(src).resolve()), names, opts, min_foreground), desc="iuv",
                             progress=progress)
        try:
            for start, res in results:
                keep = res["keep"]
                stop = start + len(keep)
                block = {k: root[k][start:stop][keep] for k in CARRIED + tuple(gt_names)}
                block.update({k: res[k][keep] for k in ("iuv", "mask", "embedding") if k in specs})
                block["source_index"] = (start + np.flatnonzero(keep)).astype(np.int32)
                block.update({k: res[k][keep] for k in (*COUNT_NAMES, "filled")})
                if keep.any():
                    w.append(block)
                kept += int(keep.sum())
                for k in COUNT_NAMES:
                    totals[k] += int(res[k].sum())
                quality += res["quality"]
        finally:
            results.close()  # a failed write stops the workers
        if kept == 0:
            raise StoreError(f"{src}: no instance kept {min_foreground} foreground pixels (image pixels) after "
                             "repair; nothing to write (lower iuv.min_foreground?)")
        exact = "gt/iuv" in names and "chart" in kinds
        summary = IuvSummary(tuple(kinds), n_in, kept, totals,
                             quality_from_sums(quality[0]) if exact else None,
                             quality_from_sums(quality[1]) if exact else None)
        w.set_attrs(counts=summary.metrics())
    return summary
