"""A few fake instances on the real template for the page's tests (pipeline/evaluate/page.py).

Bodies are the template turned about its up axis, 4 m in front of an orthographic camera (as in
test_evaluate.py); the prediction is the truth bent by a smooth offset, so vertex errors vary over the body;
the IUV crop holds each true vertex's DensePose part splatted where it projects.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

from pipeline.evaluate.inputs import Inputs
from pipeline.evaluate.metrics import centre_depth
from pipeline.evaluate.results import Kept
from pipeline.geometry.mesh import vertex_normals

CROP = 112


def fake_instances(template, n: int = 3, seed: int = 0) -> dict:
    """Arrays of ``n`` instances: true (n, N, 3) camera-frame metres, pred (n, N, 3), f (n,), c (n, 2),
    true_pixels and pixels (n, N, 2) image px, visible (n, N) bool, box (n, 4) float32, segmentation (N, 5)."""
    rng = np.random.default_rng(seed)
    up, fwd = template.up.astype(np.float64), template.forward.astype(np.float64)
    base = np.stack([np.cross(up, fwd), -up, -fwd])  # body axes -> image x, y (down), z (away)
    yaw = roma.rotvec_to_rotmat(torch.as_tensor(up[None] * rng.uniform(-1.0, 1.0, (n, 1)))).numpy()
    body = template.vertices - template.vertices.mean(0)
    true = np.einsum("ij,bjk,nk->bni", base, yaw, body) + [0.0, 0.0, 4.0]
    bend = 0.06 * np.sin(4.0 * true[..., 1:2]) * np.array([1.0, 0.0, 1.0])  # metres, grows away from the hips
    pred = true + bend
    f = rng.uniform(90, 110, n)
    c = rng.uniform(150, 250, (n, 2))
    true_pixels = f[:, None, None] * true[..., :2] + c[:, None]
    pixels = f[:, None, None] * pred[..., :2] + c[:, None]
    visible = np.stack([vertex_normals(b, template.faces)[:, 2] < 0 for b in true])
    lo, hi = true_pixels.min(1), true_pixels.max(1)
    margin = 0.1 * (hi - lo)
    box = np.c_[lo - margin, hi + margin].astype(np.float32)
    height = template.vertices @ up
    segmentation = np.eye(5)[np.clip(((height - height.min()) / np.ptp(height) * 5).astype(int), 0, 4)]
    return {"true": true, "pred": pred, "f": f, "c": c, "true_pixels": true_pixels, "pixels": pixels,
            "visible": visible, "box": box, "segmentation": segmentation}


def fake_iuv(template, true_pixels: np.ndarray, box: np.ndarray, crop: int = CROP) -> np.ndarray:
    """(n, S, S, 3) uint8 encoded IUV: each vertex's part (channel I) on the 3 x 3 crop pixels around where it
    projects, nearer vertices last (U, V 0)."""
    out = np.zeros((len(box), crop, crop, 3), np.uint8)
    for i in range(len(box)):
        size = box[i, 2:] - box[i, :2]
        uv = ((true_pixels[i] - box[i, :2]) * crop / size).astype(int)
        for (x, y), part in zip(uv, template.vertex_part):
            out[i, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2, 0] = part
    return out


def fake_page_inputs(template, n: int = 3, ground_truth: bool = True, crops: bool = True):
    """(kept, inputs, segmentation, arrays) as pipeline.evaluate.loop.evaluate hands them to the page: the kept
    instances (depth-centred metres with ground truth, else image-frame pixels and no truth), their inputs,
    the learnt part weights (N, 5) and :func:`fake_instances`'s arrays."""
    from pipeline.evaluate.inputs import _iuv_image

    a = fake_instances(template, n)
    xy = np.where(a["visible"][..., None], a["true_pixels"], 0).astype(np.float32)
    if ground_truth:
        pred, true = centre_depth(a["pred"]), centre_depth(a["true"])
    else:
        image = np.concatenate([a["pixels"], a["f"][:, None, None] * a["pred"][..., 2:]], axis=-1)
        pred, true = centre_depth(image), []
    err = 1000 * np.linalg.norm(a["pred"] - a["true"], axis=-1).mean(1)
    kept = Kept(rows=list(range(0, 2 * n, 2)), xy=list(xy), visible=list(a["visible"]), pred=list(pred),
                true=list(true), error=[f"MPJPE {e:.0f} mm" for e in err], pixels=list(a["pixels"]))
    iuv = fake_iuv(template, a["true_pixels"], a["box"]) if crops else [None] * n
    inputs = Inputs(CROP, a["box"].astype(np.float64), a["true_pixels"] if ground_truth else None,
                    [_iuv_image(x) if crops else None for x in iuv], [None] * n, [])
    return kept, inputs, a["segmentation"], a
