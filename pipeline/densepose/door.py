"""Validation at the door: what the densepose sources check of their inputs before they write a store.

Two kinds of checks, one implementation for every source:

1. **Fail fast.** At the start of its ``write_*_store`` each source checks what it cannot do without
   (``check_detectron2_inputs``: Detectron2 importable, config, weights, a folder with images;
   ``check_precomputed_inputs``: the dump or the IUV folder and its boxes JSON; both: the test list)
   and reports *every* problem found in one error (:func:`path_problems`, :func:`raise_problems`),
   before any model is built or file is read.
2. **Per instance.** Every box, score and array is checked as it is read (:func:`check_boxes`,
   :func:`check_chart_result`, :func:`check_cse_output`, :func:`check_finite`), and boxes are compared
   with the image when its size is known (:func:`door_boxes`). A violation is either an
   :class:`~pipeline.core.errors.InputError` that names the file, the image (its ``file_name``) and the
   instance (its index in that image, in the input's order) and says what to do, or a skip (or clip)
   that is counted in the summary the store writer returns (hence in ``metrics/densepose.json``,
   under the keys :data:`COUNT_KEYS`, 0 when none) and logged at WARNING (the first
   :data:`MAX_LOGGED` of each kind one by one, then a summary).

Policy. "File" is the dump, the boxes JSON (``iuv_png``) or the image (``detectron2``). Skips and
clips are counted over every instance of the input, before the score threshold and
``max_instances`` (which then choose among the instances left).

======================================================  =======================================  ==========
input                                                   behaviour                                sources
======================================================  =======================================  ==========
box coordinate NaN or infinite                          error (the input is corrupt)             all
score NaN or infinite                                   error (it would drop its instance        all
                                                        silently)
score outside [0, 1]                                    error (not a detection probability)      all
boxes not (k, 4), scores not (k,), of another k         error                                    all
empty box (x1 <= x0 or y1 <= y0)                        skip, ``skipped_empty_boxes``            all
box entirely outside the image (size known)             skip, ``skipped_boxes_outside_image``    all
box partly outside the image (size known)               clip to the image, ``clipped_boxes``;    all
                                                        its crop covers the clipped box
box outside the image, size unknown (dump whose         kept as is (nothing to compare with)     dump
images are not found)
chart labels not (h, w) integer, uv not (2, h, w)       error                                    dump
float
chart result not the box's integer size (+-1 pixel)     error (results and boxes do not match)   dump
chart label outside 0..24                               error                                    dump
uv NaN or infinite                                      error                                    dump
uv outside [-0.5, 1.5] (:data:`UV_TOLERANCE`)           error (another scale, e.g. 0..255)       dump
uv in [-0.5, 0) or (1, 1.5]                             kept: raw DensePose U, V overshoot; the  dump,
                                                        iuv stage repairs such pixels, the IUV   detectron2
                                                        encoding clamps them as Detectron2 does
CSE embedding / coarse_segm not (k, D, h, w) /          error                                    dump
(k, >= 2, h, w) float, or NaN / infinite
model output (heatmaps) NaN or infinite                 error (check weights and config)         detectron2
IUV PNG part index (channel 0) above 24                 error (not an IUV image; RGB order?)     iuv_png
IUV PNG or index map unreadable, truncated, not 8-bit   skip the image, ``images_skipped``       iuv_png
boxes JSON: no images, a path leaving its folder, a     one error before any work, naming the    iuv_png,
file listed twice, a listed file missing                entries and the paths                    network
(:mod:`pipeline.densepose.boxes_json`)
box of a boxes JSON inverted (x1 < x0 or y1 < y0) or   error naming the JSON, the image and     iuv_png,
with a negative coordinate                              the box, before any work                 network
index map: which instance a box is, undecided           error naming the JSON, the image and     iuv_png
(another matching of boxes and instances holds as       the box; the fix: ``inds_values``
many pixels; precomputed.py's docstring)
``inds_values`` not one integer 1..65535 a box, a       error                                    iuv_png
value given twice, or without ``inds``
box holding no pixel of its index-map instance          kept, empty crop, logged (the iuv stage  iuv_png
                                                        drops it)
image file unreadable, corrupt or truncated             skip the image, ``images_skipped``; a    detectron2,
(:mod:`pipeline.core.image_files`; photos               photo under an IUV PNG is not used       network,
EXIF-oriented as Detectron2 reads them)                                                          iuv_png
image file over 100 megapixels in its header, or a      error before decoding (a decompression   all
PNG chunk inflating past Pillow's limit                 bomb), naming the file and its size
dump refers to a class outside the allowlist            error (:class:`UnsafeDumpError`)         dump
dump truncated or corrupt                               error ("truncated or corrupt", the file) dump
Detectron2 missing; params file/folder empty, missing,  one error listing every problem, before  detectron2,
unreadable; image folder without images                 any work                                 precomputed
======================================================  =======================================  ==========

The synthetic source reads no user input: its boxes come from the renderer, nothing is checked or
clipped (its store must stay byte-identical), and its counts hold the keys with 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.densepose.convert import int_box_xywh
from pipeline.template.file import N_LABELS

log = logging.getLogger(__name__)

__all__ = ["REAL_CHART_SOURCES", "check_chart_convention", "MissingInputError", "COUNT_KEYS", "UV_TOLERANCE", "MAX_LOGGED", "zero_counts", "DoorCounts",
           "BoxVerdict", "check_boxes", "clip_boxes", "door_boxes", "select_instances", "check_chart_result", "check_cse_output",
           "check_finite", "first_bad", "MissingPath", "path_problems", "raise_problems"]

COUNT_KEYS = ("skipped_empty_boxes", "skipped_boxes_outside_image", "clipped_boxes")
UV_TOLERANCE = 0.5  # uv beyond [-0.5, 1.5] is not a chart coordinate (raw overshoot is a few hundredths)
MAX_LOGGED = 10  # per kind; the rest is summarised
FULL_WINDOW = (0.0, 0.0, 1.0, 1.0)

_WHAT = {"skipped_empty_boxes": "empty boxes skipped", "skipped_boxes_outside_image": "boxes outside their image "
         "skipped", "clipped_boxes": "boxes clipped to their image"}


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the params name does not exist (also a ``FileNotFoundError``, as before)."""


# sources whose chart (IUV) output is DensePose's own U, V: the template must read them in DensePose's convention
REAL_CHART_SOURCES = ("detectron2", "precomputed")


def check_chart_convention(template_charts: str, source: str, kind: str) -> None:
    """Refuses real DensePose chart output (``source`` detectron2 or precomputed, ``kind`` chart) read with a
    template whose charts are not DensePose's (``template_charts``: the template's recorded convention): every
    U, V would name the wrong template point, silently. CSE output and the project's own sources are unaffected.
    """
    if kind == "chart" and source in REAL_CHART_SOURCES and template_charts != "densepose":
        raise InputError(f"densepose.source: {source} gives DensePose's own chart U, V, but the template's charts are "
                         f"{template_charts!r} (the project's own flattening), which would read every pixel as the wrong "
                         "template point; set template.charts: densepose (the default, DensePose's convention on the "
                         "open template) or template.source: smpl, and rerun the template stage")


def zero_counts() -> dict[str, int]:
    """The door's count keys, each 0 (every source's summary has them)."""
    return dict.fromkeys(COUNT_KEYS, 0)


class DoorCounts:
    """Counts skipped and clipped instances of one run and logs them (WARNING): the first
    ``max_logged`` of each kind one by one, then one summary line from :meth:`summary`."""

    def __init__(self, max_logged: int = MAX_LOGGED):
        self.counts = zero_counts()
        self.max_logged = max_logged

    def add(self, key: str, message: str) -> None:
        self.counts[key] += 1
        if self.counts[key] <= self.max_logged:
            log.warning("%s", message)

    def summary(self) -> dict[str, int]:
        """The counts (keys :data:`COUNT_KEYS`); logs how many of each kind were not logged one by one."""
        for key, n in self.counts.items():
            if n > self.max_logged:
                log.warning("%d %s in all (%d more than logged above)", n, _WHAT[key], n - self.max_logged)
        return dict(self.counts)


def first_bad(bad: np.ndarray, instances: np.ndarray | None = None) -> tuple[int, str]:
    """(position of the first True of ``bad`` (k,), "instance i" naming it, "and n more" when more)."""
    at = np.flatnonzero(bad)
    i = int(at[0])
    name = int(instances[i]) if instances is not None else i
    return i, f"instance {name}" + (f" (and {len(at) - 1} more)" if len(at) > 1 else "")


def check_boxes(boxes: np.ndarray, scores: np.ndarray, where: str) -> None:
    """Refuses boxes and scores that no instance can have (see the policy table).

    Args:
        boxes: (k, 4) x0, y0, x1, y1 image pixels.  scores: (k,).
        where: the file and image, e.g. ``"results.pkl: image 'a.jpg'"`` (", instance i" is added).
    Raises:
        InputError: a shape other than (k, 4) / (k,); a NaN or infinite box coordinate or score; a
            score outside [0, 1].
    """
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),):
        raise InputError(f"{where}: boxes of shape {boxes.shape} and scores of shape {scores.shape}: expected "
                         "(k, 4) x0, y0, x1, y1 and (k,), one score per box")
    bad = ~np.isfinite(boxes).all(axis=1)
    if bad.any():
        i, inst = first_bad(bad)
        raise InputError(f"{where}, {inst}: box {boxes[i].tolist()} is not finite (NaN or infinite): the input is "
                         "corrupt; write it again, or remove that instance")
    bad = ~np.isfinite(scores)
    if bad.any():
        i, inst = first_bad(bad)
        raise InputError(f"{where}, {inst}: score {scores[i]} is not finite: the input is corrupt; write it "
                         "again, or remove that instance")
    bad = (scores < 0) | (scores > 1)
    if bad.any():
        i, inst = first_bad(bad)
        raise InputError(f"{where}, {inst}: score {scores[i]} is outside [0, 1]: scores are detection "
                         "probabilities (Detectron2's `scores`); write the input with those")


def clip_boxes(boxes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to an image, and what part of each box they keep.

    Args:
        boxes: (k, 4) x0, y0, x1, y1 non-empty boxes.  size: (H, W) of the image.
    Returns:
        clipped (k, 4) float32 boxes inside ``[0, W] x [0, H]``, and window (k, 4) float64
        ``(u0, v0, u1, v1)``: the clipped box in the box's own unit square (``(0, 0, 1, 1)``: all of it).
    """
    H, W = size
    boxes = np.asarray(boxes, np.float32)
    clipped = np.clip(boxes, 0, np.array([W, H, W, H], np.float32))
    b, c = boxes.astype(np.float64), clipped.astype(np.float64)
    wh = b[:, 2:] - b[:, :2]
    wh = np.where(wh > 0, wh, 1.0)
    window = np.concatenate([(c[:, :2] - b[:, :2]) / wh, (c[:, 2:] - b[:, :2]) / wh], axis=1)
    return clipped, window


@dataclass(frozen=True)
class BoxVerdict:
    """What :func:`door_boxes` made of one image's k boxes.

    keep: (k,) bool, the instances not skipped.  boxes: (k, 4) float32, clipped where clipped.
    window: (k, 4) float64 (u0, v0, u1, v1), the part of the original box each keeps (its crop is
    resampled from that part); (0, 0, 1, 1) when not clipped.  clipped: (k,) bool.
    """

    keep: np.ndarray
    boxes: np.ndarray
    window: np.ndarray
    clipped: np.ndarray


def door_boxes(boxes: np.ndarray, scores: np.ndarray, size: tuple[int, int] | None, where: str,
               counts: DoorCounts) -> BoxVerdict:
    """Checks one image's boxes and scores (:func:`check_boxes`), skips empty boxes and, when the
    image's size (H, W) is known, boxes entirely outside it, and clips those partly outside.

    Args:
        boxes: (k, 4) x0, y0, x1, y1.  scores: (k,).  size: (H, W) or None.
        where: file and image, for the messages.  counts: where skips and clips are counted.
    Raises:
        InputError: see :func:`check_boxes`.
    """
    check_boxes(boxes, scores, where)
    boxes = np.asarray(boxes, np.float32)
    k = len(boxes)
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    outside, clipped = np.zeros(k, bool), np.zeros(k, bool)
    out_boxes, window = boxes.copy(), np.tile(np.array(FULL_WINDOW), (k, 1))
    if size is not None:
        H, W = size
        outside = ~empty & ((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) | (boxes[:, 0] >= W) | (boxes[:, 1] >= H))
        c, win = clip_boxes(boxes, size)
        clipped = ~empty & ~outside & (c != boxes).any(axis=1)
        out_boxes[clipped], window[clipped] = c[clipped], win[clipped]
    for i in np.flatnonzero(empty):
        counts.add("skipped_empty_boxes", f"{where}, instance {i}: empty box {boxes[i].tolist()} (x1 <= x0 or "
                                          "y1 <= y0): skipped")
    for i in np.flatnonzero(outside):
        counts.add("skipped_boxes_outside_image", f"{where}, instance {i}: box {boxes[i].tolist()} lies entirely "
                                                  f"outside the {size[1]}x{size[0]} image: skipped")
    for i in np.flatnonzero(clipped):
        counts.add("clipped_boxes", f"{where}, instance {i}: box {boxes[i].tolist()} reaches outside the "
                                    f"{size[1]}x{size[0]} image: clipped to {out_boxes[i].tolist()}")
    return BoxVerdict(~empty & ~outside, out_boxes, window, clipped)


def select_instances(scores: np.ndarray, threshold: float, max_instances: int,
                     usable: np.ndarray | None = None) -> np.ndarray:
    """Indices of the instances kept: usable (default all), score >= threshold, the ``max_instances``
    best (0: all), best first (ties: original order). scores: (k,); usable: (k,) bool."""
    scores = np.asarray(scores, np.float64)
    ok = scores >= threshold
    if usable is not None:
        ok &= np.asarray(usable, bool)
    keep = np.flatnonzero(ok)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return keep[:max_instances] if max_instances > 0 else keep


def _integer(t: torch.Tensor) -> bool:
    return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


def check_chart_result(labels: torch.Tensor, uv: torch.Tensor, box: np.ndarray, where: str) -> None:
    """Refuses a box-size chart result (``DensePoseChartResult``) outside its documented form.

    Args:
        labels: (h, w) integer 0..24.  uv: (2, h, w) float, finite, within
            ``[-UV_TOLERANCE, 1 + UV_TOLERANCE]``.  box: (4,) its finite box; (h, w) must be its
            integer size (:func:`~pipeline.densepose.convert.int_box_xywh`) within one pixel, unless empty.
        where: file, image and instance, for the messages.
    Raises:
        InputError: naming what is wrong.
    """
    if labels.dim() != 2 or not _integer(labels):
        raise InputError(f"{where}: chart labels of shape {tuple(labels.shape)} and dtype {labels.dtype}: expected "
                         "(h, w) integer part indices 0..24")
    if uv.shape != (2, *labels.shape) or not uv.dtype.is_floating_point:
        raise InputError(f"{where}: chart uv of shape {tuple(uv.shape)} and dtype {uv.dtype}: expected (2, "
                         f"{labels.shape[0]}, {labels.shape[1]}) float U, V in [0, 1]")
    x0, y0, x1, y1 = (float(v) for v in box)
    _, _, w, h = int_box_xywh(box)
    if x1 > x0 and y1 > y0 and (abs(labels.shape[0] - h) > 1 or abs(labels.shape[1] - w) > 1):
        raise InputError(f"{where}: the chart result is {labels.shape[0]}x{labels.shape[1]} pixels but its box "
                         f"{[x0, y0, x1, y1]} is {h}x{w} (apply_net.py writes results at the box's integer size): "
                         "the results and boxes do not belong together")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= N_LABELS):
        raise InputError(f"{where}: chart labels range over {int(labels.min())}..{int(labels.max())}: expected "
                         f"part indices 0..{N_LABELS - 1} (0: background)")
    if not torch.isfinite(uv).all():
        raise InputError(f"{where}: chart uv holds {int((~torch.isfinite(uv)).sum())} NaN or infinite values: "
                         "the input is corrupt; write it again")
    if uv.numel() and (float(uv.min()) < -UV_TOLERANCE or float(uv.max()) > 1 + UV_TOLERANCE):
        raise InputError(f"{where}: chart uv ranges over {float(uv.min()):.4g}..{float(uv.max()):.4g}: expected U, V "
                         "in [0, 1] (raw model output may overshoot a little); divide by the scale they were "
                         "written in (e.g. 255)")


def check_finite(t: torch.Tensor, what: str, where: str, fix: str, instances: np.ndarray | None = None) -> None:
    """Refuses NaN or infinite values in per-instance arrays.

    Args:
        t: (k, ...) float.  what: the array, for the message ("the model's fine_segm").
        where: file and image.  fix: what to do, for the message.
        instances: (k,) the instances' indices in the input (default 0..k-1), for the message.
    Raises:
        InputError: naming the first instance with such values.
    """
    if len(t) == 0:
        return
    bad = ~torch.isfinite(t.reshape(len(t), -1)).all(dim=1)
    if bool(bad.any()):
        _, inst = first_bad(bad.cpu().numpy(), instances)
        raise InputError(f"{where}, {inst}: {what} holds NaN or infinite values; {fix}")


def check_cse_output(embedding: torch.Tensor, coarse_segm: torch.Tensor, k: int, where: str) -> None:
    """Refuses CSE output (``DensePoseEmbeddingPredictorOutput``) outside its documented form.

    Args:
        embedding: (k, D, h, w) float, finite.  coarse_segm: (k, 2 or more, h, w) float, finite.
        k: the number of boxes.  where: file and image.
    Raises:
        InputError: naming what is wrong (and the first bad instance).
    """
    e, c = embedding, coarse_segm
    if e.dim() != 4 or c.dim() != 4 or len(e) != k or len(c) != k or e.shape[2:] != c.shape[2:] or c.shape[1] < 2 \
            or not (e.dtype.is_floating_point and c.dtype.is_floating_point):
        raise InputError(f"{where}: CSE embedding {tuple(e.shape)} {e.dtype} and coarse_segm {tuple(c.shape)} "
                         f"{c.dtype} for {k} boxes: expected (k, D, h, w) and (k, c, h, w) float with c >= 2")
    if k:  # an image with no detection has (0, D, h, w) output: nothing to check (and reshape(0, -1) refuses)
        check_finite(torch.cat([e.reshape(k, -1).float(), c.reshape(k, -1).float()], dim=1),
                     "the CSE output (embedding or coarse_segm)", where, "the input is corrupt; write it again")


class MissingPath(str):
    """A problem that is a file or folder not found."""


def path_problems(key: str, path: str, kind: str = "file", hint: str = "") -> list[str]:
    """What is wrong with the file or folder that params key ``key`` names: [] when it exists and is
    readable. kind: "file" or "folder"; hint: what to give when empty."""
    if not path:
        return [f"{key} is empty: give {hint or 'a local path'}"]
    p = Path(path)
    if kind == "folder":
        if not p.is_dir():
            return [MissingPath(f"{key}: folder not found: {path}")]
        readable = os.access(p, os.R_OK | os.X_OK)
    else:
        if not p.is_file():
            return [MissingPath(f"{key}: file not found: {path}" + (" (it is a folder)" if p.is_dir() else ""))]
        readable = os.access(p, os.R_OK)
    return [] if readable else [f"{key}: {path} is not readable: make it readable for this user"]


def raise_problems(what: str, problems: list[str], error: type[Exception] = InputError) -> None:
    """Raises ``error`` listing every problem, one a line, when there is any; an :class:`InputError`
    with a file or folder not found among them is a :class:`MissingInputError`."""
    if not problems:
        return
    if error is InputError and any(isinstance(p, MissingPath) for p in problems):
        error = MissingInputError
    raise error(f"{what}: {len(problems)} problem(s) to fix before it can run:\n"
                + "\n".join("  - " + p.replace("\n", "\n    ") for p in problems))
