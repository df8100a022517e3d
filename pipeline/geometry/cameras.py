"""Virtual cameras looking at a body, and the DensePose-style crop box of what they see.

Frames: the *body frame* is Anny's (metres, X the body's left, Y back, Z up, facing -Y). The
*camera frame* is OpenCV's: x right, y down, z forward (depth), metres. ``X_cam = R (X_body - C)``
with ``R`` (3, 3) world-to-camera rows and ``C`` the camera centre in the body frame.

Image pixels (a virtual image of ``image_size``² pixels, principal point at its centre):
- perspective: ``u = f x / z + cx``, ``v = f y / z + cy`` with ``f`` in pixels;
- orthographic: ``u = f x + cx``, ``v = f y + cy`` with ``f`` in pixels per metre, chosen as the
  perspective focal length divided by the camera distance so both projections frame a body alike.

A camera's viewing direction comes from its azimuth (uniform over the full circle; 0 = in front of
the body), elevation (positive: looking down from above) and roll about its optical axis.

Size letters: ``n`` cameras (instances), ``P`` points (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import InputError

__all__ = ["Cameras", "look_at", "sample_cameras", "project", "crop_boxes", "crop_pixel_centres"]

PROJECTIONS = ("orthographic", "perspective")


@dataclass(frozen=True)
class Cameras:
    """``rotation`` (n, 3, 3) world-to-camera; ``centre`` (n, 3) body frame metres; ``focal`` (n,)
    pixels (perspective) or pixels per metre (orthographic); ``principal`` (n, 2) pixels;
    ``projection`` one of ``orthographic``, ``perspective``."""

    rotation: np.ndarray
    centre: np.ndarray
    focal: np.ndarray
    principal: np.ndarray
    projection: str

    def __len__(self) -> int:
        return len(self.focal)

    def take(self, rows: np.ndarray) -> Cameras:
        """The cameras of ``rows`` (k,) int."""
        return Cameras(self.rotation[rows], self.centre[rows], self.focal[rows], self.principal[rows], self.projection)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(n, P, 3) body-frame points -> (n, P, 3) camera-frame points."""
        return np.einsum("nij,nvj->nvi", self.rotation, points - self.centre[:, None, :])


def look_at(target: np.ndarray, azimuth: np.ndarray, elevation: np.ndarray, roll: np.ndarray,
            distance: np.ndarray, up: np.ndarray, forward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (n, 3, 3) and centres (n, 3) of cameras aimed at ``target`` (n, 3).

    Angles (n,) in degrees; ``distance`` (n,) metres; ``up``, ``forward`` (3,) the body's axes.
    Azimuth 0 puts the camera in front of the body, 90 on the body's left.
    """
    up = np.asarray(up, float) / np.linalg.norm(up)
    forward = np.asarray(forward, float) / np.linalg.norm(forward)
    left = np.cross(up, forward)
    a, e, r = (np.deg2rad(np.asarray(x, float)) for x in (azimuth, elevation, roll))
    toward = (np.cos(e)[:, None] * (np.cos(a)[:, None] * forward + np.sin(a)[:, None] * left)
              + np.sin(e)[:, None] * up)  # (n, 3) from the target to the camera
    z = -toward
    y = -(up - (z @ up)[:, None] * z)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = np.cross(y, z)
    c, s = np.cos(r)[:, None], np.sin(r)[:, None]
    x, y = c * x + s * y, -s * x + c * y  # roll about the optical axis
    rotation = np.stack([x, y, z], axis=1)
    centre = np.asarray(target, float) + np.asarray(distance, float)[:, None] * toward
    return rotation, centre


def sample_cameras(rngs: list[np.random.Generator], targets: np.ndarray, *, elevation: tuple[float, float],
                   roll: tuple[float, float], distance: tuple[float, float], fov: float, image_size: int,
                   projection: str, up: np.ndarray, forward: np.ndarray) -> Cameras:
    """One random camera per generator aimed at ``targets`` (n, 3); azimuth uniform in [0, 360).

    ``elevation``, ``roll`` (lo, hi) degrees; ``distance`` (lo, hi) metres; ``fov`` the vertical field
    of view of the virtual image in degrees.
    """
    if projection not in PROJECTIONS:
        raise InputError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    draws = np.array([[g.uniform(0, 360), g.uniform(*elevation), g.uniform(*roll), g.uniform(*distance)]
                      for g in rngs]).reshape(len(rngs), 4)
    rotation, centre = look_at(targets, draws[:, 0], draws[:, 1], draws[:, 2], draws[:, 3], up, forward)
    f = 0.5 * image_size / np.tan(np.deg2rad(fov) / 2)
    focal = np.full(len(rngs), f) if projection == "perspective" else f / draws[:, 3]
    principal = np.full((len(rngs), 2), image_size / 2.0)
    return Cameras(rotation, centre, focal, principal, projection)


def project(cam_points: np.ndarray, focal: np.ndarray, principal: np.ndarray, projection: str) -> np.ndarray:
    """(n, P, 2) image pixels (x, y) of camera-frame points (n, P, 3)."""
    xy = cam_points[..., :2]
    if projection == "perspective":
        xy = xy / cam_points[..., 2:3]
    return xy * focal[:, None, None] + principal[:, None, :]


def crop_boxes(pixels: np.ndarray, margin: float) -> np.ndarray:
    """(n, 4) boxes (x0, y0, x1, y1): the points' tight box (n, P, 2) grown by ``margin`` × its size per side."""
    lo, hi = pixels.min(axis=1), pixels.max(axis=1)
    pad = margin * (hi - lo)
    return np.concatenate([lo - pad, hi + pad], axis=1)


def crop_pixel_centres(boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates of the S×S crop pixel centres: x (n, S) per column and y (n, S) per row.

    Crop pixel (r, c) has centre ``(x0 + (c + 0.5) w / S, y0 + (r + 0.5) h / S)`` (METHOD.md §2).
    """
    t = (np.arange(size) + 0.5) / size
    x = boxes[:, 0:1] + t[None] * (boxes[:, 2:3] - boxes[:, 0:1])
    y = boxes[:, 1:2] + t[None] * (boxes[:, 3:4] - boxes[:, 1:2])
    return x, y
