"""Photo-like RGB crops of the synthetic bodies, with their exact IUV (METHOD.md §2.6).

Every crop pixel that sees a body is coloured from the surface point its exact IUV names: the hit's
DensePose part picks a *region* of an outfit drawn per body (skin; a top over the torso and arms, with
short sleeves or not; a bottom over the legs, trousers or shorts; shoes), and the hit's chart
coordinates ``(U, V)`` pattern it (plain, stripes or checks, in the region's colours). The colour is
then shaded, Lambert with one directional light and an ambient term drawn per instance:

    rgb = albedo(part, U, V) * (ambient + (1 - ambient) * max(0, n · l))

with ``n`` the interpolated vertex normal of the posed mesh at the hit (camera frame) and ``l`` the
direction towards the light, on the camera's side of the body. Pixels that see no body show a
procedural background (a two-colour gradient, smooth value noise and pasted shapes); pixels covered by
the instance's pasted occluder (:mod:`pipeline.densepose.synthetic.corruption`) show a textured
occluder. Small Gaussian sensor noise is added; the result is uint8.

Skin tones: Anny's CC0 textures are region masks of its UV layout (face, lips, ears, nails), not
albedo maps, so skin albedo is drawn from a range of linear-RGB skin reflectances instead.

Determinism: a body's outfit comes from ``default_rng([seed, 3, body])``, an instance's light,
ambient, background and noise from ``default_rng([seed, 4, instance])``: the same bytes whatever the
batching. Size letters: ``n`` instances, ``S`` crop side, ``N`` vertices, ``F`` faces (legend:
:mod:`pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.core.errors import InputError

__all__ = ["REGION_OF_PART", "Outfit", "sample_outfit", "albedo", "lambert", "background", "pixel_normals",
           "shaded_crop", "paste_occluder", "to_srgb8", "OUTFIT_STREAM", "IMAGE_STREAM"]

OUTFIT_STREAM, IMAGE_STREAM = 3, 4  # the generator streams of outfits (per body) and images (per instance)
SKIN, TOP, BOTTOM, SHOES = 0, 1, 2, 3
# DensePose part 0..24 -> region: hands and head skin, torso and arms the top, legs the bottom, feet shoes
REGION_OF_PART = np.array([SKIN, TOP, TOP, SKIN, SKIN, SHOES, SHOES, *[BOTTOM] * 8, *[TOP] * 8, SKIN, SKIN])
LOWER_ARMS = (19, 20, 21, 22)
LOWER_LEGS = (11, 12, 13, 14)
PLAIN, STRIPES, CHECKS = 0, 1, 2
# linear RGB skin reflectance: from pale to dark, drawn along this segment with a little hue jitter
_SKIN_LIGHT, _SKIN_DARK = np.array([0.80, 0.60, 0.50]), np.array([0.16, 0.09, 0.06])


@dataclass(frozen=True)
class Outfit:
    """One body's appearance: ``colours`` (4, 2, 3) float linear RGB, two colours per region (skin, top,
    bottom, shoes); ``pattern`` (4,) int (plain, stripes, checks) and ``frequency`` (4,) float pattern
    cycles across a chart; ``short_sleeves``, ``shorts``: lower arms / lower legs show skin."""

    colours: np.ndarray
    pattern: np.ndarray
    frequency: np.ndarray
    short_sleeves: bool
    shorts: bool


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """A random outfit: a skin tone, and random colours, patterns and cuts for the clothes."""
    t = rng.random()
    skin = np.clip((1 - t) * _SKIN_LIGHT + t * _SKIN_DARK + rng.normal(0, 0.02, 3), 0.02, 1.0)
    colours = rng.random((4, 2, 3)) ** 1.5  # clothes: any colour, darker ones more often
    colours[SKIN] = skin
    pattern = rng.choice([PLAIN, STRIPES, CHECKS], size=4, p=[0.5, 0.3, 0.2])
    pattern[SKIN] = PLAIN
    return Outfit(colours, pattern, rng.uniform(2.0, 8.0, 4), bool(rng.random() < 0.3), bool(rng.random() < 0.2))


def albedo(labels: np.ndarray, uv: np.ndarray, outfit: Outfit) -> np.ndarray:
    """(S, S, 3) float32 albedo of the surface points named by ``labels`` (S, S) int 0..24 and ``uv``
    (2, S, S) float (0 where ``labels`` is 0, which gets black)."""
    labels = np.asarray(labels)
    if labels.max(initial=0) > 24 or labels.min(initial=0) < 0:
        raise InputError("albedo: labels must be parts 0..24 (the exact rendering, without missing pixels)")
    region = REGION_OF_PART[labels]
    region = np.where(outfit.short_sleeves & np.isin(labels, LOWER_ARMS), SKIN, region)
    region = np.where(outfit.shorts & np.isin(labels, LOWER_LEGS), SKIN, region)
    f = outfit.frequency[region]
    stripes = np.floor(uv[1] * f).astype(np.int64) % 2
    checks = (np.floor(uv[0] * f).astype(np.int64) + np.floor(uv[1] * f).astype(np.int64)) % 2
    second = np.select([outfit.pattern[region] == STRIPES, outfit.pattern[region] == CHECKS], [stripes, checks], 0)
    out = outfit.colours[region, second].astype(np.float32)
    out[labels == 0] = 0.0
    return out


def pixel_normals(face: np.ndarray, bary: np.ndarray, normals: np.ndarray, faces: np.ndarray,
                  rotation: np.ndarray) -> np.ndarray:
    """(S, S, 3) float32 unit camera-frame normals at one crop's hits.

    Args:
        face: (S, S) int hit face (-1 background). bary: (S, S, 2) Warp's (u, v): the hit is
            ``u p0 + v p1 + (1 - u - v) p2``. normals: (N, 3) the posed body's vertex normals (body frame,
            :func:`pipeline.geometry.mesh.vertex_normals`).
        faces: (F, 3). rotation: (3, 3) world-to-camera.
    """
    hit = face >= 0
    corner = faces[np.where(hit, face, 0)]  # (S, S, 3)
    u, v = bary[..., 0:1], bary[..., 1:2]
    n = u * normals[corner[..., 0]] + v * normals[corner[..., 1]] + (1 - u - v) * normals[corner[..., 2]]
    n = n @ np.asarray(rotation, np.float64).T
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    return np.where(hit[..., None], n, 0.0).astype(np.float32)


def lambert(colour: np.ndarray, normals: np.ndarray, light: np.ndarray, ambient: float) -> np.ndarray:
    """``colour * (ambient + (1 - ambient) max(0, n·l))``: colour (S, S, 3), normals (S, S, 3) unit,
    light (3,) unit direction towards the light (camera frame)."""
    direct = np.clip(normals @ np.asarray(light, np.float32), 0.0, None)
    return colour * (ambient + (1.0 - ambient) * direct)[..., None]


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(S, S) float32 smooth noise in [0, 1]: a random ``cells`` x ``cells`` grid, bicubically enlarged."""
    grid = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(S, S, 3) float32 a procedural background: a gradient between two colours, value noise and up to
    four pasted shapes (rectangles and ellipses) of other colours."""
    c0, c1 = rng.random(3), rng.random(3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
    out = (1 - t) * c0 + t * c1
    out = out * (0.7 + 0.6 * _value_noise(rng, size, int(rng.integers(2, 9)))[..., None])
    for _ in range(int(rng.integers(0, 5))):
        centre = rng.uniform(0, size, 2)
        axes = rng.uniform(0.05, 0.4, 2) * size
        mask = np.zeros((size, size), np.uint8)
        if rng.random() < 0.5:
            lo, hi = (centre - axes).astype(int), (centre + axes).astype(int)
            cv2.rectangle(mask, (int(lo[0]), int(lo[1])), (int(hi[0]), int(hi[1])), 1, -1)
        else:
            cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])),
                        float(rng.uniform(0, 180)), 0, 360, 1, -1)
        out[mask > 0] = rng.random(3)
    return np.clip(out, 0, 1).astype(np.float32)


def shaded_crop(labels: np.ndarray, uv: np.ndarray, normals: np.ndarray, outfit: Outfit, rng: np.random.Generator,
                ambient: tuple[float, float]) -> np.ndarray:
    """(S, S, 3) float32 linear RGB of one crop: the shaded body on a procedural background.

    Args:
        labels: (S, S) exact parts 0..24; uv: (2, S, S) exact U, V; normals: (S, S, 3) camera-frame unit
            normals at the hits (:func:`pixel_normals`). outfit: the body's. rng: the instance's generator
            (light, ambient, background; then :func:`paste_occluder` and :func:`to_srgb8` draw from it).
            ambient: its range.
    """
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(0.3, 1.5)])
    light /= np.linalg.norm(light)  # towards the light, on the camera's side (the camera looks along +z)
    amb = rng.uniform(*ambient)
    body = lambert(albedo(labels, uv, outfit), normals, light, amb)  # a lit visible normal has n·l > 0 (both z < 0)
    return np.where((labels > 0)[..., None], body, background(rng, labels.shape[-1])).astype(np.float32)


def paste_occluder(image: np.ndarray, occluder: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (S, S, 3) linear RGB with the pixels of ``occluder`` (S, S) bool showing a textured occluder."""
    if not occluder.any():
        return image
    texture = background(rng, image.shape[0]) * (0.8 + 0.2 * rng.random())
    return np.where(occluder[..., None], texture, image).astype(np.float32)


def to_srgb8(image: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """(S, S, 3) uint8 sRGB of a linear RGB image, after Gaussian sensor noise of std ``noise``."""
    if noise > 0:
        image = image + rng.normal(0.0, noise, image.shape)
    image = np.clip(image, 0.0, 1.0)
    srgb = np.where(image <= 0.0031308, 12.92 * image, 1.055 * np.power(image, 1 / 2.4) - 0.055)
    return np.clip(np.rint(srgb * 255.0), 0, 255).astype(np.uint8)
