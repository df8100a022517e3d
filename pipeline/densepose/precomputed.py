"""The ``precomputed`` source: DensePose results made elsewhere, read without Detectron2.

Two input formats (``precomputed.format``):

``dump``
    The file ``apply_net.py dump <config> <weights> <images> --output results.pkl`` writes. Despite
    the ``.pkl`` name (and its docs) it is written with ``torch.save`` -- a zip archive; older
    PyTorch wrote the legacy ``torch.save`` stream, and hand-made files may be plain pickles (of
    tensors or of numpy arrays, any protocol): all are read. Content: a list with one dict per image::

        {"file_name": str, "scores": (k,) float, "pred_boxes_XYXY": (k, 4) float image pixels,
         "pred_densepose": [DensePoseChartResultWithConfidences] * k      # chart models
                        or DensePoseEmbeddingPredictorOutput (k, D, 112, 112)   # CSE models}

    Chart results hold ``labels`` (h, w) long and ``uv`` (2, h, w) float at the integer box size
    ``(int(y1 - y0), int(x1 - x0))``; they may sit on CUDA (the dump does not move them). The file
    is unpickled by :func:`pipeline.core.dump_unpickler.load_dump`, which admits only what a dump holds
    (stand-ins for the ``densepose``/``detectron2`` structures, tensors, numpy arrays, plain
    containers) and refuses anything else with ``UnsafeDumpError`` naming the file and the class. A
    cut or damaged file is reported as "truncated or corrupt". Nothing from Detectron2 is imported. The dump does not hold the
    images' sizes: they are read from the image files' headers when found (``file_name`` as written,
    or below ``precomputed.image_root``; after their EXIF orientation, as Detectron2 read the images),
    to size the full-frame export and to check the boxes;
    else the boxes size it.

``iuv_png``
    A folder of full-frame IUV images (as :mod:`pipeline.iuv.fullframe` writes them, and as the
    original Detectron's ``infer_simple.py`` wrote ``*_IUV.png``) plus a JSON file of boxes::

        {"images": [{"file_name": "a.jpg", "iuv": "a_IUV.png", "inds": "a_INDS.png",
                     "boxes": [[x0, y0, x1, y1], ...], "scores": [0.99, ...]}, ...]}

    ``iuv``/``inds`` are relative to the folder; ``inds`` (the instance-index map: 0 = no instance,
    one value per instance), ``inds_values`` (one per box: its instance's value in the index map)
    and ``scores`` are optional. The IUV image has, *as an OpenCV array* (what ``cv2.imread``
    returns and ``cv2.imwrite`` takes), channel 0 = I (part 0..24), 1 = U * 255, 2 = V * 255.
    Because OpenCV arrays are BGR, the PNG file's blue channel holds I, green U and red V; a reader
    that returns RGB (PIL, imageio) sees the channels reversed (V, U, I). Each box's pixels
    ``[y, y + h) x [x, x + w)`` (Detectron2's integer box) are decoded (bin centres) and resampled
    to ``S x S`` like a dump's chart result; with an index map, pixels of every other instance
    become background.

    Which instance of the index map is which box (:func:`match_instances`): the ``inds_values``
    when given; else box k is value k + 1 when the map's values are the boxes' numbers (every value
    ``v`` is at most the number of boxes and most of its pixels lie inside box ``v - 1``: what
    :mod:`pipeline.iuv.fullframe` writes); else each box is matched with one instance, the matching
    that puts the most instance pixels inside their boxes (DensePose pastes each instance inside
    its box, so the true matching holds them all: the original Detectron's ``*_INDS.png`` numbers
    instances by the detector's rank, e.g. 7..19, not 1..n). A box whose instance this leaves
    undecided (another matching holds as many pixels) is an error naming the JSON, the image, the
    box and the values; a box that holds no pixel of its instance is kept with an empty crop (the
    ``iuv`` stage drops it) and logged. ``scripts/boxes_from_inds.py`` writes this JSON for a folder
    of ``*_IUV.png`` and ``*_INDS.png`` alone: one box per instance, its pixels' bounding box, with
    its ``inds_values``.

Both formats are checked at the door (:mod:`pipeline.densepose.door`, whose docstring has the policy table):
first :func:`check_precomputed_inputs` (the params' files and folders, every problem in one error) and, for
``iuv_png``, the whole boxes JSON (:mod:`pipeline.densepose.boxes_json`: paths inside the folder, each file listed
once, every listed PNG present, boxes neither inverted nor negative), then each image's boxes, scores and arrays
as they are read -- an error naming the file, the image and the instance, or a skip or clip counted in the
returned summary.

Memory: :func:`write_precomputed_store` reads an IUV folder one image at a time and cuts each box's pixels from
the decoded image only when its crop is made (:class:`BoxCharts`); crops are made and written
:data:`pipeline.densepose.write.BOXES_PER_BATCH` at a time (:func:`image_batches`). So an image with 10,000 boxes
holds its decoded PNGs and a batch of crops, not 10,000 box-size results. (A dump is read whole: it holds every
result itself.)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.core.dump_unpickler import ChartResult, EmbeddingOutput, load_dump
from pipeline.core.errors import InputError
from pipeline.core.image_files import UnreadableImageError, photo_size, read_data_image, read_photo
from pipeline.core.ranks import ALONE, Ranks, check_share, ordered_map, sum_counts
from pipeline.core.stage import progress
from pipeline.densepose.boxes_json import BoxesEntry, read_boxes_json
from pipeline.densepose.convert import (chart_results_to_crops, cse_output_to_crops, cut_result_to_box, int_box_xywh,
                                       photo_crops)
from pipeline.densepose.door import (MAX_LOGGED, DoorCounts, check_boxes, check_chart_result, check_cse_output,
                                     door_boxes, path_problems, raise_problems, select_instances)
from pipeline.densepose.write import (BOXES_PER_BATCH, DenseposeSummary, ImageHead, ImageInstances, InstancesWriter,
                                      check_cse_template, read_name_list, store_params, write_images)
from pipeline.template.file import decode_iuv

log = logging.getLogger(__name__)

__all__ = ["read_dump", "read_iuv_entries", "read_iuv_image", "BoxCharts", "read_iuv_folder", "match_instances",
           "instance_boxes", "door_image", "select_instances", "image_batches", "check_precomputed_inputs",
           "write_precomputed_store"]


@dataclass(frozen=True)
class DumpImage:
    """One image of a dump, on the CPU.

    boxes: (k, 4) float32 XYXY.  scores: (k,) float32.  chart: k (labels (h, w), uv (2, h, w)) or None.
    cse: embedding (k, D, h, w) and coarse_segm (k, 2, h, w), or None.
    size: (H, W) of the image when known (it sizes the full-frame export), else None.
    window: (k, 4) the part of each box its crop covers (boxes clipped at the door), or None: all.
    photo: (H, W, 3) uint8 RGB the photo itself when found (``iuv_png``: ``file_name`` in the IUV folder), or None.
    """

    file_name: str
    boxes: np.ndarray
    scores: np.ndarray
    chart: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    cse: tuple[torch.Tensor, torch.Tensor] | None = None
    size: tuple[int, int] | None = None
    window: np.ndarray | None = None
    photo: np.ndarray | None = None


def image_size(name: str, root: str | Path = "") -> tuple[int, int] | None:
    """(H, W) of image ``name`` (as written in the dump, or below ``root``: the path, then the base
    name), read from the file's header after its EXIF orientation, as Detectron2 read the image the dump was
    made from (:func:`pipeline.core.image_files.photo_size`); None when no such image file is found or readable
    (logged).

    Raises:
        ImageTooLargeError: more than :data:`pipeline.core.image_files.MAX_PIXELS` pixels (a decompression bomb).
    """
    candidates = [Path(name)] if not root else [Path(root) / name, Path(root) / Path(name).name]
    for path in candidates:
        if path.is_file():
            try:
                return photo_size(path)
            except UnreadableImageError as e:
                log.warning("%s: its size is not known", e)
                return None
    return None


def _as_tensor(x, what: str) -> torch.Tensor:
    """A tensor or numeric numpy array as a CPU tensor (a copy of the array: it may be read-only)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return torch.from_numpy(np.array(x))
    kind = f"a numpy array of dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
    raise InputError(f"{what}: expected a tensor or numeric numpy array, got {kind}")


def _chart_results(dp, boxes: np.ndarray, where: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A dump entry's chart results, checked (:func:`pipeline.densepose.door.check_chart_result`)."""
    k = len(boxes)
    if len(dp) != k or not all(isinstance(r, ChartResult) for r in dp):
        raise InputError(f"{where}: expected {k} DensePoseChartResult, got {[type(r).__name__ for r in dp]}")
    out = []
    for j, r in enumerate(dp):
        at = f"{where}, instance {j}"
        lab, uv = _as_tensor(r.labels, at), _as_tensor(r.uv, at)
        check_chart_result(lab, uv, boxes[j], at)
        out.append((lab, uv))
    return out


def read_dump(path: str | Path) -> list[DumpImage]:
    """Reads and checks an ``apply_net.py dump`` file (see the module docstring).

    Raises:
        InputError: naming the file, the image and the instance, for anything that is not a dump of
            the documented form (the per-instance policy is :mod:`pipeline.densepose.door`'s table).
    """
    data = load_dump(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: a dump is a list of per-image dicts, got {type(data).__name__}")
    out = []
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "file_name" not in entry:
            raise InputError(f"{where}: expected a dict with 'file_name', got {type(entry).__name__}")
        name = str(entry["file_name"])
        where = f"{path}: image {name!r} (entry {i})"
        boxes = entry.get("pred_boxes_XYXY")
        boxes = torch.zeros(0, 4) if boxes is None else _as_tensor(getattr(boxes, "tensor", boxes), where)
        k = len(boxes) if boxes.dim() else 0
        scores = entry.get("scores")
        scores = torch.ones(k) if scores is None else _as_tensor(scores, where)
        boxes, scores = boxes.double().numpy(), scores.double().numpy()
        check_boxes(boxes, scores, where)
        boxes, scores = boxes.astype(np.float32), scores.astype(np.float32)
        dp = entry.get("pred_densepose")
        chart = cse = None
        if isinstance(dp, EmbeddingOutput):
            cse = (_as_tensor(dp.embedding, where), _as_tensor(dp.coarse_segm, where))
            check_cse_output(*cse, k, where)
        elif isinstance(dp, (list, tuple)):
            chart = _chart_results(dp, boxes, where)
        elif dp is None:
            if k:
                raise InputError(f"{where}: {k} boxes but no 'pred_densepose'")
            chart = []
        else:
            raise InputError(f"{where}: unsupported pred_densepose {type(dp).__name__}")
        out.append(DumpImage(name, boxes, scores, chart, cse))
    log.info("read %s: %d images, %d instances", path, len(out), sum(len(e.scores) for e in out))
    return out


def door_image(im: DumpImage, where: str, counts: DoorCounts) -> DumpImage:
    """One dump image after the door's box checks (:func:`pipeline.densepose.door.door_boxes`): skipped
    instances removed, clipped boxes in place with their chart results cut to them (or, for CSE
    output, their windows recorded)."""
    v = door_boxes(im.boxes, im.scores, im.size, where, counts)
    keep = np.flatnonzero(v.keep)
    chart = cse = window = None
    if im.chart is not None:
        chart = [cut_result_to_box(*im.chart[i], im.boxes[i], v.boxes[i]) if v.clipped[i] else im.chart[i]
                 for i in keep]
    if im.cse is not None:
        idx = torch.from_numpy(keep).long()
        cse, window = (im.cse[0][idx], im.cse[1][idx]), v.window[keep]
    return dataclasses.replace(im, boxes=v.boxes[keep], scores=im.scores[keep], chart=chart, cse=cse, window=window)


def _check_part_channel(iuv: np.ndarray, where: str) -> None:
    """Refuses an IUV image (H, W, 3) uint8 whose channel 0 (part index) exceeds 24."""
    bad = iuv[..., 0] > 24
    if bad.any():
        raise InputError(f"{where}: {int(bad.sum())} pixels have a part index above 24 (up to "
                         f"{int(iuv[..., 0].max())}) in channel 0 (the PNG's blue channel): not an IUV image as "
                         "cv2.imwrite writes it (channel 0 = I, 1 = 255 U, 2 = 255 V); if it was saved from an RGB "
                         "array (PIL, imageio), reverse its channels")


# an iuv_png entry: the keys it needs, its paths below precomputed.iuv_folder, those that must exist (not the photo)
IUV_KEYS, IUV_PATHS, IUV_FILES = ("file_name", "iuv", "boxes"), ("file_name", "iuv", "inds"), ("iuv", "inds")


def read_iuv_entries(folder: str | Path, boxes_json: str | Path) -> list[BoxesEntry]:
    """The boxes JSON of an IUV folder, every entry checked before any PNG is read: the table of
    :mod:`pipeline.densepose.boxes_json` (the ``iuv`` and ``inds`` files must exist below ``folder``; the photo,
    ``file_name``, may be absent) and the entries' ``inds_values`` (:func:`_inds_values`).

    Raises:
        MissingInputError: listed PNGs missing (every one named).  InputError: the rest of the tables.
    """
    entries = read_boxes_json(boxes_json, folder, IUV_KEYS, IUV_PATHS, IUV_FILES)
    for e in entries:
        if _inds_values(e.item, len(e.boxes), e.where) is not None and not e.item.get("inds"):
            raise InputError(f"{e.where}: \"inds_values\" without \"inds\": they name instances of an index map; "
                             "add the index map's file as \"inds\" or drop \"inds_values\"")
    return entries


class BoxCharts(Sequence):
    """The chart results of an IUV image's boxes, each cut from the decoded image when it is read
    (:func:`_box_pixels`): item j is labels (h, w) int64 and uv (2, h, w) float32 at box j's integer size. One
    box's result at a time in memory, whatever the number of boxes.

    labels_full: (H, W) int64 and uv_full: (2, H, W) float32 the decoded image.  inds: (H, W) index map or None.
    boxes: (k, 4) float32.  values: k index-map values (None without an index map).
    """

    def __init__(self, labels_full: np.ndarray, uv_full: np.ndarray, inds: np.ndarray | None, boxes: np.ndarray,
                 values: list):
        self.labels_full, self.uv_full, self.inds, self.boxes, self.values = labels_full, uv_full, inds, boxes, values

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if not -len(self) <= j < len(self):
            raise IndexError(j)
        return _box_pixels(self.labels_full, self.uv_full, self.inds, self.boxes[j], self.values[j])


def read_iuv_image(folder: str | Path, entry: BoxesEntry, boxes_json: str | Path, counts: DoorCounts) -> DumpImage | None:
    """One image of an IUV folder (an entry of :func:`read_iuv_entries`): its PNGs read, its boxes checked at the
    door (skips and clips counted in ``counts``) and matched with the index map's instances.

    Returns:
        a :class:`DumpImage` of the boxes kept, its ``chart`` a :class:`BoxCharts` (made box by box when read), its
        ``photo`` the photo when found; None when the IUV PNG or the index map cannot be read (logged: the image
        is skipped).
    Raises:
        InputError: an IUV PNG that is not one, or a box whose instance in the index map cannot be decided
            (:func:`match_instances`).
    """
    folder = Path(folder)
    i, item, name, where, boxes, scores = entry
    given = _inds_values(item, len(boxes), where)
    iuv_name = str(item["iuv"])
    iuv = _data_image(folder / iuv_name, name)
    if iuv is None or iuv.ndim != 3 or iuv.shape[2] != 3 or iuv.dtype != np.uint8:
        log.warning("skipping %s: cannot read %s as an 8-bit 3-channel IUV image", name, folder / iuv_name)
        return None
    _check_part_channel(iuv, f"{folder / iuv_name} (image {name!r}, {boxes_json} images[{i}])")
    inds = None
    if item.get("inds"):
        inds = _data_image(folder / item["inds"], name)
        if inds is None or inds.shape[:2] != iuv.shape[:2]:
            log.warning("skipping %s: cannot read the index map %s", name, folder / item["inds"])
            return None
        inds = inds if inds.ndim == 2 else inds[..., 0]
    labels_full, uv_full = decode_iuv(iuv)
    H, W = labels_full.shape
    v = door_boxes(boxes, scores, (H, W), where, counts)
    keep = np.flatnonzero(v.keep)
    values = [None] * len(keep)
    if inds is not None:
        values = match_instances(inds, v.boxes[keep], keep, len(boxes),
                                 None if given is None else given[keep],
                                 f"{where}, index map {folder / item['inds']}")
    return DumpImage(name, v.boxes[keep], scores[keep], BoxCharts(labels_full, uv_full, inds, v.boxes[keep], values),
                     None, size=(H, W), photo=_photo(folder / name, (H, W)))


def read_iuv_folder(folder: str | Path, boxes_json: str | Path,
                    counts: DoorCounts | None = None) -> tuple[list[DumpImage], list[str]]:
    """Reads full-frame IUV PNGs and their boxes (see the module docstring), checked at the door: every image at
    once, to look at a few (the stage reads one image at a time, :func:`write_precomputed_store`).

    Args:
        counts: where skipped and clipped boxes are counted (default: a new, discarded one).
    Returns:
        the images as :class:`DumpImage` with chart results at (clipped) box size (:class:`BoxCharts`), and the
        names of the images whose PNG could not be read (skipped, logged).
    Raises:
        InputError: the boxes JSON's table (:func:`read_iuv_entries`), an IUV PNG that is not one, or a box whose
            instance in the index map cannot be decided (:func:`match_instances`).
    """
    counts = counts if counts is not None else DoorCounts()
    out, skipped = [], []
    for entry in read_iuv_entries(folder, boxes_json):
        im = read_iuv_image(folder, entry, boxes_json, counts)
        if im is None:
            skipped.append(entry.name)
        else:
            out.append(im)
    return out, skipped


def _data_image(path: Path, name: str) -> np.ndarray | None:
    """An IUV or INDS PNG as ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` returns it
    (:func:`pipeline.core.image_files.read_data_image`: unrotated, BGR), or None when unreadable (logged: the
    caller skips image ``name``). Raises ImageTooLargeError on a decompression bomb."""
    try:
        return read_data_image(path)
    except UnreadableImageError as e:
        log.warning("image %s: %s", name, e)
        return None


def _photo(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB the photo an IUV image was made from, when ``path`` is a readable image of its size
    (oriented by EXIF, as Detectron2 reads it: :func:`pipeline.core.image_files.read_photo`); else None (logged when
    it exists but is unreadable, truncated or does not fit). Raises ImageTooLargeError on a decompression bomb."""
    if not path.is_file():
        return None
    try:
        rgb = read_photo(path)
    except UnreadableImageError as e:
        log.info("not used as the photo of its IUV image: %s", e)
        return None
    if rgb.shape[:2] != tuple(size):
        log.info("%s: not used as the photo of its IUV image (%d x %d, the IUV is %d x %d)", path, rgb.shape[1],
                 rgb.shape[0], size[1], size[0])
        return None
    return rgb


def _inds_values(item, k: int, where: str) -> np.ndarray | None:
    """An ``images[i]`` entry's ``inds_values`` (k,) int64, checked (one positive integer a box, each once),
    or None without them."""
    given = item.get("inds_values")
    if given is None:
        return None
    ok = (isinstance(given, list) and len(given) == k
          and all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65535 for x in given))
    if not ok:
        raise InputError(f"{where}: \"inds_values\" must list one index-map value a box, an integer in 1..65535 "
                         f"({k} boxes), got {given!r}")
    values = np.asarray(given, np.int64)
    uniq, n = np.unique(values, return_counts=True)
    if (n > 1).any():
        v = int(uniq[n > 1][0])
        twice = np.flatnonzero(values == v).tolist()
        raise InputError(f"{where}: \"inds_values\" gives value {v} to instances {twice}: one instance of the index "
                         "map is one box; drop the duplicate box or correct its value")
    return values


def _window(box: np.ndarray, H: int, W: int) -> tuple[slice, slice]:
    """The image pixels (rows, columns) of Detectron2's integer box of ``box``, clipped to an H x W image."""
    x, y, w, h = int_box_xywh(box)
    return slice(min(max(y, 0), H), min(max(y + h, 0), H)), slice(min(max(x, 0), W), min(max(x + w, 0), W))


def match_instances(inds: np.ndarray, boxes: np.ndarray, numbers: np.ndarray, n_boxes: int,
                    given: np.ndarray | None, where: str) -> list[int]:
    """Which instance of an index map each box is (the rule is the module docstring's).

    Args:
        inds: (H, W) integer index map, 0 = no instance.  boxes: (k, 4) the boxes kept at the door.
        numbers: (k,) each box's position in the input's list of ``n_boxes`` boxes (its "instance i").
        given: (k,) the input's ``inds_values`` of these boxes, or None.
        where: the JSON, the image and the index map, for the messages.
    Returns:
        k index-map values, one a box; 0 where a box is matched with no instance (more boxes than instances).
    Raises:
        InputError: a box whose instance cannot be decided, naming it, the values and the fix.
    """
    H, W = inds.shape
    present, sizes = np.unique(inds[inds > 0], return_counts=True)

    def pixels(j: int, value: int) -> int:  # pixels of instance ``value`` inside box j
        return int(np.count_nonzero(inds[_window(boxes[j], H, W)] == value)) if value else 0

    # by "inds_values" or by the numbering, only each box's own value is counted (one pass over its box, no k x m
    # table: an image may have thousands of boxes); the matching needs every box's pixels of every instance
    values = how = None
    if given is not None:
        values, how = [int(v) for v in given], "its \"inds_values\" entry"
        own = [pixels(j, v) for j, v in enumerate(values)]
    elif len(present) and present[-1] <= n_boxes:
        row = {int(n): j for j, n in enumerate(numbers)}  # box j is the input's instance numbers[j]
        own = [pixels(j, int(n) + 1) for j, n in enumerate(numbers)]
        if all(int(v) - 1 in row and own[row[int(v) - 1]] * 2 > size for v, size in zip(present, sizes)):
            values, how = [int(n) + 1 for n in numbers], "the index map's numbering (box k = value k + 1)"
    if values is None:
        held = _held(inds, boxes, present, where)
        values, how = _best_matching(held, present, boxes, numbers, where), "the matching"
        column = {int(v): c for c, v in enumerate(present)}
        own = [int(held[j, column[v]]) if v in column else 0 for j, v in enumerate(values)]
    unmatched = [j for j, v in enumerate(values) if not v]
    empty = [j for j, v in enumerate(values) if v and own[j] == 0]
    for j in unmatched[:MAX_LOGGED]:
        log.warning("%s, instance %d: box %s is matched with no instance of the index map (more boxes than "
                    "instances hold pixels): its crop is empty and the iuv stage drops it", where, int(numbers[j]),
                    boxes[j].tolist())
    for j in empty[:MAX_LOGGED]:
        log.warning("%s, instance %d: box %s holds no pixel of its instance (value %d, by %s): its crop is "
                    "empty and the iuv stage drops it", where, int(numbers[j]), boxes[j].tolist(), values[j], how)
    if len(unmatched) + len(empty) > 2 * MAX_LOGGED:
        log.warning("%s: %d boxes matched with no instance and %d holding no pixel of theirs in all (empty crops)",
                    where, len(unmatched), len(empty))
    return values


# boxes x instances of an index map matched by their pixels at most (an int64 table of 32 MB; the matching solves
# k + 1 assignment problems on it): more need "inds_values"
MAX_MATCHED = 4_000_000


def _held(inds: np.ndarray, boxes: np.ndarray, present: np.ndarray, where: str) -> np.ndarray:
    """(k, m) int64 the pixels of each instance of ``present`` (m,) inside each box (k, 4) of index map ``inds``.

    Raises:
        InputError: k x m above :data:`MAX_MATCHED` (the fix: ``inds_values``)."""
    H, W = inds.shape
    if len(boxes) * len(present) > MAX_MATCHED:
        raise InputError(f"{where}: {len(boxes)} boxes and {len(present)} instances in the index map are too many to "
                         "match by their pixels; give every box its value with \"inds_values\": [...] beside "
                         "\"boxes\" (scripts/boxes_from_inds.py writes them), or number the instances 1..k in the "
                         "boxes' order")
    held = np.zeros((len(boxes), len(present)), np.int64)
    for j, box in enumerate(boxes):
        window = inds[_window(box, H, W)]
        vals, n = np.unique(window[window > 0], return_counts=True)
        held[j, np.searchsorted(present, vals)] = n
    return held


def _best_matching(held: np.ndarray, present: np.ndarray, boxes: np.ndarray, numbers: np.ndarray,
                   where: str) -> list[int]:
    """One instance a box (:func:`match_instances`): the matching with the most instance pixels inside their boxes,
    refused where another matching holds as many and gives a box another instance."""
    from scipy.optimize import linear_sum_assignment

    k = len(boxes)
    if k == 0 or len(present) == 0:
        return [0] * k
    forbid = -(int(held.sum()) + 1)

    def solve(weights: np.ndarray) -> tuple[int, np.ndarray]:
        rows, cols = linear_sum_assignment(weights, maximize=True)
        match = np.full(k, -1)
        match[rows] = cols
        return int(weights[rows, cols].sum()), match

    best, match = solve(held)
    for j in range(k):
        c = match[j]
        if c < 0 or held[j, c] == 0:
            continue
        other = held.copy()
        other[j, c] = forbid
        total, alt = solve(other)
        if total == best:
            instead = f"value {int(present[alt[j]])}" if alt[j] >= 0 else "no instance"
            raise InputError(
                f"{where}, instance {int(numbers[j])}: cannot tell which instance box {boxes[j].tolist()} is: it holds "
                f"{int(held[j, c])} pixels of value {int(present[c])}, and matching it with {instead} instead puts as "
                "many pixels of the index map inside their boxes; give every box its value with \"inds_values\": "
                "[...] beside \"boxes\" (scripts/boxes_from_inds.py writes them)")
    return [int(present[c]) if c >= 0 and held[j, c] > 0 else 0 for j, c in enumerate(match)]


def instance_boxes(inds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each instance of an index map (H, W) (0 = none) and its pixels' bounding box: (m,) int64 values ascending
    and (m, 4) float64 boxes x0, y0, x1, y1 (``x1 = last column + 1``: Detectron2's integer box of it covers
    every pixel of the instance)."""
    inds = np.asarray(inds)
    values = np.unique(inds[inds > 0]).astype(np.int64)
    boxes = np.zeros((len(values), 4))
    for j, v in enumerate(values):
        ys, xs = np.nonzero(inds == v)
        boxes[j] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return values, boxes


def _box_pixels(labels_full: np.ndarray, uv_full: np.ndarray, inds: np.ndarray | None, box: np.ndarray,
                value: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One instance's chart result at its integer box size from a decoded full-frame IUV image
    (labels (H, W), uv (2, H, W)); pixels outside the image are background, and with an index map
    (``inds`` (H, W)) every pixel whose value is not the instance's ``value`` (0: no instance, all)."""
    H, W = labels_full.shape
    x, y, w, h = int_box_xywh(box)
    lab = np.zeros((h, w), np.int64)
    uv = np.zeros((2, h, w), np.float32)
    ys, xs = _window(box, H, W)
    dst = (slice(ys.start - y, ys.stop - y), slice(xs.start - x, xs.stop - x))
    if ys.stop > ys.start and xs.stop > xs.start:
        lab[dst] = labels_full[ys, xs]
        uv[(slice(None), *dst)] = uv_full[:, ys, xs]
        if inds is not None:
            other = np.zeros((h, w), bool)
            other[dst] = (inds[ys, xs] != value) | (value == 0)
            lab[other] = 0
            uv[:, other] = 0
    return torch.from_numpy(lab), torch.from_numpy(uv)


def _crops(im: DumpImage, part: np.ndarray, crop: int) -> ImageInstances:
    """Instances ``part`` ((m,) int64, indices into ``im``'s boxes) of one image on the ``S x S`` grid."""
    boxes, scores = im.boxes[part], im.scores[part]
    if im.cse is not None:
        idx = torch.from_numpy(part).long()
        window = None if im.window is None else im.window[part]
        c = cse_output_to_crops(im.cse[0][idx], im.cse[1][idx], crop, window=window)
        return ImageInstances(im.file_name, boxes, scores, embedding=c.embedding.numpy(), mask=c.mask.numpy(),
                              size=im.size)
    c = chart_results_to_crops([im.chart[i] for i in part], crop)
    rgb = None if im.photo is None else photo_crops(im.photo, boxes, crop)
    return ImageInstances(im.file_name, boxes, scores, labels=c.labels.numpy(), uv=c.uv.numpy(), size=im.size,
                          rgb=rgb)


def image_batches(im: DumpImage, crop: int, threshold: float = 0.0, max_instances: int = 0,
                  batch: int | None = None) -> Iterator[ImageInstances]:
    """One image's instances that pass ``threshold`` and ``max_instances`` (best first), on the ``S x S`` grid,
    ``batch`` at a time (default :data:`pipeline.densepose.write.BOXES_PER_BATCH`): what the writer takes."""
    keep = select_instances(im.scores, threshold, max_instances)
    batch = batch or BOXES_PER_BATCH
    for s in range(0, len(keep), batch):
        yield _crops(im, keep[s:s + batch], crop)


def dump_images_to_instances(images: list[DumpImage], crop: int, threshold: float = 0.0,
                             max_instances: int = 0, ranks: Ranks = ALONE) -> list[ImageInstances]:
    """Filters each image's instances and brings them onto the ``S x S`` grid, all of an image at once (the stage
    streams them: :func:`image_batches`). Under torchrun image ``t`` is resampled on rank ``t mod P``
    (:func:`pipeline.core.ranks.ordered_map`): rank 0 gets them all, the others []."""
    check_share(len(images), ranks, "images", "use fewer processes")

    def to_crops(t: int) -> ImageInstances:
        return _crops(images[t], select_instances(images[t].scores, threshold, max_instances), crop)

    return [instances for _, instances in ordered_map(to_crops, len(images), ranks)]


def check_precomputed_inputs(params) -> None:
    """Fails fast: the files and folders ``params`` (:class:`pipeline.core.config.PrecomputedParams`) name
    exist and are readable. Raises one :class:`InputError` listing every problem."""
    if params.format == "dump":
        problems = path_problems("precomputed.dump", params.dump, hint="the file written by `apply_net.py dump`")
        if params.image_root:
            problems += path_problems("precomputed.image_root", params.image_root, "folder")
    else:
        problems = (path_problems("precomputed.iuv_folder", params.iuv_folder, "folder",
                                  hint="the folder of the IUV PNGs")
                    + path_problems("precomputed.boxes_json", params.boxes_json,
                                    hint="the JSON file of each image's IUV PNG and boxes"))
    if params.test_list:
        problems += path_problems("precomputed.test_list", params.test_list)
    raise_problems(f"densepose.source precomputed (format {params.format})", problems)


def write_precomputed_store(params, crop: int, template, out_path: str | Path,
                            params_record: dict | None = None, ranks: Ranks = ALONE) -> DenseposeSummary:
    """The ``precomputed`` source, end to end: check, read, filter, resample, write ``densepose.zarr``.

    Args:
        params: :class:`pipeline.core.config.PrecomputedParams`.  crop: S (``densepose.crop``).
        template: the :class:`pipeline.template.file.Template` (its hash is recorded; CSE output needs
            the CSE mesh's template).  params_record: params recorded in the store.
        ranks: under torchrun every rank reads and checks the input (rank 0 alone logs what the door finds),
            and resamples its share of the images (:func:`dump_images_to_instances`); rank 0 writes.

    Returns:
        (on rank 0; the other ranks end once their share is done) summary dict of counts (images, images_skipped, images_without_instances, instances...,
        and the door's :data:`pipeline.densepose.door.COUNT_KEYS`).
    """
    check_precomputed_inputs(params)
    test = read_name_list(params.test_list) if params.test_list else None
    mesh = None
    if params.format == "dump":
        counts = DoorCounts() if ranks.writer else DoorCounts(max_logged=0)  # the same counts on every rank
        images = read_dump(params.dump)
        images = [dataclasses.replace(im, size=image_size(im.file_name, params.image_root)) for im in images]
        unknown = sum(im.size is None for im in images)
        if unknown and ranks.writer:
            log.info("%d of %d images of the dump not found%s: their full-frame exports are sized by the boxes, "
                     "which cannot be checked against them", unknown, len(images),
                     f" below {params.image_root}" if params.image_root else "")
        images = [door_image(im, f"{params.dump}: image {im.file_name!r} (entry {i})", counts)
                  for i, im in enumerate(images)]
        dims = {int(im.cse[0].shape[1]) for im in images if im.cse is not None}
        if len(dims) > 1:
            raise InputError(f"{params.dump}: CSE embeddings of sizes {sorted(dims)}: the output of several models")
        if dims:
            check_cse_template(template, "precomputed", dims.pop())
            mesh = template.topology
        check_share(len(images), ranks, "images", "use fewer processes")
        n, total = len(images), sum(len(im.boxes) for im in images)

        def task(t: int) -> list[tuple[ImageHead, Iterator[ImageInstances]]]:
            im = images[t]
            return [(ImageHead(im.file_name, im.size, len(im.boxes)),
                     image_batches(im, crop, params.score_threshold, params.max_instances))]
    else:
        counts = DoorCounts()  # each image is read on one rank: the counts are summed below
        folder = Path(params.iuv_folder)
        entries = read_iuv_entries(folder, params.boxes_json)
        check_share(len(entries), ranks, f"images in {params.boxes_json}", "use fewer processes")
        n, total = len(entries), sum(len(e.boxes) for e in entries)

        def task(t: int) -> list[tuple[ImageHead, Iterator[ImageInstances] | None]]:
            im = read_iuv_image(folder, entries[t], params.boxes_json, counts)
            head = ImageHead(entries[t].name, None if im is None else im.size, len(entries[t].boxes))
            return [(head, None if im is None else image_batches(im, crop, params.score_threshold,
                                                                 params.max_instances))]

    with InstancesWriter(out_path, crop=crop, source="precomputed", template_hash=template.hash,
                         params=params_record or {}, test_names=test, cse_mesh=mesh) as w:
        bar = progress(total=total, desc="densepose precomputed", unit="box", enabled=ranks.writer)
        write_images(w, task, n, ranks, bar)  # image t read and resampled on rank t mod P, written by rank 0
        bar.close()
        if params.format != "dump":
            counts.counts = sum_counts(counts.counts, ranks)
        ranks.leave_unless_writer()
        return w.finish(counts.summary())


def write_store(params, template, out: str | Path, ranks: Ranks = ALONE) -> DenseposeSummary:
    """The source's entry point (the signature every source shares; ``stages/densepose.py`` picks the source)."""
    return write_precomputed_store(params.precomputed, params.densepose.crop, template, out, store_params(params),
                                   ranks)
