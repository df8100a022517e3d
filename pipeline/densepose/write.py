"""Writing ``data/densepose.zarr`` from real-image sources (detectron2, precomputed).

Both sources turn each image into an :class:`ImageInstances` (crops already on the ``S x S`` grid,
see :mod:`pipeline.densepose.convert`) and hand the list to :func:`write_instances_store`, which
assigns the train/test split, writes the layout of :mod:`pipeline.densepose.store` and returns its
:class:`DenseposeSummary`, the one output structure of every source (the synthetic source's too), with
the counts of instances skipped or clipped at the door (:mod:`pipeline.densepose.door`; always
present, 0 when none).

CSE output is only comparable with the vertex embeddings of the model that made it, so a CSE store
needs a template built from that model's mesh and weights (``template.source: cse``,
:mod:`pipeline.template.cse_mesh`): :func:`check_cse_template` refuses any other, and the store records the
mesh's name in the attribute ``cse_mesh``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.config import as_dict
from pipeline.core.errors import InputError, UserError
from pipeline.core.store import StoreWriter
from pipeline.densepose.door import zero_counts
from pipeline.densepose.store import SCHEMA, SPLIT_TEST, SPLIT_TRAIN, densepose_specs

log = logging.getLogger(__name__)

__all__ = ["DenseposeSummary", "store_params", "ImageInstances", "NoInstancesError", "check_cse_template", "read_name_list",
           "write_instances_store"]


@dataclass(frozen=True)
class DenseposeSummary:
    """What a densepose source wrote. :meth:`metrics` is ``metrics/densepose.json`` (reproducible counts,
    no timings); the stage logs :meth:`lines`.

    Attributes:
        source: ``densepose.source``.  instances, train, test: instances written, of the train and test split.
        door: the door's counts (:data:`pipeline.densepose.door.COUNT_KEYS`; all 0 for synthetic data).
        details: the source's own counts: synthetic ``bodies``, ``modes`` (bodies per pose mode),
            ``foreground_pixels``, ``visible_vertices``, ``occluded_vertices``; real images ``images``,
            ``images_skipped`` (unreadable), ``images_without_instances``.
        seconds, device: how long it took and where (logged only).
    """

    source: str
    instances: int
    train: int
    test: int
    door: Mapping[str, int]
    details: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    device: str = ""

    def metrics(self) -> dict:
        return {"source": self.source, "instances": self.instances, "train": self.train, "test": self.test,
                **self.door, **self.details}

    def lines(self) -> list[str]:
        rate = f" in {self.seconds:.1f} s ({self.instances / self.seconds:.0f} instances/s)" if self.seconds else ""
        on = f" on {self.device}" if self.device else ""
        out = [f"{self.source}: {self.instances} instances ({self.train} train, {self.test} test){on}{rate}"]
        out += [f"{k}: {v}" for k, v in self.details.items()]
        if any(self.door.values()):
            out.append("at the door: " + ", ".join(f"{k} {v}" for k, v in self.door.items()))
        return out


def store_params(params) -> dict:
    """The params that made a densepose store, for its attributes: ``common``, ``densepose`` and the
    source's sections (:data:`SOURCE_SECTIONS`)."""
    return {k: as_dict(getattr(params, k)) for k in ("common", "densepose", *SOURCE_SECTIONS[params.densepose.source])}


# densepose.source -> the params sections it reads (the network source renders the synthetic bodies as images
# unless network_source.images names a folder)
SOURCE_SECTIONS = {"synthetic": ("synthetic",), "detectron2": ("detectron2",), "precomputed": ("precomputed",),
                   "network": ("network_source", "synthetic")}


class NoInstancesError(UserError, RuntimeError):
    """No instance survived (no image read, no person found, or all below the score threshold)."""


@dataclass(frozen=True)
class ImageInstances:
    """The ``k`` instances kept in one image, on the ``S x S`` crop grid.

    name: the image's name (relative to the image folder, or as given by the dump).
    boxes: (k, 4) float32 x0, y0, x1, y1 image pixels.  scores: (k,) float32.
    labels: (k, S, S) uint8 and uv: (k, 2, S, S) float32 (chart models), else None.
    embedding: (k, D, S, S) float32 and mask: (k, S, S) bool (CSE models), else None.
    size: (H, W) of the image when known (for full-frame export), else None.
    rgb: (k, S, S, 3) uint8 the photo under each box when the source has the photo (reports draw it), else None.
    """

    name: str
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None
    uv: np.ndarray | None = None
    embedding: np.ndarray | None = None
    mask: np.ndarray | None = None
    size: tuple[int, int] | None = None
    rgb: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)


def check_cse_template(template, source: str, dim: int | None = None) -> None:
    """Refuses CSE output with a template that does not hold its model's vertex embeddings.

    Args:
        template: :class:`pipeline.template.file.Template`.  source: the densepose source, for the message.
        dim: the pixel embeddings' dimension D, when known.
    Raises:
        ValueError: the template is not a CSE mesh's (``template.source: cse``), or another D.
    """
    if template.source != "cse":
        raise InputError(
            f"densepose.source {source}: the DensePose output comes from a CSE model, whose pixel embeddings "
            "match only that model's vertex embeddings; the template must be the model's CSE mesh with them: set "
            "template.source: cse, template.cse_mesh_file (e.g. smpl_27554.pkl), template.cse_weights (the "
            f"model's weights) and template.parts_from (README, 'Real images'). The template is "
            f"{template.source!r}.")
    if dim is not None and dim != template.embedding.shape[1]:
        raise InputError(f"densepose.source {source}: pixel embeddings have D = {dim}, the template's vertex "
                         f"embeddings of {template.topology!r} D = {template.embedding.shape[1]}: another model")


def read_name_list(path: str | Path) -> set[str]:
    """Image names, one a line; blank lines and ``#`` comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split list not found: {path}")
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


def _is_test(name: str, test_names: set[str]) -> bool:
    return name in test_names or Path(name).name in test_names


def write_instances_store(path: str | Path, images: list[ImageInstances], *, crop: int, source: str,
                          template_hash: str, params: dict, test_names: set[str] | None = None,
                          skipped: list[str] = (), cse_mesh: str | None = None,
                          counts: dict[str, int] | None = None,
                          notes: dict[str, int] | None = None) -> DenseposeSummary:
    """Writes every instance of ``images`` as ``data/densepose.zarr`` (layout: :mod:`pipeline.densepose.store`).

    Args:
        images: one entry per image read, in order (images with no instance included: they are
            listed in the ``images`` attribute and counted).
        crop: S.  source: "detectron2" or "precomputed".  params: recorded in the attributes.
        test_names: image names (or base names) of the test split; None -> all train.
        skipped: names of images that could not be read (counted, listed in the attributes).
        cse_mesh: for CSE output, the name of the mesh its embeddings refer to (an attribute).
        counts: the door's counts (:class:`pipeline.densepose.door.DoorCounts` ``.summary()``); None: all 0.
        notes: the source's own counts, added to the summary's details (e.g. images converted on reading).

    Returns:
        the summary: instances, train / test, images read / skipped / without instances, and the door's
        skipped / clipped boxes (:data:`pipeline.densepose.door.COUNT_KEYS`).

    Raises:
        NoInstancesError: not a single instance to write (never an empty store).
    """
    n = sum(len(im) for im in images)
    names = [im.name for im in images]
    if n == 0:
        why = (f"{len(images)} image(s) read, {len(skipped)} unreadable; none has a detection that survives "
               "the score threshold") if images else f"no image could be read ({len(skipped)} unreadable)"
        raise NoInstancesError(f"{source}: no DensePose instance to store: {why}. Check the image folder, "
                               "the score threshold and that the model detects people in these images.")
    chart = any(im.labels is not None for im in images if len(im))
    cse = any(im.embedding is not None for im in images if len(im))
    dim = next(im.embedding.shape[1] for im in images if len(im) and im.embedding is not None) if cse else None
    for im in images:
        if len(im) and ((im.labels is not None) != chart or (im.embedding is not None) != cse):
            raise InputError(f"{im.name}: mixes chart and CSE output with other images")
    test_names = test_names or set()
    unknown = sorted(t for t in test_names if not any(_is_test(nm, {t}) for nm in names))
    if unknown:
        log.warning("%d name(s) of the test list match no image, e.g. %s", len(unknown), unknown[0])
    attrs = {"schema": SCHEMA, "source": source, "crop": crop,
             "kinds": (["chart"] if chart else []) + (["cse"] if cse else []),
             "images": names, "skipped_images": list(skipped), "template_hash": template_hash,
             "image_sizes": [list(im.size) if im.size else [0, 0] for im in images],
             "params": params}
    if cse_mesh is not None:
        attrs["cse_mesh"] = cse_mesh
    specs = densepose_specs(crop, chart=chart, cse_dim=dim)
    photo = all(im.rgb is not None for im in images if len(im))  # the photo crops, when every image has them
    if photo:
        specs["rgb"] = ((crop, crop, 3), "uint8")
    n_test = 0
    with StoreWriter.create(path, n, specs, attrs) as w:
        start = 0
        for idx, im in enumerate(images):
            k = len(im)
            if k == 0:
                continue
            split = SPLIT_TEST if _is_test(im.name, test_names) else SPLIT_TRAIN
            n_test += k * (split == SPLIT_TEST)
            rows = {"box": np.asarray(im.boxes, np.float32).reshape(k, 4),
                    "score": np.asarray(im.scores, np.float32).reshape(k),
                    "image": np.full(k, idx, np.int32), "split": np.full(k, split, np.uint8)}
            if chart:
                rows["labels"] = np.asarray(im.labels, np.uint8)
                rows["uv"] = np.asarray(im.uv, np.float32).astype(np.float16)
            if cse:
                rows["embedding"] = np.asarray(im.embedding, np.float32).astype(np.float16)
                rows["mask"] = np.asarray(im.mask, bool)
            if photo:
                rows["rgb"] = np.asarray(im.rgb, np.uint8)
            w.write(start, rows)
            start += k
    return DenseposeSummary(source, n, n - n_test, n_test, {**zero_counts(), **(counts or {})},
                            {"images": len(images), "images_skipped": len(skipped),
                             "images_without_instances": sum(len(im) == 0 for im in images), **(notes or {})})
