"""Drawing meshes (matplotlib, headless): orthographic views with flat shading, and the ``lbo`` stage's
figure of the first eigenfunctions. Colours come from the caller (part colours:
:func:`pipeline.template.file.part_colours`)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from pipeline.geometry.mesh import face_normals  # noqa: E402

__all__ = ["plt", "draw_mesh", "eigenfunctions_figure"]


def draw_mesh(ax, vertices: np.ndarray, faces: np.ndarray, face_rgb: np.ndarray, up: np.ndarray,
              forward: np.ndarray, view: str = "front") -> None:
    """Draws a mesh orthographically with flat shading, farthest faces first.

    Args:
        vertices: (N, 3). faces: (F, 3). face_rgb: (F, 3) colours in [0, 1].
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
