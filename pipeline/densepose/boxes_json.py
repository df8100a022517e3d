"""The boxes JSON of the ``precomputed`` source (``format: iuv_png``) and of the ``network`` source, read and
checked in full before any image is read.

Format (``k`` boxes of an image, image pixels; ``scores`` optional, 1 each by default)::

    {"images": [{"file_name": "a.jpg", "boxes": [[x0, y0, x1, y1], ...], "scores": [0.99, ...], ...}, ...]}

The sources add their own keys (``iuv``, ``inds``, ``inds_values``: :mod:`pipeline.densepose.precomputed`). Paths are
relative to the source's folder (``precomputed.iuv_folder``, ``network_source.images``). :func:`read_boxes_json`
refuses, each time with an :class:`~pipeline.core.errors.InputError` naming the JSON, the entry (``images[i]`` and
its ``file_name``) and the fix:

=========================================================  ===================================================
input                                                      behaviour
=========================================================  ===================================================
not JSON, not ``{"images": [...]}``                        error
``{"images": []}``                                         error: no images in the JSON
an entry without a key its source needs                    error
a path absolute or with ``..`` that leaves the folder      error naming the entry and the path (all of them)
the same file listed by two entries                        error naming both entries (all of them): one entry
                                                           an image, its boxes together (no silent merge:
                                                           which entry's ``iuv``, ``inds``, ``scores`` win
                                                           would be a guess)
a listed file that does not exist                          error saying "missing", naming every such file
                                                           (:class:`~pipeline.densepose.door.MissingInputError`)
boxes not (k, 4), scores not (k,), NaN or infinite,        error naming the image and the box
scores outside [0, 1]                                      (:func:`pipeline.densepose.door.check_boxes`)
an inverted box (x1 < x0 or y1 < y0)                       error naming the image and the box
a box wholly at negative x or y (left of, above the image) error naming the image and the box
=========================================================  ===================================================

Empty boxes (``x1 == x0`` or ``y1 == y0``) and boxes reaching past an edge of the image (a detector's box starting
at x0 = -0.7, say) are left to the door (:func:`pipeline.densepose.door.door_boxes`: skipped or clipped to the image,
and counted), which knows the image's size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pipeline.core.errors import InputError
from pipeline.densepose.door import MissingPath, check_boxes, first_bad, raise_problems

__all__ = ["BoxesEntry", "read_boxes_json", "check_box_geometry"]

MAX_LISTED = 20  # problems listed one by one in an error; the rest counted


class BoxesEntry(NamedTuple):
    """One ``images[i]`` entry of a boxes JSON, checked.

    index: i.  item: the entry as read (a dict).  name: its ``file_name``.  where: the JSON and the image, for
    messages (``"boxes.json: image 'a.jpg' (images[3])"``).  boxes: (k, 4) float32 x0, y0, x1, y1.  scores: (k,)
    float32.
    """

    index: int
    item: dict
    name: str
    where: str
    boxes: np.ndarray
    scores: np.ndarray


def check_box_geometry(boxes: np.ndarray, where: str) -> None:
    """Refuses inverted boxes (x1 < x0 or y1 < y0) and boxes wholly at negative coordinates (x0 < 0 and x1 <= 0,
    or alike in y: left of or above the image) among boxes (k, 4) given by a user, naming the first (``where``: the file and the
    image; ", instance i" is added). A box reaching past the top or left edge is clipped by the door."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i, inst = first_bad(bad)
        raise InputError(f"{where}, {inst}: box {boxes[i].tolist()} is inverted (x1 < x0 or y1 < y0): boxes are "
                         "[x0, y0, x1, y1], the top-left corner first (a box as [x, y, width, height] must be "
                         "converted: x1 = x + width, y1 = y + height)")
    bad = ((boxes[:, 0] < 0) & (boxes[:, 2] <= 0)) | ((boxes[:, 1] < 0) & (boxes[:, 3] <= 0))
    if bad.any():
        i, inst = first_bad(bad)
        raise InputError(f"{where}, {inst}: box {boxes[i].tolist()} lies wholly at negative coordinates: boxes are "
                         "image pixels counted from the top-left corner (0, 0), [x0, y0, x1, y1]")


def _boxes(item: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """An entry's boxes (k, 4) and scores (k,) float32, checked."""
    boxes = np.asarray(item.get("boxes", []), np.float64)
    boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
    scores = np.asarray(item.get("scores", [1.0] * len(boxes) if boxes.ndim else []), np.float64)
    check_boxes(boxes, scores, where)
    check_box_geometry(boxes, where)
    return boxes.astype(np.float32), scores.astype(np.float32)


def _inside(folder: str, value: Any) -> str | None:
    """``value`` (a path relative to ``folder``) normalised, as a path below ``folder``; None when it is absolute
    or its ``..`` leave the folder (lexically: a link inside the folder may point anywhere)."""
    if not isinstance(value, str) or not value:
        return None
    root = os.path.normpath(os.path.abspath(folder))
    rel = os.path.relpath(os.path.normpath(os.path.join(root, value)), root)
    return None if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def _listed(path: Path, folder: str | Path, entries: list[tuple[int, dict, str]], paths: tuple[str, ...],
            files: tuple[str, ...]) -> None:
    """Every problem with the paths the entries list (outside the folder, listed twice, missing), in one error."""
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item, name in entries:
        for key in paths:
            if key not in item or (key != "file_name" and not item[key]):
                continue
            value = item[key]
            at = f"images[{i}] ({name!r}), {key!r}"
            rel = _inside(str(folder), value)
            if rel is None:
                problems.append(f"{at}: {value!r} is not a path inside {folder}: give it relative to that folder, "
                                "without '..'")
                continue
            if (key, rel) in seen:
                problems.append(f"{at}: {value!r} is listed again (first by images[{seen[key, rel]}]): give each "
                                "file one entry, with all its boxes")
                continue
            seen[key, rel] = i
            if key in files:
                full = Path(folder) / rel
                if not full.exists():
                    problems.append(MissingPath(f"{at}: {full} is missing"))
                elif not full.is_file():
                    problems.append(f"{at}: {full} is not a file")
    if len(problems) > MAX_LISTED:
        problems = problems[:MAX_LISTED] + [f"... and {len(problems) - MAX_LISTED} more"]
    raise_problems(f"{path}: the files it lists", problems)


def read_boxes_json(path: str | Path, folder: str | Path, keys: tuple[str, ...] = ("file_name", "boxes"),
                    paths: tuple[str, ...] = ("file_name",), files: tuple[str, ...] = ("file_name",)) -> list[BoxesEntry]:
    """The entries of a boxes JSON, every one checked (the module docstring's table) before the caller reads any
    image.

    Args:
        path: the JSON.  folder: the folder its paths are relative to.  keys: the keys every entry needs.
        paths: the keys holding paths below ``folder`` (when present): none may leave it, none may name a file
            another entry names under the same key.  files: those of ``paths`` that must name existing files.
    Returns:
        one :class:`BoxesEntry` per ``images[i]``, in order.
    Raises:
        FileNotFoundError: no such JSON.  MissingInputError: listed files missing (every one named).
        InputError: anything else of the table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes JSON not found: {path}")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("images"), list):
        raise InputError(f"{path}: expected {{\"images\": [{{\"file_name\": ..., \"boxes\": [[x0, y0, x1, y1], "
                         "...]}, ...]}")
    if not spec["images"]:
        raise InputError(f"{path}: there are no images in the JSON (\"images\" is empty): list each image with its "
                         "boxes")
    named = []
    for i, item in enumerate(spec["images"]):
        missing = [k for k in keys if not isinstance(item, dict) or k not in item]
        if missing:
            raise InputError(f"{path}: images[{i}] needs {', '.join(repr(k) for k in keys)} (boxes as [[x0, y0, x1, "
                             f"y1], ...]); it lacks {', '.join(repr(k) for k in missing)}")
        named.append((i, item, str(item["file_name"])))
    _listed(path, folder, named, paths, files)
    out = []
    for i, item, name in named:
        where = f"{path}: image {name!r} (images[{i}])"
        try:
            boxes, scores = _boxes(item, where)
        except (TypeError, ValueError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"{where}: boxes as [[x0, y0, x1, y1], ...] and scores as [s, ...] ({type(e).__name__}: "
                             f"{e})") from e
        out.append(BoxesEntry(i, item, name, where, boxes, scores))
    return out
