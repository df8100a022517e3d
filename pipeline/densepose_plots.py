"""Figures of a ``densepose.zarr`` store for a person to look at."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.plots import part_rgb, uv_rgb  # noqa: E402

__all__ = ["contact_sheet_figure"]


def contact_sheet_figure(root, count: int = 16, cols: int = 4):
    """The first ``count`` instances: exact parts with the visible ground-truth vertices (when the
    store has ``gt/``), DensePose parts (missing magenta) and its U, V (U red, V green).

    Args:
        root: an open ``densepose.zarr`` group.
    """
    n = min(count, root["labels"].shape[0])
    labels = root["labels"][:n]
    uv = root["uv"][:n]
    boxes = root["box"][:n]
    has_gt = "gt" in root and "iuv" in root["gt"]
    panels = 3 if has_gt else 2
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols * panels, figsize=(cols * panels * 1.3, rows * 2.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    s = labels.shape[-1]
    if has_gt:
        gt_iuv = root["gt/iuv"][:n]
        verts, visible, occluded = root["gt/vertices"][:n], root["gt/visible"][:n], root["gt/occluded"][:n]
        cam = root["gt/camera"][:n]
        perspective = root.attrs.get("projection") == "perspective"
    for i in range(n):
        # show each crop at its box's aspect ratio (the S x S grid stretches the box)
        x0, y0, x1, y1 = boxes[i]
        ext = dict(extent=(-0.5, s - 0.5, s - 0.5, -0.5), aspect=(y1 - y0) / max(x1 - x0, 1e-9),
                   interpolation="nearest")
        r, c0 = divmod(i, cols)
        c0 *= panels
        k = 0
        if has_gt:
            ax = axes[r, c0]
            ax.imshow(part_rgb(gt_iuv[i, ..., 0]), **ext)
            xy = verts[i, :, :2] / (verts[i, :, 2:3] if perspective else 1.0) * cam[i, 0] + cam[i, 1:]
            px = (xy[:, 0] - x0) / (x1 - x0) * s - 0.5
            py = (xy[:, 1] - y0) / (y1 - y0) * s - 0.5
            vis = visible[i] & ~occluded[i]
            ax.scatter(px[vis], py[vis], s=0.3, c="k", linewidths=0)
            ax.scatter(px[occluded[i]], py[occluded[i]], s=3, c="r", linewidths=0)
            ax.set_title(f"#{i} exact + visible", fontsize=6)
            k = 1
        axes[r, c0 + k].imshow(part_rgb(labels[i]), **ext)
        axes[r, c0 + k].set_title("DensePose I", fontsize=6)
        axes[r, c0 + k + 1].imshow(uv_rgb(labels[i], uv[i]), **ext)
        axes[r, c0 + k + 1].set_title("U (red), V (green)", fontsize=6)
    fig.suptitle(f"first {n} instances ({root.attrs.get('source')}); black dots: visible GT vertices, "
                 "red: hidden by an occluder", fontsize=8)
    fig.tight_layout()
    return fig
