"""The ``network`` source: the correspondence network of stage ``network`` run on images.

Two inputs (``network_source``):

- **synthetic images** (``network_source.images`` empty): the ``synthetic`` section's bodies rendered as
  the synthetic source renders them (same bodies, cameras and occluders, the exact ground truth under
  ``gt/``), with images (:mod:`pipeline.render.scene`); the network's output on each crop
  replaces the corruption model's as the DensePose output (``labels``, ``uv``). So the end-to-end error
  from images is measured on the very instances the synthetic source gives, next to the exact and the
  hand-corrupted IUV. ``synthetic.corruption`` then only places the occluders.
- **a folder of images** with a boxes JSON (``{"images": [{"file_name", "boxes", "scores"}]}``, the format
  of ``precomputed.boxes_json``; ``scores`` optional): each image is read (:func:`read_rgb`: oriented by its
  EXIF tag as Detectron2 orients it; grey-scale, 16-bit and alpha images converted and counted; an unreadable
  or truncated file skipped and counted; a decompression bomb an error), its boxes checked
  at the door (:func:`pipeline.densepose.door.door_boxes`: bad values are errors, empty boxes and boxes
  outside the image skipped, boxes partly outside clipped, each counted), filtered by
  ``score_threshold``/``max_instances``, each kept box resampled to the network's input (:func:`box_crops`,
  area-averaged), and the network's 112 x 112 heatmaps resampled onto the S x S crop by Detectron2's
  converters (:mod:`pipeline.densepose.convert`), ``batch_size`` boxes a forward pass, each batch written to
  the store as it is made (:class:`pipeline.densepose.write.InstancesWriter`): an image with thousands of boxes
  holds one batch. The boxes JSON is checked in full before the checkpoint loads
  (:mod:`pipeline.densepose.boxes_json`: paths inside the folder, each image listed once, every image present,
  boxes neither inverted nor negative).

The checkpoint must have been trained for the template in use (:func:`pipeline.network.checkpoint.load_network`).
Size letters: ``n`` instances, ``k`` boxes of an image, ``S`` crop side, ``H``/``W`` image size (legend:
:mod:`pipeline`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.core.config import Params
from pipeline.core.image_files import UnreadableImageError, read_image
from pipeline.core.ranks import ALONE, Ranks, check_share, sum_counts
from pipeline.core.stage import progress, resolve_device
from pipeline.densepose.detectron2 import IMAGE_SUFFIXES
from pipeline.densepose.door import DoorCounts, door_boxes, path_problems, raise_problems, select_instances
from pipeline.densepose.boxes_json import BoxesEntry, read_boxes_json
from pipeline.densepose.synthetic import write_synthetic_store
from pipeline.densepose.write import (DenseposeSummary, ImageHead, ImageInstances, InstancesWriter, read_name_list,
                                      store_params, write_images)
from pipeline.network.checkpoint import ChartNet, load_network, predict_crops
from pipeline.template.file import Template

log = logging.getLogger(__name__)

__all__ = ["CONVERSIONS", "read_rgb", "box_crops", "write_network_store", "write_store"]

# how an image was converted on reading, as counted in metrics/densepose.json
CONVERSIONS = ("images_grey", "images_16bit", "images_alpha")
_BACKDROP = 0.5  # grey that transparent pixels are composited over


def read_rgb(path: str | Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """An image file as (H, W, 3) uint8 RGB, oriented by its EXIF tag as Detectron2 orients it, and the conversions
    made (names from :data:`CONVERSIONS`), read by :func:`pipeline.core.image_files.read_image`.

    Grey-scale becomes three equal channels; 16-bit samples are reduced to 8 bits (their high byte); an alpha
    channel is composited over mid-grey (the network never saw transparent pixels).

    Raises:
        UnreadableImageError: missing, corrupt, truncated, empty, or of another sample type (the caller skips it).
        ImageTooLargeError: more than :data:`pipeline.core.image_files.MAX_PIXELS` pixels (a decompression bomb).
    """
    decoded = read_image(path)
    img = decoded.pixels
    notes = ["images_16bit"] if decoded.bits == 16 else []
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 2:
        notes.append("images_grey")
        grey = img if img.ndim == 2 else img[..., 0]
        alpha = None if img.ndim == 2 else img[..., 1]
        img = np.stack([grey] * 3 + ([alpha] if alpha is not None else []), axis=-1)
    if img.shape[2] == 4:
        notes.append("images_alpha")
        a = img[..., 3:].astype(np.float64) / 255.0
        img = np.round(img[..., :3] * a + 255.0 * _BACKDROP * (1 - a)).astype(np.uint8)
    return np.ascontiguousarray(img), tuple(notes)


def box_crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(k, size, size, 3) uint8: each box (k, 4) x0, y0, x1, y1 (image pixels, inside the image) of ``image``
    (H, W, 3) uint8 resampled to ``size`` x ``size``, crop pixel (r, c) showing the box point at fractions
    ((c + 0.5) / size, (r + 0.5) / size), as the synthetic crops are rendered. Boxes larger than the crop are
    averaged over up to 4 x 4 bilinear samples per crop pixel (no aliasing)."""
    import cv2

    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        f = int(np.clip(np.ceil(max(x1 - x0, y1 - y0) / size), 1, 4))  # samples per crop pixel and axis
        t = (np.arange(size * f) + 0.5) / (size * f)
        xs, ys = x0 + t * (x1 - x0) - 0.5, y0 + t * (y1 - y0) - 0.5  # OpenCV: pixel centres at integers
        mx, my = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
        s = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        out[i] = np.round(s.reshape(size, f, size, f, 3).mean(axis=(1, 3))).astype(np.uint8)
    return out


def _check_inputs(params: Params) -> None:
    ns = params.network_source
    problems = path_problems("network_source.images", ns.images, "folder", hint="a folder of images")
    problems += path_problems("network_source.boxes_json", ns.boxes_json, hint="the person boxes of each image")
    if ns.test_list:
        problems += path_problems("network_source.test_list", ns.test_list)
    raise_problems("densepose.source network", problems)


def _folder_task(net: ChartNet, input_size: int, params: Params, device: str, entries: list[BoxesEntry],
                 counts: DoorCounts, notes: dict[str, int]):
    """The task of image ``t`` of the boxes JSON (module docstring), for :func:`pipeline.core.ranks.ordered_map`:
    ``t`` -> (its :class:`~pipeline.densepose.write.ImageHead`, a generator of its instances, ``batch_size`` boxes a
    forward pass; None when the image cannot be read). The door's skips and clips go to ``counts``, the conversions
    made on reading to ``notes`` (on the rank that runs the task)."""
    ns, crop = params.network_source, params.densepose.crop
    folder = Path(ns.images)

    def infer(t: int) -> list[tuple[ImageHead, Iterator[ImageInstances] | None]]:
        _, _, name, where, boxes, scores = entries[t]
        path = folder / name
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            log.warning("skipping %s: not an image file (%s)", path, ", ".join(IMAGE_SUFFIXES))
            return [(ImageHead(name, None, len(boxes)), None)]
        try:
            rgb, made = read_rgb(path)
        except UnreadableImageError as e:
            log.warning("skipping %s", e)
            return [(ImageHead(name, None, len(boxes)), None)]
        for note in made:
            notes[note] += 1
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        v = door_boxes(boxes, scores, size, f"{where} in {folder}", counts)
        keep = select_instances(scores, ns.score_threshold, ns.max_instances, usable=v.keep)

        def batches() -> Iterator[ImageInstances]:
            for s in range(0, len(keep), ns.batch_size):
                part = keep[s:s + ns.batch_size]
                charts = predict_crops(net, box_crops(rgb, v.boxes[part], input_size), input_size, crop, device,
                                       ns.batch_size)
                yield ImageInstances(name, v.boxes[part], scores[part], labels=charts.labels.numpy(),
                                     uv=charts.uv.numpy(), size=size)

        return [(ImageHead(name, size, len(boxes)), batches())]

    return infer


def write_network_store(params: Params, template: Template, out: str | Path,
                        checkpoint: str | Path, ranks: Ranks = ALONE) -> DenseposeSummary:
    """The ``network`` source, end to end: load the checkpoint, run it, write ``densepose.zarr`` (atomic).
    Under torchrun each rank runs its share of the bodies or images and rank 0 writes (the others end)."""
    ns = params.network_source
    if ns.images:  # every input checked before the checkpoint loads
        _check_inputs(params)
        entries = read_boxes_json(ns.boxes_json, ns.images)
        check_share(len(entries), ranks, f"images in {ns.boxes_json}", "use fewer processes")
        test = read_name_list(ns.test_list) if ns.test_list else None
    device = resolve_device(params.common.device)
    net, info = load_network(checkpoint, template.hash, device)
    input_size = int(info["input_size"])
    log.info("network %s: width %d, trained %s steps, input %d px, on %s", checkpoint, net.width, info.get("step"),
             input_size, device)
    if not ns.images:
        def observe(rows: dict[str, np.ndarray]) -> None:
            crops = predict_crops(net, rows["rgb"], input_size, params.densepose.crop, device, ns.batch_size)
            rows["labels"], rows["uv"] = crops.labels.numpy(), crops.uv.numpy().astype(np.float16)

        synthetic = dataclasses.replace(params.synthetic, images=True, cse=False)
        return write_synthetic_store(out, template, synthetic, crop=params.densepose.crop, seed=params.common.seed,
                                     device=params.common.device, params=store_params(params), source="network",
                                     observe=observe, ranks=ranks)
    counts, notes = DoorCounts(), dict.fromkeys(CONVERSIONS, 0)
    task = _folder_task(net, input_size, params, device, entries, counts, notes)
    with InstancesWriter(out, crop=params.densepose.crop, source="network", template_hash=template.hash,
                         params=store_params(params), test_names=test) as w:
        bar = progress(total=sum(len(e.boxes) for e in entries), desc="densepose network", unit="box",
                       enabled=ranks.writer)
        write_images(w, task, len(entries), ranks, bar)  # image t runs on rank t mod P, rank 0 writes
        bar.close()
        counts.counts = sum_counts(counts.counts, ranks)
        notes.update(sum_counts(notes, ranks))
        ranks.leave_unless_writer()
        log.info("ran the network on %d images (%d skipped): %d instances kept", len(w.names), len(w.skipped), w.n)
        if any(notes.values()):
            log.info("converted on reading: %s", ", ".join(f"{k} {v}" for k, v in notes.items() if v))
        return w.finish(counts.summary(), notes)


def write_store(params: Params, template: Template, out: str | Path, ranks: Ranks = ALONE,
                checkpoint: str | Path = "models/network.pt") -> DenseposeSummary:
    """The source's entry point (the signature every source shares, plus the checkpoint the stage names)."""
    return write_network_store(params, template, out, checkpoint, ranks)
