"""The ``template`` stage's figure (matplotlib, headless): the template's parts and its 24 charts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from pipeline.geometry.draw import draw_mesh  # noqa: E402
from pipeline.template.file import N_PARTS, PART_NAMES, part_colours  # noqa: E402

__all__ = ["template_parts_figure"]


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
