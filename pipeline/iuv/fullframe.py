"""Full-frame export: per-instance ``S x S`` IUV crops pasted back into image coordinates.

The IUV image (``iuv``, (H, W, 3) uint8) uses Detectron2's encoding (METHOD.md §2,
``quantize_densepose_chart_result``): channel 0 = I, the part 0..24 (0 background, never scaled),
channel 1 = ``floor(clamp(255 U, 0, 255))``, channel 2 = ``floor(clamp(255 V, 0, 255))``. Those are
*array* channels: :func:`save_fullframe` writes the array with ``cv2.imwrite``, which treats arrays
as BGR, so in the PNG file blue = I, green = U, red = V -- byte-compatible with the ``*_IUV.png``
files of the original Detectron's ``infer_simple.py``; ``cv2.imread`` gives back (I, U, V), a
reader returning RGB (PIL) gives (V, U, I).

The instance-index map (``index``, (H, W) int32, saved as a 16-bit PNG) is 0 where no instance is
pasted and ``k + 1`` where instance ``k`` (its row in the inputs) is.

Each crop covers its float box ``(x0, y0, x1, y1)``; it is pasted onto Detectron2's integer box
(``x = int(x0)``, ``y = int(y0)``, ``w = int(x1 - x0)``, ``h = int(y1 - y0)``, at least 1; pixels
``[y, y + h) x [x, x + w)``), as its visualisers paste results, clipped to the image. The crop is
resized to ``(h, w)`` like any chart result (:func:`pipeline.densepose.convert.resize_chart`:
nearest part, U/V decoded at bin centres and interpolated bilinearly among same-part pixels, then
re-quantised), so a crop pasted at its own size is copied byte for byte. Only foreground (I > 0)
pixels are pasted; where instances overlap, the higher score wins (ties: the lower index).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from pipeline.core.errors import InputError
from pipeline.core.io import atomic_path
from pipeline.densepose.convert import int_box_xywh, resize_chart
from pipeline.template.file import decode_iuv, encode_iuv

__all__ = ["FullFrame", "paste_iuv", "save_fullframe", "export_store_frames", "write_frames"]


class FullFrame(NamedTuple):
    """iuv: (H, W, 3) uint8 (I, U, V).  index: (H, W) int32, 0 none, k + 1 instance k."""

    iuv: np.ndarray
    index: np.ndarray


def paste_iuv(crops: np.ndarray, boxes: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> FullFrame:
    """Pastes instances' IUV crops into one image; see the module docstring.

    Args:
        crops: (n, S, S, 3) uint8 IUV crops (Detectron2 encoding).
        boxes: (n, 4) float x0, y0, x1, y1 image pixels.  scores: (n,) float.
        image_size: (H, W).

    Returns:
        :class:`FullFrame`.
    """
    crops = np.asarray(crops)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    n = len(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or len(boxes) != n or len(scores) != n:
        raise InputError(f"expected crops (n, S, S, 3), boxes (n, 4), scores (n,); got {crops.shape}, "
                         f"{boxes.shape}, {scores.shape}")
    H, W = (int(s) for s in image_size)
    iuv = np.zeros((H, W, 3), np.uint8)
    index = np.zeros((H, W), np.int32)
    for k in np.argsort(-scores, kind="stable"):  # best first; a pixel keeps its first owner
        x, y, w, h = int_box_xywh(boxes[k])
        y0, y1, x0, x1 = max(y, 0), min(y + h, H), max(x, 0), min(x + w, W)
        if y1 <= y0 or x1 <= x0:
            continue
        labels, uv = decode_iuv(crops[k])
        lab, uv = resize_chart(torch.from_numpy(labels), torch.from_numpy(uv), (h, w))
        patch = encode_iuv(lab.numpy(), uv.numpy())[y0 - y:y1 - y, x0 - x:x1 - x]  # (h', w', 3)
        free = (patch[..., 0] > 0) & (index[y0:y1, x0:x1] == 0)
        iuv[y0:y1, x0:x1][free] = patch[free]
        index[y0:y1, x0:x1][free] = k + 1
    return FullFrame(iuv, index)


def save_fullframe(frame: FullFrame, iuv_path: str | Path, index_path: str | Path | None = None) -> None:
    """Writes the IUV PNG (array channels I, U, V via ``cv2.imwrite``: file blue = I, green = U,
    red = V) and optionally the index map as a 16-bit single-channel PNG, atomically."""
    import cv2

    if frame.index.max(initial=0) > np.iinfo(np.uint16).max:
        raise InputError("more than 65535 instances in one image cannot be saved as a 16-bit index PNG")
    for path, arr in ((iuv_path, frame.iuv), (index_path, frame.index.astype(np.uint16))):
        if path is None:
            continue
        with atomic_path(path) as tmp:
            ok, buf = cv2.imencode(".png", arr)
            if not ok:
                raise InputError(f"could not encode {path} as PNG")
            Path(tmp).write_bytes(buf.tobytes())


def export_store_frames(root, folder: str | Path) -> int:
    """Writes ``<image stem>_IUV.png`` and ``<image stem>_INDS.png`` for every image of an iuv.zarr store.

    Instances are numbered within their image in store order (the index map's k + 1). The canvas
    is the image's size when the store records it (attribute ``image_sizes``), else the smallest
    one holding every box. Returns the number of images written.
    """
    folder = Path(folder)
    images = list(root.attrs.get("images", []))
    sizes = root.attrs.get("image_sizes") or [[0, 0]] * len(images)
    image, boxes, scores, iuv = root["image"][:], root["box"][:], root["score"][:], root["iuv"]
    written = 0
    for i in np.unique(image):
        rows = np.flatnonzero(image == i)
        b = boxes[rows]
        h, w = sizes[i] if sizes[i][0] > 0 else (int(np.ceil(b[:, 3].max())), int(np.ceil(b[:, 2].max())))
        frame = paste_iuv(iuv[rows[0]:rows[-1] + 1][rows - rows[0]], b, scores[rows], (h, w))
        stem = Path(images[i]).with_suffix("").as_posix().replace("/", "__")
        save_fullframe(frame, folder / f"{stem}_IUV.png", folder / f"{stem}_INDS.png")
        written += 1
    return written


def write_frames(root, folder: str | Path) -> int:
    """Writes ``folder`` (a new folder, atomically) with the full-frame IUV and index PNGs of an iuv.zarr store
    of real images (:func:`export_store_frames`) and a ``README.txt`` saying what it holds: synthetic images
    are virtual and a store without chart output has no IUV, so their folder holds only the README (never
    empty: DVC warns about an empty output folder). Returns the number of images written."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if root.attrs.get("source") == "synthetic" or "iuv" not in root:
            why = ("the images are synthetic (virtual: no frame to paste into)" if "iuv" in root
                   else "the store has no chart (IUV) output")
            (tmp / "README.txt").write_text(f"No full-frame IUV images: {why}.\n")
            return 0
        written = export_store_frames(root, tmp)
        (tmp / "README.txt").write_text(f"{written} images: <image stem>_IUV.png (channels I, U x 255, V x 255 as "
                                        f"OpenCV reads them) and <image stem>_INDS.png (16-bit instance index, "
                                        f"best score first).\n")
        return written
