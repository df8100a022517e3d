"""Figures of the template and of anything drawn in its part colours (matplotlib, headless): the part
colours, mesh drawing, part and U/V images, and the figures of the ``template`` and ``lbo`` stages."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from pipeline.geometry.mesh import face_normals  # noqa: E402
from pipeline.template.file import N_PARTS, PART_NAMES  # noqa: E402

__all__ = ["part_colours", "draw_mesh", "template_parts_figure", "eigenfunctions_figure", "part_rgb", "uv_rgb"]


def part_colours() -> np.ndarray:
    """(25, 3) float RGB: grey background (0) and 24 distinct part colours."""
    base = np.concatenate([plt.get_cmap("tab20")(np.arange(20))[:, :3], plt.get_cmap("Set1")(np.arange(4))[:, :3]])
    return np.vstack([[0.6, 0.6, 0.6], base])


def draw_mesh(ax, vertices: np.ndarray, faces: np.ndarray, face_rgb: np.ndarray, up: np.ndarray,
              forward: np.ndarray, view: str = "front") -> None:
    """Draws a mesh orthographically with flat shading, farthest faces first.

    Args:
        vertices: (V, 3). faces: (F, 3). face_rgb: (F, 3) colours in [0, 1].
        up, forward: (3,) the body's axes. view: "front" (camera in front), "back" or "side".
    """
    up = np.asarray(up, float)
    forward = np.asarray(forward, float)
    left = np.cross(up, forward)
    toward = {"front": forward, "back": -forward, "side": -left}[view]  # from body to camera
    right_on_screen = np.cross(up, toward)  # image x axis: the viewer's right
    x, y, depth = vertices @ right_on_screen, vertices @ up, vertices @ toward
    order = np.argsort(depth[faces].mean(axis=1), kind="stable")
    n = face_normals(vertices, faces)
    shade = 0.35 + 0.65 * np.clip(n @ toward, 0, 1)
    visible = (n @ toward) > 0
    order = order[visible[order]]
    polys = np.stack([x[faces[order]], y[faces[order]]], axis=-1)
    rgb = np.clip(face_rgb[order] * shade[order, None], 0, 1)
    ax.add_collection(PolyCollection(polys, facecolors=rgb, edgecolors=rgb, linewidths=0.2))
    ax.set_xlim(x.min() - 0.02, x.max() + 0.02)
    ax.set_ylim(y.min() - 0.02, y.max() + 0.02)
    ax.set_aspect("equal")
    ax.axis("off")


def template_parts_figure(t):
    """Front and back views coloured by part, and the 24 charts with their triangles."""
    colours = part_colours()
    fig = plt.figure(figsize=(18, 9))
    grid = fig.add_gridspec(4, 10)
    for col, view in enumerate(("front", "back")):
        ax = fig.add_subplot(grid[:, 2 * col:2 * col + 2])
        draw_mesh(ax, t.vertices, t.faces, colours[t.face_part], t.up, t.forward, view)
        ax.set_title(f"{view} ({t.source} {t.topology}, {len(t.vertices)} vertices)", fontsize=9)
    for p in range(1, N_PARTS + 1):
        ax = fig.add_subplot(grid[(p - 1) // 6, 4 + (p - 1) % 6])
        sel = t.face_part == p
        tri = t.chart_uv[t.chart_faces[sel]]
        ax.add_collection(PolyCollection(tri, facecolors=colours[p], edgecolors="k", linewidths=0.2))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{p} {PART_NAMES[p - 1]}", fontsize=6)
    fig.tight_layout()
    return fig


def eigenfunctions_figure(vertices: np.ndarray, faces: np.ndarray, evecs: np.ndarray, evals: np.ndarray,
                          up: np.ndarray, forward: np.ndarray, count: int = 10):
    """The first ``count`` eigenfunctions as colours on the front view (diverging map)."""
    cmap = plt.get_cmap("coolwarm")
    cols = 5
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 4 * rows))
    for k, ax in enumerate(np.ravel(axes)):
        if k >= min(count, evecs.shape[1]):
            ax.axis("off")
            continue
        f = evecs[faces, k].mean(axis=1)
        m = max(np.abs(f).max(), 1e-12)
        draw_mesh(ax, vertices, faces, cmap(0.5 + 0.5 * f / m)[:, :3], up, forward, "front")
        ax.set_title(f"φ{k}  λ={evals[k]:.3g}", fontsize=9)
    fig.tight_layout()
    return fig


def part_rgb(labels: np.ndarray) -> np.ndarray:
    """(S, S, 3) float RGB of part labels (S, S): part colours, white background, magenta missing."""
    labels = np.asarray(labels)
    missing = labels > N_PARTS
    rgb = part_colours()[np.where(missing, 0, labels)]
    rgb[labels == 0] = 1.0
    rgb[missing] = (1.0, 0.0, 1.0)
    return rgb


def uv_rgb(labels: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(S, S, 3) float RGB of U (red) and V (green) on a part pixel; white background, magenta where
    the label or U/V is missing. labels: (S, S); uv: (2, S, S)."""
    labels = np.asarray(labels)
    uv = np.asarray(uv, np.float32)
    with np.errstate(invalid="ignore"):
        bad_uv = ~np.all(np.isfinite(uv), axis=0)
    u, v = np.nan_to_num(uv[0]), np.nan_to_num(uv[1])
    rgb = np.stack([u, v, np.full_like(u, 0.4)], axis=-1)
    rgb[labels == 0] = 1.0
    rgb[((labels > 0) & bad_uv) | (labels > N_PARTS)] = (1.0, 0.0, 1.0)
    return np.clip(rgb, 0, 1)
