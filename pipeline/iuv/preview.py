"""The ``iuv`` stage's preview: raw, repaired and (synthetic data) true IUV of the first instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.io import atomic_path, save_figure
from pipeline.densepose.store import open_densepose
from pipeline.geometry.draw import plt
from pipeline.iuv.store import open_iuv
from pipeline.template.file import decode_iuv, part_rgb, uv_rgb

__all__ = ["write_preview"]


def iuv_preview_figure(columns: list[tuple[str, np.ndarray, np.ndarray]], titles: list[str]):
    """Instances as rows; per column group (name, labels (n,S,S), uv (n,2,S,S)) the parts and U/V."""
    n = len(titles)
    cols = 2 * len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for i in range(n):
        for j, (name, labels, uv) in enumerate(columns):
            for k, img in enumerate((part_rgb(labels[i]), uv_rgb(labels[i], uv[i]))):
                ax = axes[i, 2 * j + k]
                ax.imshow(img, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(f"{name} {'I' if k == 0 else 'UV'}", fontsize=8)
        axes[i, 0].set_ylabel(titles[i], fontsize=7)
    fig.tight_layout()
    return fig


def _decoded(iuv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n, S, S) and U/V (n, 2, S, S) of encoded IUV crops (n, S, S, 3) uint8."""
    decoded = [decode_iuv(x) for x in iuv]
    return np.stack([d[0] for d in decoded]), np.stack([d[1] for d in decoded])


def write_preview(densepose: str | Path, repaired: str | Path, folder: str | Path, count: int) -> None:
    """Writes ``folder/instances.png``: the first ``count`` instances of the ``repaired`` store (iuv.zarr)
    as they were in ``densepose`` (densepose.zarr), as repaired, and the ground truth when there is one.
    The folder is written (empty when ``count`` is 0 or nothing was repaired) atomically."""
    root, rep = open_densepose(densepose), open_iuv(repaired)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if count > 0 and "iuv" in rep:
            k = min(count, rep["iuv"].shape[0])
            rows = rep["source_index"][:k]
            columns = [("raw", root["labels"].get_orthogonal_selection(rows), root["uv"].get_orthogonal_selection(rows)),
                       ("repaired", *_decoded(rep["iuv"][:k]))]
            if "gt" in root and "iuv" in root["gt"]:
                columns.append(("truth", *_decoded(root["gt/iuv"].get_orthogonal_selection(rows))))
            save_figure(iuv_preview_figure(columns, [f"instance {i}" for i in rows]), tmp / "instances.png")
