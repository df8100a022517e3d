"""DensePose-like corruption of exact synthetic correspondence (each kind with its own strength).

Real DensePose output is imperfect; the IUV stage exists to repair it. Applied in this order to one
instance's crop, each step off when its strength is 0 (all off: the exact data, untouched):

1. ``border_px``: the silhouette is eroded or dilated by a random 0..border_px pixels; dilated
   pixels copy the part, U, V and embedding of their nearest foreground pixel.
2. ``flip_prob``: each foreground pixel with a 4-neighbour of another part takes that part's label
   with this probability (DensePose confuses neighbouring parts along their border).
3. ``uv_noise`` / ``embedding_noise``: Gaussian noise on U, V (clipped to [0, 1]; spatially smooth with
   ``uv_noise_scale`` > 0: white noise blurred by a Gaussian of sigma ``uv_noise_scale`` x S and rescaled to
   std ``uv_noise``, as a network's U/V errors are; per pixel at 0) and on the embedding (spatially smooth:
   drawn on an S/4 grid and upsampled), foreground only.
4. ``dropout_blobs`` / ``dropout_radius``: a Poisson number of elliptic blobs centred on the body
   whose foreground pixels become missing (label 255, U/V and embedding NaN).
5. ``occluder_prob`` / ``occluder_size`` / ``occluder_soft`` / ``occluder_missing`` (references/002
   §2.4): a random 2D shape (ellipse, rotated rectangle or polygon) pasted over the body; its alpha
   is the shape blurred by ``occluder_soft`` pixels and a pixel is covered with probability alpha,
   so its edge is soft. Covered foreground pixels become missing (with probability
   ``occluder_missing`` per occluder) or background.
6. ``seam_px``: the front/back seam of each segment seen from both sides moves: one side, drawn at
   random, grows into the other by 0..seam_px pixels, its new pixels copying the part, U, V and
   embedding of its nearest pixel (a network places the seam on a limb's silhouette side loosely).
7. ``mirror_prob``: each segment with a left/right twin (hands, feet, limbs, head halves) is, with this
   probability, given a patch of its twin's labels: a fraction ``u**3`` (``u`` uniform) of its pixels,
   those nearest a random pixel of it, take the twin part and the chart coordinates of the mirror point
   (:class:`Mirror`; the embedding of that point's vertex). Most patches are small and a few cover the
   whole segment, as the network's own left/right confusions are (METHOD.md §2.5). A right foot read
   as the left one puts the far side's keypoints on the near side: the error per-pixel noise never makes.

Steps 6 and 7 draw after every other step, so outputs with both at 0 are those of earlier versions.

Size letters: ``S`` crop side, ``D`` embedding dims, ``P`` pixels of a flat list (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from pipeline.core.config import CorruptionParams
from pipeline.core.errors import InputError
from pipeline.geometry.charts import ChartLocator
from pipeline.template.file import MISSING_LABEL, N_PARTS, PART_NAMES, SEGMENTS, Template

__all__ = ["Crop", "Mirror", "chart_mirror", "corrupt", "corrupt_inplace", "is_off", "occluder_alpha"]

_PART_ID = {name: i + 1 for i, name in enumerate(PART_NAMES)}
# each part's left/right twin (the torso is its own), by name: "left" <-> "right"
LR_TWIN = np.array([0] + [_PART_ID[n.replace("left", "#").replace("right", "left").replace("#", "right")]
                          for n in PART_NAMES], np.int64)
# (back, front) of the segments seen from two sides; (segment ids) of those with a left/right twin
_FRONT_BACK = [ids for ids in SEGMENTS.values() if ids[0] != ids[1]]
_MIRRORED = [ids for name, ids in SEGMENTS.items() if name != "torso"]


@dataclass(frozen=True)
class Crop:
    """One instance's DensePose output: ``labels`` (S, S) uint8 (255 missing); ``uv`` (2, S, S)
    float32 (NaN missing); ``embedding`` (D, S, S) float32 or None; ``mask`` (S, S) bool foreground;
    ``occluder`` (S, S) bool pixels covered by a pasted occluder (all False when none)."""

    labels: np.ndarray
    uv: np.ndarray
    embedding: np.ndarray | None
    mask: np.ndarray
    occluder: np.ndarray


@dataclass(frozen=True)
class Mirror:
    """A template's left/right symmetry in chart terms: part ``p``'s twin is ``LR_TWIN[p]`` and the mirror
    of the point ``(U, V)`` of part ``p`` has the coordinate ``axis[p]`` (25,) int (0: U, 1: V) replaced by
    one minus it (2: neither; the twin's chart is the same, as DensePose's limbs' are); ``locator`` and ``embedding`` (N, D) float give a chart point's vertex embedding."""

    axis: np.ndarray
    locator: ChartLocator
    embedding: np.ndarray


def chart_mirror(template: Template, tol: float = 0.05) -> Mirror:
    """The :class:`Mirror` of ``template``, measured on its chart points: every vertex's mirror image through
    the sagittal plane (normal ``up x forward`` through the vertices' mean) must be a vertex within 1 % of
    the body's height, and each part's chart must be its twin's with U or V flipped, or its twin's as it is
    (within ``tol``).

    Raises:
        InputError: the template (its ``source``) is not left/right symmetric in either sense.
    """
    v = np.asarray(template.vertices, np.float64)
    side = np.cross(template.up, template.forward).astype(np.float64)
    side /= np.linalg.norm(side)
    x = v @ side
    height = np.ptp(v @ np.asarray(template.up, np.float64))
    dist, mirror_vertex = cKDTree(v).query(v - 2.0 * np.outer(x - x.mean(), side))
    if dist.max() > 0.01 * height:
        raise InputError(f"template {template.source}: not left/right symmetric (a vertex's mirror image is "
                         f"{dist.max():.3f} from every vertex); synthetic.corruption.mirror_prob needs 0")
    axis = np.zeros(N_PARTS + 1, np.int64)
    for p in range(1, N_PARTS + 1):
        mine, twin = np.flatnonzero(template.chart_part == p), np.flatnonzero(template.chart_part == LR_TWIN[p])
        point_of = {int(template.chart_vertex[k]): k for k in twin}
        pairs = np.array([(a, point_of[m]) for a in mine if (m := int(mirror_vertex[template.chart_vertex[a]]))
                          in point_of])
        if len(pairs) == 0:
            raise InputError(f"template {template.source}: part {p} ({PART_NAMES[p - 1]}) has no chart point "
                             "whose mirror is a chart point of its twin; synthetic.corruption.mirror_prob needs 0")
        a, b = template.chart_uv[pairs[:, 0]], template.chart_uv[pairs[:, 1]]
        err = [np.median(np.abs(a[:, k] - (1.0 - b[:, k])) + np.abs(a[:, 1 - k] - b[:, 1 - k])) for k in (0, 1)]
        err.append(np.median(np.abs(a - b).sum(axis=1)))
        axis[p] = int(np.argmin(err))
        if min(err) > tol:
            raise InputError(f"template {template.source}: the chart of part {p} ({PART_NAMES[p - 1]}) is not its "
                             f"twin's, as it is or mirrored in U or V (median error {min(err):.3f}); "
                             "synthetic.corruption.mirror_prob needs 0")
    locator = ChartLocator(template.chart_part, template.chart_uv, template.chart_vertex)
    return Mirror(axis, locator, np.asarray(template.embedding, np.float32))


def is_off(p: CorruptionParams) -> bool:
    """True when every corruption is off (the output is the exact data)."""
    return not (p.uv_noise or p.embedding_noise or p.flip_prob or (p.dropout_blobs and p.dropout_radius)
                or p.border_px or (p.occluder_prob and p.occluder_size) or p.seam_px or p.mirror_prob)


def _clear(c: Crop, where: np.ndarray, label: int, value: float) -> None:
    """Pixels ``where`` (S, S) get ``label`` and U, V, embedding ``value`` (in place)."""
    c.labels[where] = label
    c.uv[:, where] = value
    if c.embedding is not None:
        c.embedding[:, where] = value


def _border(c: Crop, px: int, rng: np.random.Generator) -> None:
    r = int(rng.integers(-px, px + 1))
    if r == 0 or not c.mask.any():
        return
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
    m8 = c.mask.astype(np.uint8)
    if r < 0:
        gone = c.mask & ~cv2.erode(m8, kernel, borderValue=0).astype(bool)
        _clear(c, gone, 0, 0.0)
        c.mask[gone] = False
        return
    new = cv2.dilate(m8, kernel, borderValue=0).astype(bool) & ~c.mask
    _copy_nearest(c, new, c.mask)  # dilated pixels copy their nearest foreground pixel (sources untouched)
    c.mask[new] = True


def _flip(c: Crop, prob: float, rng: np.random.Generator) -> None:
    lab = c.labels
    pad = np.pad(lab, 1)
    neigh = np.stack([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])  # (4, S, S) up/down/left/right
    other = (neigh != lab) & (neigh > 0) & (neigh != MISSING_LABEL) & (lab > 0) & (lab != MISSING_LABEL)
    border = np.flatnonzero(other.any(axis=0))  # (P,) pixels with a neighbour of another part
    if len(border) == 0:
        return
    other_b = other.reshape(4, -1)[:, border]
    pick = np.where(other_b, rng.random(other_b.shape), -1.0).argmax(axis=0)  # a random differing neighbour
    flip = rng.random(len(border)) < prob
    rows, cols = np.unravel_index(border[flip], lab.shape)
    lab[rows, cols] = neigh.reshape(4, -1)[pick[flip], border[flip]]


def _noise(c: Crop, uv_std: float, uv_scale: float, emb_std: float, rng: np.random.Generator) -> None:
    rows, cols = np.nonzero(c.mask)
    s = c.mask.shape[0]
    if uv_std and uv_scale:
        # spatially smooth: white noise blurred by a Gaussian of sigma uv_scale * S, rescaled to unit std
        field = ndimage.gaussian_filter(rng.standard_normal((2, s, s)), sigma=(0, uv_scale * s, uv_scale * s))
        field /= field.std(axis=(1, 2), keepdims=True)
        noise = (field[:, rows, cols] * uv_std).astype(np.float32)
        c.uv[:, rows, cols] = np.clip(c.uv[:, rows, cols] + noise, 0.0, 1.0)
    elif uv_std:
        noise = rng.standard_normal((2, len(rows)), dtype=np.float32) * np.float32(uv_std)
        c.uv[:, rows, cols] = np.clip(c.uv[:, rows, cols] + noise, 0.0, 1.0)
    if emb_std and c.embedding is not None:
        # spatially smooth noise (drawn on an S/4 grid, upsampled bilinearly), as a network's output errs
        d, g = c.embedding.shape[0], max(2, s // 4)
        coarse = rng.standard_normal((g, g, d), dtype=np.float32) * np.float32(emb_std)
        up = cv2.resize(coarse, (s, s), interpolation=cv2.INTER_LINEAR).reshape(s, s, d)
        c.embedding[:, rows, cols] = c.embedding[:, rows, cols].astype(np.float32) + up[rows, cols].T


def _body_point(c: Crop, rng: np.random.Generator) -> tuple[float, float]:
    """(row, col) of a random foreground pixel (the crop centre when there is none)."""
    rows, cols = np.nonzero(c.mask)
    if len(rows) == 0:
        s = c.mask.shape[0]
        return s / 2, s / 2
    k = int(rng.integers(len(rows)))
    return float(rows[k]), float(cols[k])


def _dropout(c: Crop, mean: float, radius: float, rng: np.random.Generator) -> None:
    s = c.mask.shape[0]
    count = int(rng.poisson(mean))
    if count == 0:
        return
    rr, cc = np.mgrid[0:s, 0:s].astype(np.float32)
    where = np.zeros((s, s), bool)
    for _ in range(count):
        r0, c0 = _body_point(c, rng)
        a, b = rng.uniform(0.3, 1.0, 2) * radius * s + 0.5
        t = rng.uniform(0, np.pi)
        dr, dc = rr - r0, cc - c0
        u, v = np.cos(t) * dr + np.sin(t) * dc, -np.sin(t) * dr + np.cos(t) * dc
        where |= (u / a) ** 2 + (v / b) ** 2 <= 1.0
    _clear(c, where & c.mask, MISSING_LABEL, np.nan)


def occluder_alpha(size: int, extent: float, soft: float, centre: tuple[float, float],
                   rng: np.random.Generator) -> np.ndarray:
    """(S, S) float32 alpha in [0, 1] of one random occluder shape of about ``extent`` pixels across,
    centred at ``centre`` (row, col), its edge blurred by a Gaussian of sigma ``soft`` pixels."""
    img = np.zeros((size, size), np.uint8)
    r0, c0 = centre
    half = max(1.0, extent / 2)
    kind = int(rng.integers(3))
    scale = 16  # sub-pixel vertex precision for cv2 drawing (shift = 4 bits)
    if kind == 0:  # ellipse
        axes = (int(half * scale), int(half * rng.uniform(0.4, 1.0) * scale))
        cv2.ellipse(img, (int(c0 * scale), int(r0 * scale)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1,
                    cv2.LINE_8, 4)
    else:
        if kind == 1:  # rotated rectangle
            w, h = half, half * rng.uniform(0.3, 1.0)
            pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
        else:  # random star-shaped polygon
            k = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = half * rng.uniform(0.5, 1.0, k)
            pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
        t = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        pts = pts @ rot.T + [c0, r0]
        cv2.fillPoly(img, [np.round(pts * scale).astype(np.int32)], 255, cv2.LINE_8, 4)
    alpha = img.astype(np.float32) / 255.0
    if soft > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), soft, borderType=cv2.BORDER_CONSTANT)
    return alpha


def _occlude(c: Crop, p: CorruptionParams, rng: np.random.Generator) -> None:
    if rng.random() >= p.occluder_prob:
        return
    s = c.mask.shape[0]
    extent = rng.uniform(0.4, 1.0) * p.occluder_size * s
    alpha = occluder_alpha(s, extent, p.occluder_soft, _body_point(c, rng), rng)
    covered = rng.random((s, s)) < alpha  # soft edge: covered with probability alpha
    if rng.random() < p.occluder_missing:
        _clear(c, covered & c.mask, MISSING_LABEL, np.nan)
    else:
        _clear(c, covered, 0, 0.0)
        c.mask[covered] = False
    c.occluder[covered] = True


def _copy_nearest(c: Crop, target: np.ndarray, source: np.ndarray, box: tuple = np.s_[:, :],
                  within: float = np.inf) -> None:
    """Pixels ``target`` (S, S) bool within ``within`` pixels of a ``source`` pixel take the part, U, V and
    embedding of their nearest ``source`` pixel (one distance transform finds both); ``box`` (two slices) holds
    every ``target`` and ``source`` pixel (the search stays in it)."""
    dist, (ri, ci) = ndimage.distance_transform_edt(~source[box], return_indices=True)
    take = target[box] & (dist <= within)
    r0, c0 = box[0].start or 0, box[1].start or 0
    src = (ri[take] + r0, ci[take] + c0)
    target = np.zeros_like(target)
    target[box] = take
    c.labels[target] = c.labels[src]
    c.uv[:, target] = c.uv[:, src[0], src[1]]
    if c.embedding is not None:
        c.embedding[:, target] = c.embedding[:, src[0], src[1]]


def _seam(c: Crop, px: int, rng: np.random.Generator) -> None:
    for back, front in _FRONT_BACK:
        sides = [c.labels == back, c.labels == front]
        if not (sides[0].any() and sides[1].any()):
            continue
        grow = int(rng.integers(2))
        shift = int(rng.integers(px + 1))
        if shift == 0:
            continue
        # the shrinking side's pixels within ``shift`` of the growing side, found in the segment's box (both
        # sides lie in it, so every distance and nearest pixel is the whole crop's)
        rows, cols = np.nonzero(sides[0] | sides[1])
        box = np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        _copy_nearest(c, sides[1 - grow], sides[grow], box, within=shift)


def _mirror(c: Crop, prob: float, mirror: Mirror, rng: np.random.Generator) -> None:
    before = c.labels.copy()  # segments as they were: a patch given to the left hand is not mirrored back
    for ids in _MIRRORED:
        rows, cols = np.nonzero(np.isin(before, ids))
        if len(rows) == 0 or rng.random() >= prob:
            continue
        k = int(rng.integers(len(rows)))
        share = rng.random() ** 3
        count = int(np.ceil(share * len(rows)))
        order = np.argsort((rows - rows[k]) ** 2 + (cols - cols[k]) ** 2, kind="stable")[:count]
        r, q = rows[order], cols[order]
        part = before[r, q].astype(np.int64)
        axis = mirror.axis[part]
        flip = axis < 2  # 2: the twin's chart is the same (DensePose's limbs), no coordinate flips
        c.uv[axis[flip], r[flip], q[flip]] = 1.0 - c.uv[axis[flip], r[flip], q[flip]]
        c.labels[r, q] = LR_TWIN[part]
        if c.embedding is not None:
            vertex = mirror.locator.locate(LR_TWIN[part], c.uv[:, r, q].T.astype(np.float64))
            c.embedding[:, r, q] = mirror.embedding[vertex].T


def corrupt_inplace(c: Crop, p: CorruptionParams, rng: np.random.Generator, mirror: Mirror | None = None) -> None:
    """Applies the corruptions of ``p`` to ``c``'s arrays in place (see the module docstring).

    Every random draw comes from ``rng`` (one generator per instance keeps outputs independent of
    batching). With every strength 0 nothing changes and nothing is drawn. ``mirror``: the template's
    symmetry (:func:`chart_mirror`), needed when ``p.mirror_prob`` > 0.
    """
    if is_off(p):
        return
    if p.border_px:
        _border(c, p.border_px, rng)
    if p.flip_prob:
        _flip(c, p.flip_prob, rng)
    if p.uv_noise or p.embedding_noise:
        _noise(c, p.uv_noise, p.uv_noise_scale, p.embedding_noise, rng)
    if p.dropout_blobs and p.dropout_radius:
        _dropout(c, p.dropout_blobs, p.dropout_radius, rng)
    if p.occluder_prob and p.occluder_size:
        _occlude(c, p, rng)
    if p.seam_px:
        _seam(c, p.seam_px, rng)
    if p.mirror_prob:
        if mirror is None:
            raise ValueError("corrupt_inplace: mirror_prob > 0 needs the template's Mirror (chart_mirror)")
        _mirror(c, p.mirror_prob, mirror, rng)


def corrupt(c: Crop, p: CorruptionParams, rng: np.random.Generator, mirror: Mirror | None = None) -> Crop:
    """A corrupted copy of ``c`` (``c`` is left as is); see :func:`corrupt_inplace`."""
    out = Crop(c.labels.copy(), c.uv.copy(), None if c.embedding is None else c.embedding.copy(),
               c.mask.copy(), c.occluder.copy())
    corrupt_inplace(out, p, rng, mirror)
    return out
