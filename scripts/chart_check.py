"""Checks the template's charts on DensePose output with no 3D truth: real DensePose-RCNN output, human-annotated
points and, for comparison, the synthetic source's exact rendering (measures: :mod:`pipeline.evaluate.chart_check`)::

    python scripts/chart_check.py --template data/template.npz                 # the shared demo files
    python scripts/chart_check.py --template data/template.npz --synthetic 36 --json /tmp/chart_check.json
    python scripts/chart_check.py --iuv out_IUV.png --inds out_INDS.png --annotated points.npz

Inputs (defaults: the files in ``../shared/densepose-reference/`` next to the repository, when it is there):

- ``--iuv``: DensePose-RCNN's IUV image as OpenCV writes it (read as ``cv2.imread`` reads it: channel 0 the part I 0..24,
  channel 1 U x 255, channel 2 V x 255); ``--inds`` its instance map (0 background, any ids per person).
- ``--annotated``: an ``.npz`` of points annotated by people (DensePose-COCO): ``x``, ``y`` pixels, ``I`` part
  1..24, ``U``, ``V`` in [0, 1], one entry per point.
- ``--synthetic N``: N synthetic bodies (one view each) rendered exactly (no corruption, no neighbours) by the
  synthetic source's renderer with the template (an Anny template); :func:`synthetic_crops`.

Prints a table (seam distances inside a part and across a part seam: median and 90th percentile in mm; the share
of right-sign height correlations on upright people and the parts of the wrong sign; the Spearman rho of the
annotated points) and writes everything, per instance and part, to ``--json``.

:func:`synthetic_crops` lives here, not in :mod:`pipeline.evaluate.chart_check`: the evaluate package may read the
densepose stage only through its store (tests/test_layout.py), and rendering needs the synthetic source itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/chart_check.py` from anywhere
    sys.path.insert(0, str(ROOT))

from pipeline.core.errors import InputError, UserError  # noqa: E402
from pipeline.core.io import load_npz, save_json  # noqa: E402
from pipeline.evaluate.chart_check import (EDGE_BAND, annotated_rank_correlation, chart_centres, crop_checks,  # noqa: E402
                                           exact_seam_floor, expand_uv, image_checks, touching_parts)
from pipeline.geometry.charts import ChartLocator, refined_atlas  # noqa: E402
from pipeline.template.densepose_layout import ALONG_AXIS, OUTLINE  # noqa: E402
from pipeline.template.file import N_PARTS, Template, decode_iuv, load_template  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "densepose-reference"  # real DensePose data (its README: licence, layout)
DEMO_IUV, DEMO_INDS = REFERENCE / "demo_im_IUV.png", REFERENCE / "demo_im_INDS.png"
ANNOTATED = REFERENCE / "coco_annotated_person.npz"
ANNOTATED_KEYS = ("x", "y", "I", "U", "V")


def _read_png(path: str | Path, what: str) -> np.ndarray:
    """The image at ``path`` as stored (the project's one reader of data images: no EXIF turn, a pixel cap);
    InputError naming the file when missing or unreadable."""
    from pipeline.core.image_files import read_data_image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    return read_data_image(path)


def read_iuv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A DensePose-RCNN IUV PNG (OpenCV channel order I, U x 255, V x 255) as labels (H, W) int64 0..24 and
    uv (2, H, W) float32 (bin centres, :func:`pipeline.template.file.decode_iuv`)."""
    iuv = _read_png(path, "IUV image")
    if iuv.ndim != 3 or iuv.shape[2] != 3 or iuv.dtype != np.uint8:
        raise InputError(f"{path}: an IUV image is (H, W, 3) uint8, got {iuv.shape} {iuv.dtype}")
    if iuv[..., 0].max() > N_PARTS:
        raise InputError(f"{path}: channel 0 (part I) must lie in 0..{N_PARTS}, found {int(iuv[..., 0].max())} "
                         f"(an RGB reader's image? OpenCV's channel order is I, U, V)")
    return decode_iuv(iuv)


def read_instances(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """An instance map PNG (0 background, one value per person) as (H, W) int64; must have ``shape``."""
    inds = _read_png(path, "instance map")
    if inds.ndim == 3 and (inds == inds[..., :1]).all():  # a grey map saved with 3 equal channels
        inds = inds[..., 0]
    if inds.shape != tuple(shape):
        raise InputError(f"{path}: the instance map must be {tuple(shape)} like the IUV image, got {inds.shape}")
    return inds.astype(np.int64)


def read_annotated(path: str | Path) -> dict[str, np.ndarray]:
    """The annotated points: ``xy`` (P, 2) float64, ``parts`` (P,) int64 1..24, ``uv`` (P, 2) float64."""
    try:
        d = load_npz(path, required=ANNOTATED_KEYS)
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such annotated-points file") from e
    sizes = {k: d[k].shape for k in ANNOTATED_KEYS}
    if any(len(s) != 1 or s != sizes["x"] for s in sizes.values()):
        raise InputError(f"{path}: x, y, I, U, V must be 1-D arrays of one length, got {sizes}")
    parts = d["I"].astype(np.int64)
    uv = np.stack([d["U"], d["V"]], axis=1).astype(np.float64)
    if len(parts) and (parts.min() < 1 or parts.max() > N_PARTS):
        raise InputError(f"{path}: I must lie in 1..{N_PARTS}, got {parts.min()}..{parts.max()}")
    if not np.isfinite(uv).all() or uv.min() < 0 or uv.max() > 1:
        raise InputError(f"{path}: U and V must be finite and lie in [0, 1]")
    xy = np.stack([d["x"], d["y"]], axis=1).astype(np.float64)
    if not np.isfinite(xy).all():
        raise InputError(f"{path}: x and y must be finite")
    return {"xy": xy, "parts": parts, "uv": uv}


def synthetic_crops(template: Template, bodies: int, seed: int = 0, crop: int = 112,
                    device: str = "cpu") -> dict[str, np.ndarray]:
    """Exact IUV crops of ``bodies`` synthetic bodies, one random view each: the synthetic source's rendering
    (:func:`pipeline.render.bodies.render_bodies`, default ``synthetic`` params) with every
    corruption off, no neighbour and no images, so that labels and U, V are the template's own charts.

    Returns:
        ``labels`` (n, S, S) uint8 part 0..24; ``uv`` (n, 2, S, S) float32 (the store's float16 values);
        ``pixel_size`` (n, 2) float64 each crop pixel's (height, width) in virtual-image pixels; ``body`` (n,)
        int32 body ids (n = ``bodies``, S = ``crop``). Seconds on a CPU for a few dozen bodies.
    """
    from pipeline.core.config import CorruptionParams, SyntheticParams
    from pipeline.render.bodies import body_model, make_bodies, render_bodies

    off = CorruptionParams(**{f.name: type(f.default)(0) for f in dataclasses.fields(CorruptionParams)})
    p = dataclasses.replace(SyntheticParams(), views=1, corruption=off, crowd_prob=0.0, images=False, cse=False)
    model = body_model(template)
    rows = render_bodies(make_bodies(model, np.arange(bodies), p, seed), template, p, crop, seed, device)
    box = rows["box"].astype(np.float64)  # (n, 4) x0, y0, x1, y1
    size = np.stack([box[:, 3] - box[:, 1], box[:, 2] - box[:, 0]], axis=1) / crop
    return {"labels": rows["labels"], "uv": rows["uv"].astype(np.float32), "pixel_size": size,
            "body": rows["gt/body"]}


def _default(path: Path) -> str | None:
    return str(path) if path.is_file() else None


def _finite(x):
    """NaN and infinities as None (strict JSON), recursively."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _mm(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.0f}"


def _wrong(heights: dict) -> str:
    parts = heights["wrong_parts"]
    return ", ".join(f"{p}" if c == 1 else f"{p}x{c}" for p, c in parts.items()) or "none"


def table(results: dict) -> str:
    """The printed table: one row per source of measures 1 and 2, then measure 3."""
    head = (f"{'source':<22}{'inside n':>9}{'med':>6}{'p90':>6}{'across n':>10}{'med':>6}{'p90':>6}"
            f"{'on body':>9}{'med':>6}{'p90':>6}{'upright':>9}{'entries':>9}{'right':>7}  wrong parts (x count)")
    refine = results["template"].get("refine", 1)
    lines = [f"template {results['template']['path']} (hash {results['template']['hash']}"
             + (f", read to an edge / {refine}" if refine > 1 else "") + "); seam distances in mm",
             "across: every 4-neighbour pixel pair of two parts; on body: those whose parts meet on the template "
             "(the rest are occlusion contours, which no chart can join); height signs: parts whose segment runs up "
             "the image (|r| of image height and DensePose's along-segment U or V >= 0.5)", head, "-" * len(head)]
    for name, label in (("demo", "real demo"), ("synthetic", "synthetic exact")):
        if name not in results:
            continue
        r = results[name]
        s, h = r["seams"], r["heights"]
        upright = sum(u["upright"] for u in r["upright"].values())
        share = "-" if not math.isfinite(h["right_share"]) else f"{h['right_share']:.2f}"
        if name == "synthetic":
            label = f"{label} ({r['crops']})"
        lines.append(f"{label:<22}{s['inside']['count']:>9}{_mm(s['inside']['median_mm']):>6}"
                     f"{_mm(s['inside']['p90_mm']):>6}{s['across']['count']:>10}{_mm(s['across']['median_mm']):>6}"
                     f"{_mm(s['across']['p90_mm']):>6}{s['on_body']['count']:>9}{_mm(s['on_body']['median_mm']):>6}"
                     f"{_mm(s['on_body']['p90_mm']):>6}{upright:>9}{h['entries']:>9}{share:>7}  {_wrong(h)}")
    demo = results.get("demo", {}).get("seams", {})
    if "seam_pairs" in demo:
        pairs, outline, contact = demo["seam_pairs"], demo["seam_pairs_on_outline"], demo["contact"]
        lines.append(f"real demo, on body: {pairs['count']} seam pairs (both pixels within {EDGE_BAND} of their "
                     f"chart outlines by DensePose's own U, V) med {_mm(pairs['median_mm'])} / p90 "
                     f"{_mm(pairs['p90_mm'])}, moved onto the outlines med {_mm(outline['median_mm'])} / p90 "
                     f"{_mm(outline['p90_mm'])}; {contact['count']} contacts (a pixel deeper inside its part) med "
                     f"{_mm(contact['median_mm'])}")
    if "floor" in results:
        f = results["floor"]
        lines.append(f"real demo with exact seams (each of its {f['seam_pairs']} seam pairs as a random exact "
                     f"synthetic seam pair of the same seam; contacts and occlusions its own): across parts med "
                     f"{f['median_mm']:.1f} ± {f['std_mm']:.1f} over {f['draws']} draws")
    if "annotated" in results:
        a = results["annotated"]
        rho = "-" if not math.isfinite(a["rho"]) else f"{a['rho']:.3f}"
        lines.append(f"annotated points: Spearman rho {rho} (image px vs template mm) over {a['pairs']} "
                     f"neighbouring-region pairs of {a['points']} points")
    return "\n".join(lines)


def run(template_path: str, iuv: str | None, inds: str | None, annotated: str | None, synthetic: int,
        seed: int = 0, crop: int = 112, expand: float = 1.0, refine: int = 1) -> dict:
    """Every requested check; the JSON's content (NaN kept as float NaN). ``expand``: the IUV image's U, V
    stretched about each chart's centre by this factor first (:func:`expand_uv`; 1: as predicted). ``refine``: read
    each pixel as the surface point its chart names, to within an edge / ``refine``, instead of the nearest vertex
    (:func:`pipeline.geometry.charts.refined_atlas`; 1: the vertex, as the keypoints stage reads it)."""
    t = load_template(template_path)
    part, uv_points, point, vertices = refined_atlas(t.chart_part, t.chart_uv, t.chart_vertex, t.chart_faces,
                                                     t.vertices, refine)
    locator = ChartLocator(part, uv_points, point)
    touching = touching_parts(part, point)
    results: dict = {"template": {"path": str(template_path), "hash": t.hash, "source": t.source, "refine": refine}}
    if iuv is not None:
        if inds is None:
            raise InputError(f"{iuv}: an IUV image needs its instance map (--inds)")
        labels, uv = read_iuv(iuv)
        instance = read_instances(inds, labels.shape)
        if expand != 1.0:
            uv = expand_uv(labels, uv, chart_centres(t.chart_part, t.chart_uv), expand)
        results["demo"] = {"iuv": str(iuv), "inds": str(inds), "expand": expand,
                           **image_checks(labels, uv, instance, locator, vertices, t.up, touching, OUTLINE, ALONG_AXIS)}
    if annotated is not None:
        pts = read_annotated(annotated)
        results["annotated"] = {"file": str(annotated),
                                **annotated_rank_correlation(pts["xy"], pts["parts"], pts["uv"], locator,
                                                             vertices)}
    if synthetic > 0:  # rendered in the template's charts: along axes are DensePose's only in its convention
        along = ALONG_AXIS if t.charts == "densepose" else None
        crops = synthetic_crops(t, synthetic, seed=seed, crop=crop)
        results["synthetic"] = {"crops": int(len(crops["labels"])), "seed": seed, "crop": crop,
                                **crop_checks(crops["labels"], crops["uv"], crops["pixel_size"], locator,
                                              vertices, t.up, touching, along, OUTLINE)}
        if "demo" in results and t.charts == "densepose":  # seam pairs comparable only in one convention
            results["floor"] = exact_seam_floor(results["demo"]["pairs"], results["synthetic"]["pairs"], seed=seed)
    for name in ("demo", "synthetic"):  # the pair arrays stay out of the JSON
        results.get(name, {}).pop("pairs", None)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", default=str(ROOT / "data" / "template.npz"), help="template.npz")
    ap.add_argument("--iuv", default=_default(DEMO_IUV), help="DensePose-RCNN IUV PNG (default: the shared demo)")
    ap.add_argument("--inds", default=_default(DEMO_INDS), help="its instance map PNG (default: the shared demo)")
    ap.add_argument("--annotated", default=_default(ANNOTATED),
                    help="annotated points .npz: x, y, I, U, V (default: the shared DensePose-COCO person)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N", help="also N exact synthetic bodies (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic bodies")
    ap.add_argument("--crop", type=int, default=112, help="crop side S of the synthetic bodies")
    ap.add_argument("--expand", type=float, default=1.0, metavar="F",
                    help="stretch the IUV image's U, V about each chart's centre by F first (DensePose-RCNN's "
                         "predictions span about 0.85 of its charts: 1.18 undoes that; 1: as predicted)")
    ap.add_argument("--refine", type=int, default=1, metavar="L",
                    help="read each pixel as the surface point its chart names (to an edge / L) instead of the "
                         "nearest vertex: the charts apart from the template's resolution (1: the vertex)")
    ap.add_argument("--json", default=None, metavar="OUT", help="write every figure to this JSON file")
    a = ap.parse_args(argv)
    if a.synthetic < 0 or a.crop < 8 or a.refine < 1:
        ap.error("--synthetic must be >= 0, --crop >= 8 and --refine >= 1")
    try:
        results = run(a.template, a.iuv, a.inds, a.annotated, a.synthetic, a.seed, a.crop, a.expand, a.refine)
    except (UserError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table(results))
    if a.json:
        save_json(a.json, _finite(results))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
