"""Per-instance keypoint normalisation and its inverse (METHOD.md §3).

The model sees each instance's keypoints centred on the mean of its visible keypoints and divided
by one scale, the RMS distance of the visible keypoints from that mean. :func:`denormalise` maps
points of that normalised frame (2D, or 3D with depth in the same units) back to image pixels, so
that ``denormalise(normalise(xy, visible)) == xy`` on visible keypoints.

Both functions accept torch tensors or numpy arrays and return the same kind.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from pipeline.core.errors import InputError

__all__ = ["NormalisedKeypoints", "normalise", "denormalise"]


class NormalisedKeypoints(NamedTuple):
    """Output of :func:`normalise`.

    xy: (B, N, 2) float, normalised keypoints, exactly 0 where invisible.
    centre: (B, 2) float, mean of the visible keypoints, image pixels.
    scale: (B,) float, RMS distance of visible keypoints from ``centre``, pixels (>= eps).
    """

    xy: torch.Tensor | np.ndarray
    centre: torch.Tensor | np.ndarray
    scale: torch.Tensor | np.ndarray


def _to_torch(a):
    return (torch.from_numpy(np.asarray(a)), True) if not isinstance(a, torch.Tensor) else (a, False)


def normalise(xy, visible, eps: float = 1e-6) -> NormalisedKeypoints:
    """Centres and scales each instance's visible keypoints.

    Args:
        xy: (B, N, 2) float, image pixels (any value where invisible).
        visible: (B, N) bool.
        eps: smallest scale (an instance with 0 or 1 visible keypoint gets scale ``eps``).
    """
    xy_t, was_np = _to_torch(xy)
    vis_t, _ = _to_torch(visible)
    if xy_t.ndim != 3 or xy_t.shape[-1] != 2 or vis_t.shape != xy_t.shape[:2]:
        raise InputError(f"normalise: xy must be (B, N, 2) and visible (B, N), got {tuple(xy_t.shape)} "
                         f"and {tuple(vis_t.shape)}")
    v = vis_t.to(xy_t.dtype)[..., None]  # (B, N, 1)
    count = v.sum(1).clamp(min=1.0)  # (B, 1)
    centre = (xy_t * v).sum(1) / count  # (B, 2)
    d = (xy_t - centre[:, None]) * v
    scale = ((d**2).sum((1, 2)) / count[:, 0]).sqrt().clamp(min=eps)  # (B,)
    out = d / scale[:, None, None]
    if was_np:
        return NormalisedKeypoints(out.numpy(), centre.numpy(), scale.numpy())
    return NormalisedKeypoints(out, centre, scale)


def denormalise(points, centre, scale):
    """Inverse of :func:`normalise`: normalised points back to image pixels.

    Args:
        points: (B, N, 2) or (B, N, 3) float in the normalised frame; a third (depth) coordinate
            is only scaled, so it ends in pixels too (up to the unknown constant depth offset).
        centre: (B, 2), scale: (B,) as returned by :func:`normalise`.
    Returns:
        (B, N, 2 or 3) float, pixels.
    """
    p, was_np = _to_torch(points)
    c, _ = _to_torch(centre)
    s, _ = _to_torch(scale)
    c, s = c.to(p.dtype), s.to(p.dtype)
    out = p * s[:, None, None]
    offset = torch.zeros(p.shape[-1], dtype=p.dtype, device=p.device).expand(len(p), -1).clone()
    offset[:, :2] = c
    out = out + offset[:, None]
    return out.numpy() if was_np else out
