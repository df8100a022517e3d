"""``reports/index.html``: one self-contained page to look at the first reconstructions, offline.

The page holds everything it shows: its viewer (``viewer.js`` beside this module, a small hand-written WebGL
viewer, inlined), its style, and its data as one JSON object in a ``<script type="application/json">`` element.
Arrays are packed as :func:`pack` writes them (little-endian bytes, base64), crops as PNG ``data:`` URIs. Per
instance (the first :data:`PAGE_INSTANCES` evaluated):

- the input: the repaired IUV crop (part colours) with the visible keypoints over it, and the RGB crop when
  the densepose store has one;
- the reconstruction over the crop: the predicted mesh's wireframe where the model puts it in the image (its own
  image-frame x, y, which with ground truth is the orthographic or weak-perspective projection of the predicted
  metres by ``gt/camera``), and with ground truth the true vertices' projection (``gt/pixels``);
- a 3D view (drag to rotate) of the prediction and, with ground truth, the truth beside it, coloured by the
  per-vertex error (mm, both shapes depth-centred as in the metrics) or by the learnt part (arg-max);

and once the template, coloured by its learnt parts; beside the headline metrics, where it fails: the MPJPE
against the flat reference's per pose mode and per visible share (eval.json's ``by_pose_mode`` and
``by_visible_share``, when it has them). Without ground truth (real images) the prediction alone, in image-frame
pixels.

Data keys (``N`` template vertices, ``F`` faces, ``M`` learnt parts, ``P`` visible keypoints of an instance):

================  ===============================================================================
key               value
================  ===============================================================================
title, notes      the page's title; lines saying what is missing
summary           [label, value] pairs of eval.json's headline metrics
breakdown         per table of eval.json's breakdowns it has: {"title", "columns": 5 headers, "rows": per
                  group 5 strings: the group, instances, MPJPE, the flat reference's, their ratio ("–"
                  for an empty group)}
ground_truth      whether the truth and the per-vertex errors are there
units             "mm" (shapes in metres) or "px" (image-frame pixels, no ground truth)
error_max_mm      top of the error colour scale: the 90th percentile of the shown vertex errors
crop              S, the side of the crops
faces             (F, 3) uint32
parts             null, or {"vertex": (N,) uint8 arg-max part, "colours": M "#rrggbb"}
frame             {"up", "forward"}: the shapes' up and towards-the-viewer axes (camera frame)
template          {"vertices": (N, 3) float32 rest pose, metres, "up", "forward"}
instances         per instance {"row", "note", "box": [x0, y0, x1, y1] image px or null (the crop's
                  aspect), "pred": (N, 3) float32, "true": (N, 3) float32 or null,
                  "keypoints": (P, 2) float32 crop px, "overlay", "true_overlay": (N, 2) float32 crop
                  px or null, "iuv", "rgb": PNG data URI or null}
================  ===============================================================================
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.errors import InputError
from pipeline.evaluate.inputs import Inputs, to_crop
from pipeline.evaluate.metrics import VISIBLE_SHARE_EDGES, VISIBLE_SHARE_KEYS
from pipeline.evaluate.reports import segment_colours
from pipeline.evaluate.results import Kept
from pipeline.template.file import Template

__all__ = ["PAGE_INSTANCES", "CAMERA_FRAME", "pack", "unpack", "png_data_uri", "error_scale_mm", "page_data",
           "page_html", "read_page_data"]

PAGE_INSTANCES = 8  # instances shown on the page
CAMERA_FRAME = {"up": [0.0, -1.0, 0.0], "forward": [0.0, 0.0, -1.0]}  # x right, y down, z away from the camera
_DTYPES = ("float32", "uint32", "uint8")
_VIEWER = Path(__file__).with_name("viewer.js")
_SUMMARY = (("test_instances", "instances", "{}"), ("instances", "instances", "{}"), ("split", "split", "{}"),
            ("mpjpe_mm", "MPJPE", "{:.1f} mm"), ("mpjpe_visible_mm", "MPJPE, visible", "{:.1f} mm"),
            ("mpjpe_invisible_mm", "MPJPE, invisible", "{:.1f} mm"), ("re14_mm", "RE14", "{:.1f} mm"),
            ("flat_mpjpe_mm", "flat reference", "{:.1f} mm"), ("s2s_mm", "S2S", "{:.1f} mm"),
            ("reproj2d_mean_px", "2D re-projection, mean", "{:.2f} px"),
            ("reproj2d_median_px", "2D re-projection, median", "{:.2f} px"), ("parts_used", "parts used", "{}"))


def pack(array: np.ndarray, dtype: str) -> dict:
    """An array as the page holds it: {"dtype", "shape", "data": base64 of its little-endian bytes}.

    Args:
        array: any shape, values that fit ``dtype`` (one of float32, uint32, uint8; cast).
    """
    if dtype not in _DTYPES:
        raise InputError(f"dtype {dtype!r}: allowed {', '.join(_DTYPES)}")
    a = np.ascontiguousarray(np.asarray(array).astype(np.dtype(dtype).newbyteorder("<")))
    return {"dtype": dtype, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack(packed: dict) -> np.ndarray:
    """The array :func:`pack` packed (native byte order)."""
    raw = base64.b64decode(packed["data"])
    return np.frombuffer(raw, np.dtype(packed["dtype"]).newbyteorder("<")).reshape(packed["shape"]).astype(
        packed["dtype"])


def png_data_uri(image: np.ndarray | None) -> str | None:
    """A ``data:image/png;base64,...`` URI of an (S, S, 3) uint8 RGB image (None for None)."""
    if image is None:
        return None
    ok, png = cv2.imencode(".png", np.ascontiguousarray(np.asarray(image, np.uint8)[..., ::-1]))  # OpenCV: BGR
    if not ok:
        raise InputError("could not encode a crop as PNG")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")


def error_scale_mm(pred: list, true: list) -> float:
    """Top of the error colour scale: the 90th percentile of the vertex errors (mm) of the (N, 3) metre shapes
    ``pred`` and ``true``, rounded up to 10 mm (at least 10)."""
    if not true:
        return 10.0
    err = 1000 * np.linalg.norm(np.stack(pred) - np.stack(true), axis=-1)
    return float(max(10.0, 10.0 * np.ceil(np.percentile(err, 90) / 10.0)))


def _hex(rgb: np.ndarray) -> str:
    r, g, b = np.clip(np.round(255 * np.asarray(rgb, np.float64)), 0, 255).astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


def _summary(metrics: dict) -> list[list[str]]:
    return [[label, fmt.format(metrics[key])] for key, label, fmt in _SUMMARY if metrics.get(key) is not None]


# eval.json's breakdowns: key, table title, what groups the instances, the label of each group's key
_BREAKDOWNS = (("by_pose_mode", "MPJPE by pose mode", "pose mode", {}),
               ("by_visible_share", "MPJPE by the share of the template the keypoints show", "visible share",
                {k: f"{100 * a:.0f}–{100 * b:.0f} %" for k, a, b in
                 zip(VISIBLE_SHARE_KEYS, VISIBLE_SHARE_EDGES[:-1], VISIBLE_SHARE_EDGES[1:])}))


def _cell(value: float | None, form: str) -> str:
    return "–" if value is None else form.format(value)


def _breakdowns(metrics: dict) -> list[dict]:
    """The page's ``breakdown`` tables (module docstring) of the breakdowns ``metrics`` holds."""
    out = []
    for key, title, what, labels in _BREAKDOWNS:
        if not metrics.get(key):
            continue
        rows = [[labels.get(group, group), str(r["instances"]), _cell(r["mpjpe_mm"], "{:.1f} mm"),
                 _cell(r["flat_mpjpe_mm"], "{:.1f} mm"), _cell(r["ratio"], "{:.2f}")]
                for group, r in metrics[key].items()]
        out.append({"title": title, "columns": [what, "instances", "MPJPE", "flat reference",
                                                             "MPJPE / flat"], "rows": rows})
    return out


def page_data(template: Template, segmentation: np.ndarray | None, kept: Kept, inputs: Inputs,
              metrics: dict | None = None, count: int = PAGE_INSTANCES) -> dict:
    """The page's data (module docstring) of the first ``count`` kept instances.

    Args:
        segmentation: (N, M) float learnt part weights, or None (no part colouring).
        kept: the kept instances (ground truth when ``kept.true`` is not empty); ``kept.pixels`` is needed.
        inputs: their :class:`pipeline.evaluate.inputs.Inputs` (at least ``count`` of them, in the same order).
        metrics: eval.json's values, for the summary (None: none).
    """
    k = min(count, len(kept.rows))
    truth = bool(kept.true)
    notes = list(inputs.notes)
    overlay = true_overlay = [None] * k
    if inputs.box is not None and k:
        box = inputs.box[:k]
        overlay = list(to_crop(np.stack(kept.pixels[:k]), box, inputs.crop))
        if inputs.true_pixels is not None:
            true_overlay = list(to_crop(inputs.true_pixels[:k], box, inputs.crop))
    if not truth:
        notes.append("no ground truth (real images): the prediction alone, in image-frame pixels")
    parts = None
    if segmentation is not None:
        seg = np.asarray(segmentation)
        parts = {"vertex": pack(seg.argmax(axis=1), "uint8" if seg.shape[1] <= 256 else "uint32"),
                 "colours": [_hex(c) for c in segment_colours(seg.shape[1])]}
    instances = []
    for i in range(k):
        keypoints = None
        if inputs.box is not None:
            visible = np.asarray(kept.xy[i])[np.asarray(kept.visible[i], bool)]  # (P, 2) image px
            keypoints = pack(to_crop(visible[None], inputs.box[i:i + 1], inputs.crop)[0], "float32")
        instances.append({
            "row": int(kept.rows[i]), "note": str(kept.error[i]),
            "box": None if inputs.box is None else [float(x) for x in inputs.box[i]],
            "pred": pack(kept.pred[i], "float32"), "true": pack(kept.true[i], "float32") if truth else None,
            "keypoints": keypoints,
            "overlay": None if overlay[i] is None else pack(overlay[i], "float32"),
            "true_overlay": None if true_overlay[i] is None else pack(true_overlay[i], "float32"),
            "iuv": png_data_uri(inputs.iuv[i]), "rgb": png_data_uri(inputs.rgb[i]),
        })
    return {
        "title": "densepose3d: the first reconstructions of the evaluate stage",
        "notes": notes, "summary": _summary(metrics or {}), "breakdown": _breakdowns(metrics or {}),
        "ground_truth": truth, "units": "mm" if truth else "px",
        "error_max_mm": error_scale_mm(kept.pred[:k], kept.true[:k]), "crop": int(inputs.crop),
        "faces": pack(template.faces, "uint32"), "parts": parts, "frame": CAMERA_FRAME,
        "template": {"vertices": pack(template.vertices, "float32"),
                     "up": [float(x) for x in template.up], "forward": [float(x) for x in template.forward]},
        "instances": instances,
    }


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; background: #fff; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.05em; margin: 0.2em 0; }}
.bar {{ display: flex; flex-wrap: wrap; gap: 1.5em; align-items: center; margin: 0.6em 0; }}
.summary td {{ padding: 0 0.8em 0 0; }} .notes {{ color: #a40; }}
.breakdown {{ border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }}
.breakdown caption {{ text-align: left; font-weight: 600; }}
.breakdown th, .breakdown td {{ padding: 0 0.8em 0 0; text-align: right; }}
.breakdown th:first-child, .breakdown td:first-child {{ text-align: left; }}
.top {{ display: flex; gap: 2em; align-items: flex-start; }} .head {{ flex: 1; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 0.6em; margin: 0.8em 0; }}
.panels {{ display: flex; flex-wrap: wrap; gap: 0.8em; align-items: flex-start; }}
.panel {{ display: flex; flex-direction: column; align-items: center; min-width: 240px; font-size: 12px; color: #555; }}
canvas {{ border: 1px solid #ccc; }} canvas.gl {{ cursor: grab; touch-action: none; }}
.legend {{ display: flex; align-items: center; gap: 0.5em; font-size: 12px; }}
.ramp {{ width: 200px; height: 12px; border: 1px solid #999; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin: 0 2px 0 8px; vertical-align: middle; }}
</style>
</head>
<body>
<h1>{title}</h1>
<div id="report"></div>
<noscript>This page draws with JavaScript and WebGL.</noscript>
<script type="application/json" id="report-data">{data}</script>
<script>
{viewer}
</script>
</body>
</html>
"""


def page_html(data: dict) -> str:
    """The page: :data:`_PAGE` with the data (JSON, ``</`` escaped) and the viewer inlined."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True).replace("</", "<\\/")
    return _PAGE.format(title=html.escape(data["title"]), data=text, viewer=_VIEWER.read_text().strip())


def read_page_data(page: str) -> dict:
    """The data object of a page :func:`page_html` wrote (for tests and scripts)."""
    start = page.index('<script type="application/json" id="report-data">')
    start = page.index(">", start) + 1
    return json.loads(page[start:page.index("</script>", start)])
