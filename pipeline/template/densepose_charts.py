"""Charts in DensePose's convention on any body labelled with DensePose's 24 parts (``template.charts:
densepose``), so that real DensePose output names the right template points (METHOD.md §1).

Each limb half, torso half and head half goes onto the unit square with the four corners DensePose's chart
gives it (:mod:`pipeline.template.densepose_layout`, measured on DensePose's own output and atlas): the
stretches of the part's border that meet its proximal segment, its distal segment and its front/back (or
left/right) twin each land on the chart edge where DensePose puts them, spaced by arc length, the interior
harmonic or Tutte (fold-free). The corners are found on the mesh from the parts alone: where the border
leaves or enters the stretch it shares with a given neighbour, and for the head's two top corners, the
midline points at fixed angles about the head's centre. Hands and feet are laid flat (the chart
:func:`~pipeline.geometry.charts.parameterize_disk` gives them), turned so that the fingers or toes point
where DensePose's do and mirrored to DensePose's orientation.

Size letters: ``N`` vertices, ``F`` faces, ``C`` chart points (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.geometry.charts import (Atlas, assemble_atlas, oriented_loop, parameterize_disk, signed_uv_areas,
                                      square_chart)
from pipeline.geometry.mesh import MeshError
from pipeline.template.densepose_layout import (END_TIP, HEAD_CORNER_ANGLES, LIMB_PROXIMAL_AT_U1, ORIENTATION,
                                                OUTLINE, OUTLINE_CORNERS, PROXIMAL, TORSO_ARMPIT_U, TORSO_NECK_V)
from pipeline.template.file import N_PARTS, SEGMENTS

__all__ = ["densepose_atlas", "symmetric_outline", "border_neighbours", "longest_run"]

_SEGMENT_OF = {p: name for name, ids in SEGMENTS.items() for p in ids}
_LEFT_LEG, _RIGHT_LEG = set(SEGMENTS["left upper leg"]), set(SEGMENTS["right upper leg"])
_LEFT_ARM, _RIGHT_ARM = set(SEGMENTS["left upper arm"]), set(SEGMENTS["right upper arm"])
_HEAD, _TORSO = set(SEGMENTS["head"]), set(SEGMENTS["torso"])
# an end chart's tip nearer than this to the chart's centre (0.5, 0.5) cannot say which of the four turns is right
END_TIP_MIN_REACH = 0.05
log = logging.getLogger(__name__)


def border_neighbours(faces: np.ndarray, face_part: np.ndarray, part: int, loop: np.ndarray) -> np.ndarray:
    """(b,) int64 the part across each border edge ``loop[i] -> loop[i + 1]`` of ``part`` (0: the mesh's own
    border). ``faces`` (F, 3) and ``loop`` (b,) use the whole mesh's vertex ids."""
    n = int(faces.max()) + 1
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    other = np.tile(face_part, 3) != part
    lookup = dict(zip(key[other].tolist(), np.tile(face_part, 3)[other].tolist()))
    a, b = loop, np.roll(loop, -1)
    want = np.minimum(a, b) * n + np.maximum(a, b)
    return np.array([lookup.get(int(k), 0) for k in want], dtype=np.int64)


def longest_run(mask: np.ndarray) -> tuple[int, int] | None:
    """The longest cyclic run of True in ``mask`` (b,) bool: (first index, length), or None if none is True."""
    b = len(mask)
    if not mask.any():
        return None
    if mask.all():
        return 0, b
    start = int(np.flatnonzero(~mask)[0]) + 1  # begin just after a False: no run wraps past the start
    best, cur, cur_start = (0, 0), 0, 0
    for i in range(b):
        j = (start + i) % b
        if mask[j]:
            if cur == 0:
                cur_start = j
            cur += 1
            if cur > best[1]:
                best = (cur_start, cur)
        else:
            cur = 0
    return best


def _run_ends(classes: np.ndarray, which: set, name: str) -> tuple[int, int]:
    """Loop positions where the border enters and leaves its longest stretch of edges with a class in ``which``."""
    run = longest_run(np.isin(classes, list(which)))
    if run is None:
        raise MeshError(f"{name}: its border meets none of parts {sorted(which)}, which DensePose's chart puts on "
                        "one of its edges")
    start, length = run
    return start, (start + length) % len(classes)


def _square_corners(vertices, faces, face_part, part, loop, up, forward, name) -> tuple[np.ndarray, list]:
    """(4,) loop positions of the vertices at (0, 0), (1, 0), (1, 1), (0, 1) of ``part``'s chart, and the
    landmarks between them (``(loop position, side, fraction)``, :func:`~pipeline.geometry.charts.square_chart`)."""
    nb = border_neighbours(faces, face_part, part, loop)
    segment = _SEGMENT_OF[part]
    if segment == "torso":
        # corners: the shoulder ends of the armholes and the outer ends of the hip seams; the armpits on the
        # side edges and the neck on the U = 0 edge where DensePose has them
        enter_head, leave_head = _run_ends(nb, _HEAD, name)
        enter_left_arm, leave_left_arm = _run_ends(nb, _LEFT_ARM, name)
        enter_left, _ = _run_ends(nb, _LEFT_LEG, name)
        _, leave_right = _run_ends(nb, _RIGHT_LEG, name)
        enter_right_arm, leave_right_arm = _run_ends(nb, _RIGHT_ARM, name)
        armpit, (neck_lo, neck_hi) = TORSO_ARMPIT_U[part], TORSO_NECK_V[part]
        stops = [(leave_left_arm, 0, armpit), (enter_right_arm, 2, 1.0 - armpit),
                 (enter_head, 3, 1.0 - neck_hi), (leave_head, 3, 1.0 - neck_lo)]
        return np.array([enter_left_arm, enter_left, leave_right, leave_right_arm]), stops
    if segment == "head":
        enter_torso, leave_torso = _run_ends(nb, _TORSO, name)
        vb = vertices[loop]
        if (vb[leave_torso] - vb[enter_torso]) @ forward * (1 if part == 23 else -1) <= 0:
            raise MeshError(f"{name}: its neck seam runs the wrong way for DensePose's head chart (the part "
                            "labels or the body's forward direction disagree with DensePose's convention)")
        # the midline from leave_torso round to enter_torso: 23 goes up the face first, 24 up the back
        arc = (leave_torso + np.arange((enter_torso - leave_torso) % len(loop) + 1)) % len(loop)
        head = vertices[np.unique(faces[face_part == part])]
        height = head @ up
        centre = head[height >= np.quantile(height, 0.4)].mean(axis=0)
        rel = vertices[loop[arc]] - centre
        angle = np.degrees(np.arctan2(rel @ up, rel @ forward))  # 0 forward, 90 up, 180 back
        angle = np.where(angle < -90, angle + 360, angle)  # the back of the neck stays near 180..270
        first, second = HEAD_CORNER_ANGLES if part == 23 else HEAD_CORNER_ANGLES[::-1]
        i = int(np.argmin(np.abs(angle - first)))
        j = i + 1 + int(np.argmin(np.abs(angle[i + 1:] - second))) if i + 1 < len(arc) else len(arc) - 1
        return np.array([enter_torso, leave_torso, arc[i], arc[min(j, len(arc) - 1)]]), []
    proximal = set(SEGMENTS[PROXIMAL[part]])
    distal = set(range(1, N_PARTS + 1)) - proximal - set(SEGMENTS[segment])
    enter_prox, leave_prox = _run_ends(nb, proximal, name)
    enter_dist, leave_dist = _run_ends(nb, distal, name)
    if part in LIMB_PROXIMAL_AT_U1:  # proximal edge U = 1: (0,0) ends the distal stretch
        return np.array([leave_dist, enter_prox, leave_prox, enter_dist]), []
    return np.array([leave_prox, enter_dist, leave_dist, enter_prox]), []


def symmetric_outline(part: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) the outline ``part``'s chart is laid in and (4,) its corners' indices (:data:`OUTLINE`), made as
    left/right symmetric as the body: DensePose's limb twins share one chart, so their atlas tiles are used as
    measured (they agree); the left head half's outline is the right one's mirrored in U; a torso half, its own
    mirror image, gets the quadrilateral of its four corners averaged with their mirror images in V."""
    outline, corners = np.asarray(OUTLINE[part], np.float64), np.asarray(OUTLINE_CORNERS[part], np.int64)
    if part == 24:
        right, rc = np.asarray(OUTLINE[23], np.float64), np.asarray(OUTLINE_CORNERS[23], np.int64)
        k = len(right)
        mirrored = (right * np.array([-1.0, 1.0]) + np.array([1.0, 0.0]))[::-1]  # counter-clockwise again
        start = k - 1 - rc[1]  # 23's (1, 0) corner is 24's (0, 0)
        order = [k - 1 - rc[1], k - 1 - rc[0], k - 1 - rc[3], k - 1 - rc[2]]
        return np.roll(mirrored, -start, axis=0), np.array([(c - start) % k for c in order])
    if part in SEGMENTS["torso"]:
        c = outline[corners]  # (0,0), (1,0), (1,1), (0,1): (0,0) mirrors (0,1), (1,0) mirrors (1,1)
        low = (c[[0, 1]] + c[[3, 2]] * np.array([1.0, -1.0]) + np.array([0.0, 1.0])) / 2
        high = low * np.array([1.0, -1.0]) + np.array([0.0, 1.0])
        return np.array([low[0], low[1], high[1], high[0]]), np.arange(4)
    return outline, corners


def _end_chart(vertices, faces, part, name) -> tuple[np.ndarray, str]:
    """A hand's or foot's flat chart, mirrored to DensePose's orientation and turned so its tip (the vertex
    farthest from the wrist or ankle) lies nearest to where DensePose's fingers or toes point."""
    uv, method = parameterize_disk(vertices, faces, name=name)
    if np.sign(signed_uv_areas(uv, faces).sum()) != ORIENTATION[part]:
        uv = uv * np.array([-1.0, 1.0]) + np.array([1.0, 0.0])
    loop = oriented_loop(faces, name)
    tip = int(np.argmax(np.linalg.norm(vertices - vertices[loop].mean(axis=0), axis=1)))
    reach = float(np.linalg.norm(uv[tip] - 0.5))
    # measured: `notoes` hands 0.03, feet 0.02; `notoes_collapse5pc` hands 0.08; the default 0.18
    if reach < END_TIP_MIN_REACH:
        log.warning("%s: its tip lies %.2f from the flat chart's centre, where no turn brings it nearer DensePose's "
                    "fingers or toes: this chart's turn is arbitrary (a dense hand or foot flattened from its rim "
                    "puts every fingertip near the centre; docs/results.md)", name, reach)
    best, best_d = uv, np.inf
    for k in range(4):  # the rotations of the square keep the orientation
        c, s = np.cos(k * np.pi / 2), np.sin(k * np.pi / 2)
        turned = np.clip((uv - 0.5) @ np.array([[c, s], [-s, c]]) + 0.5, 0.0, 1.0)
        d = np.linalg.norm(turned[tip] - np.asarray(END_TIP[part]))
        if d < best_d - 1e-9:
            best, best_d = turned, d
    return best, method


def densepose_atlas(vertices: np.ndarray, faces: np.ndarray, face_part: np.ndarray, up: np.ndarray,
                    forward: np.ndarray) -> Atlas:
    """The 24 charts in DensePose's convention.

    Args:
        vertices: (N, 3) float, faces counter-clockwise seen from outside. faces: (F, 3) int.
        face_part: (F,) int DensePose part 1..24 of each face (each part one disk).
        up, forward: (3,) the body's up and facing directions.
    Returns:
        the :class:`~pipeline.geometry.charts.Atlas` (chart points ordered by part, then vertex id);
        ``methods`` says per part which map was used ("harmonic"/"tutte" onto the square; an end's own).
    Raises:
        MeshError: a part is not a disk, or its border does not meet the neighbours DensePose's chart expects.
    """
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    face_part = np.asarray(face_part, np.int64)
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    forward = np.asarray(forward, np.float64) / np.linalg.norm(forward)

    def chart_of(p: int, used: np.ndarray, local: np.ndarray) -> tuple[np.ndarray, str]:
        name = f"part {p}"
        if p in END_TIP:
            return _end_chart(vertices[used], local, p, name)
        loop = oriented_loop(local, name)
        if ORIENTATION[p] < 0:
            loop = loop[::-1]
        corners, stops = _square_corners(vertices, faces, face_part, p, used[loop], up, forward, name)
        loop = np.roll(loop, -corners[0])
        stops = [((pos - corners[0]) % len(loop), side, f) for pos, side, f in stops]
        corners = (corners - corners[0]) % len(loop)
        return square_chart(vertices[used], local, loop, corners, *symmetric_outline(p), stops, name=name)

    return assemble_atlas(faces, face_part, range(1, N_PARTS + 1), chart_of)
