"""Writing ``data/densepose.zarr`` from real-image sources (detectron2, precomputed, network).

The sources turn each image's instances into :class:`ImageInstances` (crops already on the ``S x S`` grid,
see :mod:`pipeline.densepose.convert`), a batch of :data:`BOXES_PER_BATCH` (network: ``batch_size``) at a time,
and hand them to an :class:`InstancesWriter` as they are made (:func:`write_images` runs a source's tasks, under
torchrun too), so that memory is bounded by a batch, not by the boxes of an image or of the input. The writer
assigns the train/test split, writes the layout of :mod:`pipeline.densepose.store` and returns its
:class:`DenseposeSummary`, the one output structure of every source (the synthetic source's too), with
the counts of instances skipped or clipped at the door (:mod:`pipeline.densepose.door`; always
present, 0 when none). :func:`write_instances_store` writes a list of images through it.

CSE output is only comparable with the vertex embeddings of the model that made it, so a CSE store
needs a template built from that model's mesh and weights (``template.source: cse``,
:mod:`pipeline.template.cse_mesh`): :func:`check_cse_template` refuses any other, and the store records the
mesh's name in the attribute ``cse_mesh``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pipeline.core.config import as_dict
from pipeline.core.errors import InputError, UserError
from pipeline.core.ranks import ALONE, Ranks, ordered_map
from pipeline.core.store import DEFAULT_CHUNK, StoreWriter
from pipeline.densepose.door import zero_counts
from pipeline.densepose.store import SCHEMA, SPLIT_TEST, SPLIT_TRAIN, densepose_specs

log = logging.getLogger(__name__)

__all__ = ["DenseposeSummary", "store_params", "ImageInstances", "NoInstancesError", "check_cse_template", "read_name_list",
           "write_instances_store", "BOXES_PER_BATCH", "ImageHead", "InstancesWriter", "ImageTask",
           "materialised", "write_images"]


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
            f"model's weights) and template.parts_from (docs/stages.md, 'Real images'). The template is "
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
    """Writes every instance of ``images`` as ``data/densepose.zarr`` (layout: :mod:`pipeline.densepose.store`),
    through :class:`InstancesWriter` (the sources hand it their instances a batch at a time instead).

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
    with InstancesWriter(path, crop=crop, source=source, template_hash=template_hash, params=params,
                         test_names=test_names, cse_mesh=cse_mesh) as w:
        for name in skipped:
            w.skip(name)
        for im in images:
            w.image(im.name, im.size)
            w.add(im)
        return w.finish(counts, notes)


# instances a source resamples onto the crop grid at once: a batch of crops (about 5 MB at S = 112) and, for the
# detectron2 source, of resized heatmaps is what it holds, whatever the number of boxes of an image
BOXES_PER_BATCH = 32


class ImageHead(NamedTuple):
    """What :meth:`InstancesWriter.put` needs of an image besides its instances: its name, its (H, W) size (None:
    unknown) and its number of boxes in the input (the progress counts them)."""

    name: str
    size: tuple[int, int] | None = None
    boxes: int = 0


class InstancesWriter:
    """Writes ``data/densepose.zarr`` from instances handed over a batch at a time, image by image, so that a
    source holds one batch of crops, never all of them (an image may have thousands of boxes)::

        with InstancesWriter(out, crop=S, source="network", template_hash=h, params=p) as w:
            w.image("a.jpg", (H, W))         # every image read, in order, with or without instances
            w.add(batch)                     # ImageInstances: some of a.jpg's instances (any number of calls)
            w.skip("broken.jpg")             # an image that could not be read
            summary = w.finish(counts, notes)

    Memory: the first :data:`pipeline.core.store.DEFAULT_CHUNK` rows are held until the store is created (its
    chunk is then the one the final length gives), then :class:`pipeline.core.store.StoreWriter` holds at most a
    shard (2,048 rows) an array. The store is grown as rows come and cut to its length when it closes: the bytes
    are those :func:`write_instances_store` wrote from a list of every image before it streamed (same chunks,
    shards, attributes). Nothing is written unless :meth:`finish` is reached (the store is built under a
    temporary name: an error or a rank that leaves drops it), and no file at all before the first 256 rows.

    The arrays are fixed by the first batch with instances: chart (``labels``, ``uv``) or CSE (``embedding``,
    ``mask`` of its D); ``rgb`` when it has the photo crops, dropped at the end if an image with instances had none.
    """

    def __init__(self, path: str | Path, *, crop: int, source: str, template_hash: str, params: dict,
                 test_names: set[str] | None = None, cse_mesh: str | None = None):
        self.path, self.crop, self.source = path, crop, source
        self.template_hash, self.params, self.cse_mesh = template_hash, params, cse_mesh
        self.test_names = test_names or set()
        self.names: list[str] = []
        self.sizes: list[tuple[int, int] | None] = []
        self.per_image: list[int] = []  # instances of each image
        self.skipped: list[str] = []
        self.n = self.n_test = 0
        self.kinds: tuple[bool, bool, int | None] | None = None  # chart, cse, D: fixed by the first batch
        self.photo: bool | None = None  # rgb written: the first batch's; False once a batch lacks it
        self.pending: list[dict[str, np.ndarray]] = []  # rows before the store exists
        self._stack = contextlib.ExitStack()
        self._writer: StoreWriter | None = None
        self._split = SPLIT_TRAIN

    def __enter__(self) -> "InstancesWriter":
        return self

    def __exit__(self, *exc) -> bool:
        if exc[0] is None and self._writer is not None:  # left without finish(): nothing is written
            exc = (RuntimeError, RuntimeError("InstancesWriter left without finish()"), None)
        self._stack.__exit__(*exc)
        return False

    def image(self, name: str, size: tuple[int, int] | None = None) -> None:
        """Starts image ``name`` of (H, W) ``size`` (None: unknown); the batches added next are its instances."""
        self.names.append(name)
        self.sizes.append(size)
        self.per_image.append(0)
        self._split = SPLIT_TEST if _is_test(name, self.test_names) else SPLIT_TRAIN

    def skip(self, name: str) -> None:
        """Records an image that could not be read (counted, listed in the ``skipped_images`` attribute)."""
        self.skipped.append(name)

    def put(self, head: ImageHead, batches: Iterable[ImageInstances] | None, bar=None) -> None:
        """Image ``head`` and its instances, a batch at a time (``batches`` None: the image could not be read, it is
        skipped); ``bar`` (:func:`pipeline.core.stage.progress`) advances by the image's boxes as they are written."""
        done = 0
        if batches is None:
            self.skip(head.name)
        else:
            self.image(head.name, head.size)
            for batch in batches:
                self.add(batch)
                done += len(batch)
                if bar is not None:
                    bar.update(len(batch))
        if bar is not None and head.boxes > done:
            bar.update(head.boxes - done)

    def add(self, batch: ImageInstances) -> None:
        """Adds ``batch``, instances of the image last started (:meth:`image`); an empty batch adds nothing.

        Raises:
            InputError: chart output after CSE output or the other way round.
        """
        k = len(batch)
        if k == 0:
            return
        if not self.names:
            raise RuntimeError("InstancesWriter.add before InstancesWriter.image")
        kinds = (batch.labels is not None, batch.embedding is not None,
                 None if batch.embedding is None else int(batch.embedding.shape[1]))
        if self.kinds is None:
            self.kinds, self.photo = kinds, batch.rgb is not None
        elif kinds[:2] != self.kinds[:2]:
            raise InputError(f"{self.names[-1]}: mixes chart and CSE output with other images")
        chart, cse, _ = self.kinds
        if self.photo and batch.rgb is None:  # an image without its photo: no photo crops in the store
            self.photo = False
            self.pending = [{a: v for a, v in rows.items() if a != "rgb"} for rows in self.pending]
            if self._writer is not None:
                self._writer.drop("rgb")
        rows = {"box": np.asarray(batch.boxes, np.float32).reshape(k, 4),
                "score": np.asarray(batch.scores, np.float32).reshape(k),
                "image": np.full(k, len(self.names) - 1, np.int32), "split": np.full(k, self._split, np.uint8)}
        if chart:
            rows["labels"] = np.asarray(batch.labels, np.uint8)
            rows["uv"] = np.asarray(batch.uv, np.float32).astype(np.float16)
        if cse:
            rows["embedding"] = np.asarray(batch.embedding, np.float32).astype(np.float16)
            rows["mask"] = np.asarray(batch.mask, bool)
        if self.photo:
            rows["rgb"] = np.asarray(batch.rgb, np.uint8)
        self.n += k
        self.n_test += k * (self._split == SPLIT_TEST)
        self.per_image[-1] += k
        if self._writer is None:
            self.pending.append(rows)
            if self.n >= DEFAULT_CHUNK:
                self._open(self.n)
        else:
            self._append(rows)

    def _attrs(self) -> dict:
        chart, cse, _ = self.kinds
        attrs = {"schema": SCHEMA, "source": self.source, "crop": self.crop,
                 "kinds": (["chart"] if chart else []) + (["cse"] if cse else []),
                 "images": list(self.names), "skipped_images": list(self.skipped), "template_hash": self.template_hash,
                 "image_sizes": [list(s) if s else [0, 0] for s in self.sizes], "params": self.params}
        if self.cse_mesh is not None:
            attrs["cse_mesh"] = self.cse_mesh
        return attrs

    def _open(self, n: int) -> None:
        """Creates the store (room for ``n`` rows) and writes the rows held so far."""
        chart, _, dim = self.kinds
        specs = densepose_specs(self.crop, chart=chart, cse_dim=dim)
        if self.photo:
            specs["rgb"] = ((self.crop, self.crop, 3), "uint8")
        self._writer = self._stack.enter_context(StoreWriter.create(self.path, n, specs, self._attrs()))
        for rows in self.pending:
            self._append(rows)
        self.pending = []

    def _append(self, rows: dict[str, np.ndarray]) -> None:
        w = self._writer
        start = w.appended or 0
        if start + len(rows["box"]) > w.n:
            w.reserve(max(start + len(rows["box"]), 2 * w.n))
        w.append(rows)

    def finish(self, counts: dict[str, int] | None = None, notes: dict[str, int] | None = None) -> DenseposeSummary:
        """Closes the store (it appears at its path now) and returns its summary.

        Args:
            counts: the door's counts (:class:`pipeline.densepose.door.DoorCounts` ``.summary()``); None: all 0.
            notes: the source's own counts, added to the summary's details.
        Raises:
            NoInstancesError: not a single instance was added (no store is written).
        """
        door = {**zero_counts(), **(counts or {})}
        if self.n == 0:
            if self.names:
                why = (f"{len(self.names)} image(s) read, {len(self.skipped)} unreadable; none has a detection that "
                       f"survives {_door_losses(door)}the score threshold")
            else:
                why = f"no image could be read ({len(self.skipped)} unreadable)"
            raise NoInstancesError(f"{self.source}: no DensePose instance to store: {why}. Check the image folder, "
                                   "the score threshold and that the model detects people in these images.")
        unknown = sorted(t for t in self.test_names if not any(_is_test(nm, {t}) for nm in self.names))
        if unknown:
            log.warning("%d name(s) of the test list match no image, e.g. %s", len(unknown), unknown[0])
        if self._writer is None:
            self._open(self.n)
        else:
            self._writer.set_attrs(**{k: v for k, v in self._attrs().items()
                                      if k in ("images", "skipped_images", "image_sizes")})
        self._writer = None
        self._stack.close()  # StoreWriter.close: the store is cut to its rows and renamed onto its path
        return DenseposeSummary(self.source, self.n, self.n - self.n_test, self.n_test, door,
                                {"images": len(self.names), "images_skipped": len(self.skipped),
                                 "images_without_instances": sum(k == 0 for k in self.per_image), **(notes or {})})


def _door_losses(door: Mapping[str, int]) -> str:
    """"the door (3 empty boxes skipped, ...) and " when the door dropped boxes, else ""."""
    lost = [f"{door[k]} {_DROPPED[k]}" for k in _DROPPED if door.get(k)]
    return f"the door ({', '.join(lost)}) and " if lost else ""


_DROPPED = {"skipped_empty_boxes": "empty boxes (x1 <= x0 or y1 <= y0) skipped",
            "skipped_boxes_outside_image": "boxes outside their image skipped"}


# a task of a source: t -> the images it read, each with its instances a batch at a time (None: not readable)
ImageTask = Callable[[int], list[tuple[ImageHead, Iterable[ImageInstances] | None]]]


def materialised(task: ImageTask) -> ImageTask:
    """``task`` with each image's batches made at once, as a list: what a task returns under torchrun (the results
    travel to rank 0 pickled)."""
    def listed(t: int):
        return [(head, None if batches is None else list(batches)) for head, batches in task(t)]

    return listed


def write_images(writer: InstancesWriter, task: ImageTask, n_tasks: int, ranks: Ranks = ALONE, bar=None,
                 unit: str = "box") -> None:
    """Runs ``task`` for ``t`` in ``0 .. n_tasks - 1`` (:func:`pipeline.core.ranks.ordered_map`: under torchrun task
    ``t`` on rank ``t mod P``) and hands every image it read to ``writer`` (:meth:`InstancesWriter.put`), in order;
    ``bar`` (:func:`pipeline.core.stage.progress`) counts the images' boxes (``unit`` "box") or the images ("img").

    Alone, each image's batches stay the generator the task returned: they are made one at a time while they are
    written. Under torchrun they are made on the task's rank as a list (:func:`materialised`), which is what travels
    to rank 0 (a round of tasks' crops then sits on rank 0 at once); the other ranks hand nothing over."""
    for _, images in ordered_map(task if ranks.world == 1 else materialised(task), n_tasks, ranks):
        for head, batches in images:
            writer.put(head, batches, bar if unit == "box" else None)
            if bar is not None and unit == "img":
                bar.update(1)
