"""A small synthetic ``keypoints.zarr`` for the train tests (layout: pipeline/keypoints/write.py).

Bodies are the template with a few random rigid part motions (DensePose parts rotated about their
centroid), seen by a random orthographic camera; a vertex is visible when its normal faces the camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import roma
import torch

from pipeline.core.store import write_store
from pipeline.geometry.mesh import vertex_normals
from pipeline.keypoints.store import SCHEMA

# (parts of a limb, moving together): DensePose part ids
LIMBS = ((3, 4), (5, 6), (7, 9, 11, 13), (8, 10, 12, 14), (15, 17, 19, 21), (16, 18, 20, 22), (23, 24))


def pose_bodies(template, n: int, rng: np.random.Generator, amount: float = 0.5) -> np.ndarray:
    """(n, N, 3) float32: the template with each limb rotated about its centroid by a random angle."""
    v = template.vertices.astype(np.float64)
    out = np.repeat(v[None], n, axis=0)
    for limb in LIMBS:
        idx = np.flatnonzero(np.isin(template.vertex_part, limb))
        if len(idx) == 0:
            continue
        pivot = v[idx].mean(0)
        rot = roma.rotvec_to_rotmat(torch.as_tensor(rng.normal(0, amount, (n, 3)))).numpy()  # (n, 3, 3)
        out[:, idx] = np.einsum("bij,nj->bni", rot, v[idx] - pivot) + pivot
    return out.astype(np.float32)


def make_keypoints(path: str | Path, template, n: int = 64, seed: int = 0, test_share: float = 0.25,
                   noise_px: float = 0.5, chunk: int = 16) -> Path:
    """Writes a keypoints store of ``n`` instances; returns its path."""
    rng = np.random.default_rng(seed)
    bodies = pose_bodies(template, n, rng) - template.vertices.mean(0)
    # camera: body up -> image -y, random yaw about up, small elevation
    up, fwd = template.up.astype(np.float64), template.forward.astype(np.float64)
    base = np.stack([np.cross(up, fwd), -up, -fwd])  # rows: image x, y, z in body coordinates
    yaw = roma.rotvec_to_rotmat(torch.as_tensor(up[None] * rng.uniform(-np.pi, np.pi, (n, 1)))).numpy()
    tilt = roma.rotvec_to_rotmat(torch.as_tensor(np.c_[rng.uniform(-0.3, 0.3, n), np.zeros((n, 2))])).numpy()
    cam_r = tilt @ base[None] @ yaw  # (n, 3, 3)
    cam = np.einsum("bij,bnj->bni", cam_r, bodies) + np.array([0, 0, 4.0])
    f = rng.uniform(80, 120, n)
    c = rng.uniform(200, 300, (n, 2))
    pixels = f[:, None, None] * cam[..., :2] + c[:, None]
    normals = np.stack([vertex_normals(b, template.faces) for b in cam])
    visible = normals[..., 2] < -0.05
    xy = np.where(visible[..., None], pixels + rng.normal(0, noise_px, pixels.shape), 0).astype(np.float32)
    split = (rng.random(n) < test_share).astype(np.uint8)
    # its own generator: the other arrays stay those of the stores made before the confidence existed
    confidence = np.where(visible, np.random.default_rng([seed, 1]).uniform(0.2, 1.0, visible.shape), 0).astype(np.float16)
    arrays = {
        "xy": xy, "visible": visible, "count": visible.astype(np.uint16), "confidence": confidence,
        "visible_area": visible.mean(1).astype(np.float32),
        "box": np.c_[pixels.min(1), pixels.max(1)].astype(np.float32), "score": np.ones(n, np.float32),
        "image": np.arange(n, dtype=np.int32), "split": split, "source_index": np.arange(n, dtype=np.int32),
        "gt/vertices": cam.astype(np.float32), "gt/visible": visible,
        "gt/joints": np.einsum("jn,bnk->bjk", template.joint_regressor, cam).astype(np.float32),
        "gt/camera": np.c_[f, c].astype(np.float32), "gt/pixels": pixels.astype(np.float32),
    }
    write_store(path, arrays, {"schema": SCHEMA, "template_hash": template.hash, "kind": "chart"}, chunk=chunk)
    return Path(path)


def training_inputs(folder: Path, template, n: int = 48, chunk: int = 8) -> Path:
    """``template.npz``, ``lbo.npz`` (16 eigenvectors) and ``kp.zarr`` (:func:`make_keypoints`, seed 0) in ``folder``,
    what a tiny training run reads; returns ``folder``."""
    from pipeline.geometry.lbo import eigenbasis, save_basis

    template.save(folder / "template.npz")
    save_basis(folder / "lbo.npz", eigenbasis(template.vertices.astype(np.float64), template.faces, 16), template.hash)
    make_keypoints(folder / "kp.zarr", template, n=n, seed=0, chunk=chunk)
    return folder
