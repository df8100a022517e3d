"""The ``evaluate`` stage's report folder: grid, segmentation, errors, meshes, UV position maps and the page
``index.html`` (made by :mod:`pipeline.evaluate.page`)."""

from __future__ import annotations

from pathlib import Path
import logging
import numpy as np
import trimesh
import cv2

from pipeline.core.config import EvalParams
from pipeline.core.io import atomic_path, save_figure
from pipeline.evaluate.metrics import AZIMUTH_CENTRES, binned_share
from pipeline.evaluate.results import Kept
from pipeline.evaluate.uvmap import atlas_image, uv_layout, write_uv_maps
from pipeline.geometry.draw import draw_mesh, plt
from pipeline.template.file import Template, part_colours

__all__ = ["CAMERA_UP", "CAMERA_FORWARD", "grid_figure", "segmentation_figure", "errors_figure", "uv_maps_figure", "save_position_png", "segment_colours"]

log = logging.getLogger(__name__)


UV_HALF_RANGE_PX = 4096.0  # image-frame UV maps: +-4096 px around the centroid, 0.125 px a 16-bit step


def write_reports(folder: Path, template: Template, segmentation, segmentation_init, seg_metrics: dict,
                   seg_rows: list[dict], cfg: EvalParams, kept: Kept, errors: dict | None,
                   uv_half_range: float, page: str | None = None) -> None:
    """Writes the report folder atomically (see the module docstring). Without ground truth ``kept.true``
    is empty and ``errors`` None: no truth panels, meshes or maps, and no errors.png.

    Args:
        segmentation, segmentation_init: (N, M) part weights learnt and at initialisation, or None.
        seg_metrics, seg_rows: their metrics and region table (:func:`pipeline.evaluate.segmentation.segmentation_metrics`).
        errors: the :func:`errors_figure` keyword arguments, or None.
        uv_half_range: the UV map PNGs' half range, in the units of ``kept`` (1 m, or UV_HALF_RANGE_PX).
        page: the text of ``index.html`` (:func:`pipeline.evaluate.page.page_html`), or None (not written).
    """

    shapes = {"pred": kept.pred, "true": kept.true} if kept.true else {"pred": kept.pred}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if cfg.grid:
            k = min(cfg.grid, len(kept.rows))
            save_figure(grid_figure(template, kept.xy[:k], kept.visible[:k], kept.pred[:k],
                                               kept.true[:k] or None, kept.rows[:k], kept.error[:k],
                                               pad=0.05 if kept.true else None), tmp / "grid.png")
        if segmentation is not None:
            save_figure(segmentation_figure(template, segmentation, segmentation_init, seg_rows,
                                                       seg_metrics), tmp / "segmentation.png")
        if errors is not None:
            save_figure(errors_figure(template, **errors), tmp / "errors.png")
        if cfg.meshes:
            (tmp / "meshes").mkdir()
            for i in range(min(cfg.meshes, len(kept.rows))):
                for name, vs in shapes.items():
                    mesh = trimesh.Trimesh(np.asarray(vs[i], np.float32), template.faces, process=False)
                    mesh.export(tmp / "meshes" / f"{i:03d}_row{kept.rows[i]}_{name}.ply")
        if cfg.uv_maps:
            k = min(cfg.uv_maps, len(kept.rows))
            layout = uv_layout(template.chart_uv, template.chart_faces, template.chart_part, template.chart_vertex,
                               cfg.uv_resolution, len(template.vertices))
            maps = {name: write_uv_maps(layout, np.stack(vs[:k]) - np.stack(vs[:k]).mean(1, keepdims=True))
                    for name, vs in shapes.items()}
            (tmp / "uv_maps").mkdir()
            for i in range(k):
                for name in maps:
                    save_position_png(atlas_image(maps[name][i]),
                                                 tmp / "uv_maps" / f"{i:03d}_row{kept.rows[i]}_{name}.png",
                                                 uv_half_range)
            save_figure(uv_maps_figure(maps["pred"], maps.get("true"), layout.covered, kept.rows[:k]),
                        tmp / "uv_maps.png")
        if page is not None:
            (tmp / "index.html").write_text(page, encoding="utf-8")
    log.info("wrote reports to %s", folder)


# --- Figures of the ``evaluate`` stage's reports (matplotlib, headless); see :mod:`pipeline.evaluate.loop`. ---
# 
# Shapes are camera-frame metres (x right, y down, z away from the camera), each with mean depth 0;
# without ground truth they are image-frame pixels with the same axes (no truth panels then).

# The camera frame's axes for draw_mesh: image up is -y; "forward" (from the body to the camera) is -z.
CAMERA_UP = np.array([0.0, -1.0, 0.0])
CAMERA_FORWARD = np.array([0.0, 0.0, -1.0])
_SCREEN = {  # view -> (screen x, screen y) axes of draw_mesh with the camera's up/forward
    "front": (np.array([1.0, 0, 0]), CAMERA_UP),
    "side": (np.array([0, 0, -1.0]), CAMERA_UP),
}


def _limits(ax, shapes: list[np.ndarray], view: str, pad: float | None = 0.05) -> None:
    """Same square-ish limits for every shape of a row, so predicted and true bodies compare.

    pad: margin in the shapes' units; None: 5 % of the larger extent (shapes of any scale, e.g. pixels).
    """
    sx, sy = _SCREEN[view]
    pts = np.concatenate([np.asarray(s) for s in shapes])
    x, y = pts @ sx, pts @ sy
    cx, cy = (x.max() + x.min()) / 2, (y.max() + y.min()) / 2
    extent = max(x.max() - x.min(), y.max() - y.min())
    half = extent / 2 + (0.05 * extent if pad is None else pad)
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)


def grid_figure(template, xy, visible, pred, true, rows, notes, pad: float | None = 0.05):
    """Instances as rows: keypoints; prediction from the camera and the side; truth likewise (if given).

    Args:
        xy: list of (N, 2) keypoints (pixels). visible: list of (N,) bool.
        pred, true: lists of (N, 3) depth-centred shapes (camera-frame metres, or image-frame pixels);
            true None: no truth columns. rows: store rows. notes: a line per row (its error).
        pad: margin around the shapes, in their units (None: relative, see :func:`_limits`).
    """
    colours = part_colours()
    face_rgb = colours[template.face_part]
    vert_rgb = colours[template.vertex_part]
    n = len(rows)
    titles = ("input keypoints", "prediction, camera", "prediction, side", "truth, camera", "truth, side")
    titles = titles if true is not None else titles[:3]
    fig, axes = plt.subplots(n, len(titles), figsize=(2.5 * len(titles), 2.9 * n), squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        v = np.asarray(visible[i], bool)
        pts = np.asarray(xy[i])[v]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, c=vert_rgb[v], linewidths=0)
        if len(pts):
            mid = (pts.max(0) + pts.min(0)) / 2
            half = 0.55 * (pts.max(0) - pts.min(0)).max() + 1
            ax.set_xlim(mid[0] - half, mid[0] + half)
            ax.set_ylim(mid[1] + half, mid[1] - half)  # image y points down
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"row {rows[i]}\n{notes[i]}\n{v.sum()} visible", fontsize=8)
        shapes = [pred[i]] if true is None else [pred[i], true[i]]
        for j, (shape, view) in enumerate(((s, view) for s in shapes for view in ("front", "side")), start=1):
            draw_mesh(axes[i, j], np.asarray(shape), template.faces, face_rgb, CAMERA_UP, CAMERA_FORWARD, view)
            _limits(axes[i, j], shapes, view, pad)
        for j in range(len(titles)):
            if i == 0:
                axes[i, j].set_title(titles[j], fontsize=9)
    fig.tight_layout()
    return fig


def segment_colours(m: int) -> np.ndarray:
    """(M, 3) float distinct colours for M learnt parts: tab10 up to 10 parts; up to 24 the 24 part
    colours, the strong half of tab20's pairs first; hsv beyond."""
    if m <= 10:
        return plt.get_cmap("tab10")(np.arange(m))[:, :3]
    if m <= 24:
        return part_colours()[1:][np.r_[0:20:2, 1:20:2, 20:24]][:m]
    return plt.get_cmap("hsv")(np.arange(m) / m)[:, :3]


def _argmax_views(fig, cells, template, face_w: np.ndarray, colours: np.ndarray, what: str) -> None:
    """Front and back views of the template coloured by the arg-max part of (F, M) face weights."""
    rgb = colours[face_w.argmax(axis=1)]
    for cell, view in zip(cells, ("front", "back")):
        ax = fig.add_subplot(cell)
        draw_mesh(ax, template.vertices, template.faces, rgb, template.up, template.forward, view)
        ax.set_title(f"{what}, {view}", fontsize=9)


def segmentation_figure(template, weights: np.ndarray, initial: np.ndarray | None = None,
                        regions: list[dict] | None = None, summary: dict | None = None):
    """The learnt parts on the template: arg-max part at initialisation (if known) and after training
    (front and back, the same colour for a part in both), the largest weight (front), a legend of the part
    colours and, below, the region table (which part holds each coarse DensePose region).

    Args:
        weights: (N, M) float learnt part weights, rows summing to 1. initial: (N, M) float weights at
            initialisation, or None. regions: :func:`pipeline.evaluate.segmentation.region_table` rows, or None.
        summary: the segmentation keys of eval.json (parts_used, ...), or None.
    """
    weights = np.asarray(weights, np.float64)
    m = weights.shape[1]
    colours = segment_colours(m)
    face_w = weights[template.faces].mean(axis=1)  # (F, M)
    panels = 5 if initial is not None else 3
    fig = plt.figure(figsize=(3.3 * panels, 7.2))
    grid = fig.add_gridspec(2, panels, height_ratios=(5.5, 1.2))
    if initial is not None:
        init_w = np.asarray(initial, np.float64)[template.faces].mean(axis=1)
        _argmax_views(fig, (grid[0, 0], grid[0, 1]), template, init_w, colours, "initial parts")
    k = panels - 3
    _argmax_views(fig, (grid[0, k], grid[0, k + 1]), template, face_w, colours, "trained parts")
    conf = face_w.max(axis=1)
    lo = 1.0 / m
    ax = fig.add_subplot(grid[0, k + 2])
    draw_mesh(ax, template.vertices, template.faces,
              plt.get_cmap("viridis")((conf - lo) / max(1 - lo, 1e-9))[:, :3], template.up, template.forward, "front")
    ax.set_title(f"trained, largest weight\n({lo:.2f} .. 1, mean {conf.mean():.2f})", fontsize=9)
    text = fig.add_subplot(grid[1, :])
    text.axis("off")
    if m <= 32:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[j]) for j in range(m)]
        text.legend(handles, [f"part {j}" for j in range(m)], loc="upper center", ncol=min(m, 16), fontsize=8,
                    frameon=False, handlelength=1.2, columnspacing=1.0)
    if regions:
        cells = [f"{r['region']}: part {r['majority_part']} ({100 * r['majority_share']:.0f}%)"
                 if r["majority_part"] is not None else f"{r['region']}: -" for r in regions]
        per_line = 5 if panels == 5 else 4
        lines = ["majority part per region (share of the region's vertices):"]
        lines += ["   ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]
        text.text(0.5, 0.45 if m <= 16 else 0.25, "\n".join(lines), ha="center", va="top", fontsize=8,
                  transform=text.transAxes)
    title = f"learnt parts: {m}"
    if summary and summary.get("parts_used") is not None:
        patch = summary.get("segmentation_min_component_share")
        title = (f"parts used (arg-max of >= 1% of vertices): {summary['parts_used']} of {m}; entropy "
                 f"{summary['segmentation_entropy']:.2f}; smallest largest-patch share "
                 f"{'n/a' if patch is None else f'{patch:.2f}'}")
        if summary.get("segmentation_changed_share") is not None:
            title += f"; changed since init: {100 * summary['segmentation_changed_share']:.0f}% of vertices"
        title += f"\nhead, torso and arms on distinct parts: {'yes' if summary['regions_distinct'] else 'no'}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def errors_figure(template, per: dict, hist: dict, bins: np.ndarray, vertex_mm: np.ndarray,
                  summary: dict | None = None):
    """Error histograms, error against visible share, and the mean vertex error on the template.

    Args:
        per: per-instance arrays (metres): mpjpe, flat, flip, re14, visible_area; with azimuth_bin and
            flip_better also a bar chart of the flip share per view azimuth.
        hist: {"visible", "invisible"}: (len(bins) - 1,) counts of vertex errors (mm) over ``bins``.
        vertex_mm: (N,) mean error of each template vertex (mm). summary: metrics printed as text.
    """
    top = bins[-1]
    fig = plt.figure(figsize=(15, 9))
    grid = fig.add_gridspec(2, 4)
    ax = fig.add_subplot(grid[0, 0])
    edges = np.linspace(0, top, 41)
    for key, label, style in (("mpjpe", "prediction", dict(lw=2.5)), ("flip", "best of depth flip", dict(ls="--")),
                              ("flat", "flat reference", dict(lw=1.5))):
        v = 1000 * per[key]
        ax.hist(np.minimum(v, top), edges, histtype="step", label=f"{label} (mean {v.mean():.0f} mm)", **style)
    ax.set_xlabel("per-instance MPJPE (mm)")
    ax.set_ylabel("instances")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[0, 1])
    centres = (bins[:-1] + bins[1:]) / 2
    for key in ("visible", "invisible"):
        h = hist[key]
        if h.sum():
            ax.step(centres, h / h.sum(), where="mid", label=f"{key} ({int(h.sum())} vertices)")
    ax.set_xlabel(f"vertex error (mm; last bin: >= {top:.0f})")
    ax.set_ylabel("share")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[0, 2])
    v = 1000 * per["re14"]
    ax.hist(np.minimum(v, top), edges, histtype="step", color="C3")
    ax.set_xlabel(f"per-instance RE14 (mm), mean {v.mean():.0f}")
    ax.set_ylabel("instances")
    ax = fig.add_subplot(grid[0, 3])
    ax.scatter(100 * per["visible_area"], 1000 * per["mpjpe"], s=4, label="prediction")
    ax.scatter(100 * per["visible_area"], 1000 * per["flat"], s=4, label="flat reference")
    ax.set_xlabel("visible share of the surface (%)")
    ax.set_ylabel("MPJPE (mm)")
    ax.legend(fontsize=7)
    cmap = plt.get_cmap("viridis")
    hi = max(float(np.percentile(vertex_mm, 99)), 1e-9)
    rgb = cmap(np.clip(vertex_mm[template.faces].mean(axis=1) / hi, 0, 1))[:, :3]
    for j, view in enumerate(("front", "back")):
        ax = fig.add_subplot(grid[1, j])
        draw_mesh(ax, template.vertices, template.faces, rgb, template.up, template.forward, view)
        ax.set_title(f"mean vertex error, {view} (0 .. {hi:.0f} mm)", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, hi))
    fig.colorbar(sm, ax=ax, fraction=0.08, label="mean vertex error (mm)")
    ax = fig.add_subplot(grid[1, 2])
    ax.axis("off")
    if summary:
        lines = [f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in summary.items()
                 if not isinstance(v, dict)]
        ax.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=9, transform=ax.transAxes)
    if "azimuth_bin" in per:
        _flip_by_azimuth(fig.add_subplot(grid[1, 3]), per["azimuth_bin"], per["flip_better"])
    fig.tight_layout()
    return fig


def _flip_by_azimuth(ax, azimuth_bin: np.ndarray, flip_better: np.ndarray) -> None:
    """Bars: share of instances whose depth mirror is closer to the truth, per 45° view-azimuth bin.

    Args:
        azimuth_bin: (n,) int index into :data:`pipeline.evaluate.metrics.AZIMUTH_CENTRES`. flip_better: (n,) bool.
    """
    order = np.argsort(AZIMUTH_CENTRES)  # -135 .. 180, left to right
    share, count = binned_share(flip_better, azimuth_bin, len(AZIMUTH_CENTRES))
    x = np.arange(len(order))
    ax.bar(x, np.nan_to_num(100 * share[order]), color="C1")
    for xi, j in zip(x, order):
        ax.text(xi, 1, str(count[j]), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [f"{AZIMUTH_CENTRES[j]:+d}" for j in order], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title("depth mirror closer to the truth, by view azimuth", fontsize=9)
    ax.set_xlabel("view azimuth (°; 0 faces the camera,\n+90 left side to it, ±180 back to it)", fontsize=8)
    ax.set_ylabel("% of the bin's instances (n on the bars)", fontsize=8)


def _position_rgb(atlas: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((atlas - lo) / np.maximum(hi - lo, 1e-9), 0, 1)


def uv_maps_figure(pred: np.ndarray, true: np.ndarray | None, covered: np.ndarray, rows):
    """Predicted and true UV position maps side by side; x, y, z as red, green, blue (scaled per row);
    inpainted texels (between the triangles) dimmed. Without ``true``, the predicted maps only.

    Args:
        pred, true: (n, 24, R, R, 3) maps (true in metres, or None). covered: (24, R, R) bool. rows: n store rows.
    """
    from pipeline.evaluate.uvmap import atlas_image

    k = len(pred)
    dim = np.where(atlas_image(covered[..., None].astype(np.float32)), 1.0, 0.45)
    cols = 1 if true is None else 3
    fig, axes = plt.subplots(k, cols, figsize=(5 * cols, 3.4 * k), squeeze=False)
    for i in range(k):
        named = (("prediction", pred[i]),) if true is None else (("prediction", pred[i]), ("truth", true[i]))
        both = np.concatenate([m.reshape(-1, 3) for _, m in named])
        lo, hi = both.min(0), both.max(0)
        for j, (name, m) in enumerate(named):
            axes[i, j].imshow(_position_rgb(atlas_image(m), lo, hi) * dim, interpolation="nearest")
            axes[i, j].set_title(f"row {rows[i]}: {name} (x, y, z as RGB; parts 1-6 top row)", fontsize=9)
        if true is not None:
            err = 1000 * np.linalg.norm(atlas_image(pred[i] - true[i]), axis=-1)
            im = axes[i, 2].imshow(err, cmap="viridis", interpolation="nearest")
            fig.colorbar(im, ax=axes[i, 2], fraction=0.03, label="mm")
            axes[i, 2].set_title(f"row {rows[i]}: |prediction - truth| (centroids aligned)", fontsize=9)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def save_position_png(atlas: np.ndarray, path: str | Path, half_range: float = 1.0) -> None:
    """Writes a position map (H, W, 3) as 16-bit RGB: ``value / (2 half_range) + 0.5`` in [0, 1]
    (``half_range`` in the map's units: 1 m, or :data:`pipeline.evaluate.reports.UV_HALF_RANGE_PX` for pixels)."""
    img = np.clip(np.asarray(atlas, np.float64) / (2 * half_range) + 0.5, 0, 1)
    img = np.round(img * 65535).astype(np.uint16)[..., ::-1]  # OpenCV writes BGR
    with atomic_path(path) as tmp:  # tmp keeps the .png name, which tells OpenCV the format
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(img)):
            raise OSError(f"could not write {path}")
