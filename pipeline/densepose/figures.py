"""Figures of a ``densepose.zarr`` store for a person to look at."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.template.file import part_rgb, uv_rgb  # noqa: E402

__all__ = ["contact_sheet_figure", "embedding_rgb"]


def contact_sheet_figure(root, count: int = 16, cols: int = 4):
    """The first ``count`` instances: the RGB image (synthetic ``rgb``), exact parts with the visible ground-truth vertices (when the
    store has ``gt/``), then DensePose parts (missing magenta) and its U, V (U red, V green) for a
    chart store, or the mask and the embedding's first three principal components for a CSE store.

    Args:
        root: an open ``densepose.zarr`` group.
    """
    chart = "labels" in root
    n = min(count, root["box"].shape[0])
    if chart:
        labels, uv = root["labels"][:n], root["uv"][:n]
    else:
        mask, emb_rgb = root["mask"][:n], embedding_rgb(root["embedding"][:n].astype(np.float32), root["mask"][:n])
    boxes = root["box"][:n]
    has_gt = "gt" in root and "iuv" in root["gt"]
    has_rgb = "rgb" in root  # synthetic images or a real source's photo: the image first, beside its IUV
    panels = 2 + has_gt + has_rgb
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols * panels, figsize=(cols * panels * 1.3, rows * 2.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    s = (labels if chart else mask).shape[-1]
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
        if has_rgb:
            axes[r, c0].imshow(root["rgb"][i], **ext)
            axes[r, c0].set_title(f"#{i} image", fontsize=6)
            k = 1
            other = root["gt/crowd_box"][i] if "gt" in root and "crowd_box" in root["gt"] else np.full(4, np.nan)
            if np.isfinite(other).all():  # the neighbour's box, in crop pixels
                (a, b), (c, d) = ((other[[0, 2]] - x0) / (x1 - x0) * s - 0.5, (other[[1, 3]] - y0) / (y1 - y0) * s - 0.5)
                axes[r, c0].add_patch(plt.Rectangle((a, c), b - a, d - c, fill=False, ec="w", lw=0.6, ls="--"))
                axes[r, c0].set_xlim(-0.5, s - 0.5)
                axes[r, c0].set_ylim(s - 0.5, -0.5)
        if has_gt:
            ax = axes[r, c0 + k]
            ax.imshow(part_rgb(gt_iuv[i, ..., 0]), **ext)
            xy = verts[i, :, :2] / (verts[i, :, 2:3] if perspective else 1.0) * cam[i, 0] + cam[i, 1:]
            px = (xy[:, 0] - x0) / (x1 - x0) * s - 0.5
            py = (xy[:, 1] - y0) / (y1 - y0) * s - 0.5
            vis = visible[i] & ~occluded[i]
            ax.scatter(px[vis], py[vis], s=0.3, c="k", linewidths=0)
            ax.scatter(px[occluded[i]], py[occluded[i]], s=3, c="r", linewidths=0)
            ax.set_title(f"#{i} exact + visible", fontsize=6)
            k += 1
        if chart:
            axes[r, c0 + k].imshow(part_rgb(labels[i]), **ext)
            axes[r, c0 + k].set_title("DensePose I", fontsize=6)
            axes[r, c0 + k + 1].imshow(uv_rgb(labels[i], uv[i]), **ext)
            axes[r, c0 + k + 1].set_title("U (red), V (green)", fontsize=6)
        else:
            axes[r, c0 + k].imshow(mask[i], cmap="gray_r", vmin=0, vmax=1, **ext)
            axes[r, c0 + k].set_title(f"#{i} CSE mask", fontsize=6)
            axes[r, c0 + k + 1].imshow(emb_rgb[i], **ext)
            axes[r, c0 + k + 1].set_title("embedding (3 PCs)", fontsize=6)
    legend = "; black dots: visible GT vertices, red: hidden by an occluder or a neighbour" if has_gt else ""
    if has_rgb:
        legend += "; dashed: a neighbour's box"
    fig.suptitle(f"first {n} instances ({root.attrs.get('source')}){legend}", fontsize=8)
    fig.tight_layout()
    return fig


def embedding_rgb(embedding: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, S, S, 3) float in [0, 1]: the first three principal components of the foreground pixel
    embeddings (n, D, S, S), each scaled to its 1-99 percentile range; background white."""
    pix = np.moveaxis(embedding, 1, -1)[mask]  # (P, D)
    out = np.ones(mask.shape + (3,))
    if len(pix) < 2:
        return out
    centred = pix - pix.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    pcs = centred @ vt[:3].T  # (P, <=3)
    lo, hi = np.percentile(pcs, 1, axis=0), np.percentile(pcs, 99, axis=0)
    rgb = np.zeros((len(pix), 3))
    rgb[:, :pcs.shape[1]] = np.clip((pcs - lo) / np.maximum(hi - lo, 1e-9), 0, 1)
    out[mask] = rgb
    return out
