"""DensePose-style chart atlases: per-part UV parameterisations of a mesh.

Given any mesh and a per-face part labelling, :func:`build_atlas` maps each part to [0,1]² and
returns the ``UV_Processed``-style table of *chart points*: one row per (part, vertex) pair, so a
vertex on a part border appears once in each chart it belongs to. This is what DensePose ships for
SMPL only; here it works for any mesh (SMPL-X, scans, animals).

Each part must be a topological disk (connected, one boundary loop). It is parameterised with
libigl's least-squares conformal map; if that folds a triangle or overlaps its own boundary, with a
harmonic map onto a circle, then with Tutte's embedding (uniform weights onto a convex
boundary, which is bijective by Tutte's theorem). A part with long thin limbs (a hand with fingers) is
fold-free under Tutte's map but squeezes the fingertips' triangles to nothing (1e-15 of the chart's
area on Anny's ``notoes`` hand); last, SLIM (libigl; symmetric Dirichlet energy, boundary kept on the
circle, :data:`SLIM_ITERATIONS` steps from Tutte's map) spreads them while staying injective (convex
boundary). The chart is then rotated to its principal axes and scaled per axis onto [0,1]², which
keeps every triangle's orientation.

Size letters: ``N`` vertices, ``F`` faces, ``C`` chart points (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import igl
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pipeline.core.errors import InputError
from pipeline.geometry.mesh import MeshError, boundary_loops, edges, face_adjacency, face_areas

log = logging.getLogger(__name__)
SLIM_ITERATIONS = 30  # SLIM steps of the last fallback (Anny notoes' hands: fingertip faces 1e-15 -> 2e-8 of the chart)

__all__ = ["ChartLocator", "Atlas", "build_atlas", "parameterize_disk", "signed_uv_areas", "boundary_self_intersects",
           "atlas_from_uv_processed", "dominant_vertex_part", "square_chart", "assemble_atlas", "oriented_loop", "SQUARE_BULGE",
           "refined_atlas"]
SQUARE_BULGE = 0.03  # square_chart: each side bowed out by this (chart units): a strictly convex boundary


class Atlas(NamedTuple):
    """A chart atlas.

    chart_part: (C,) int64 part id of each chart point (1-based, as DensePose).
    chart_uv: (C, 2) float64 (U, V) in [0, 1].
    chart_vertex: (C,) int64 mesh vertex of each chart point.
    chart_faces: (F, 3) int64 each mesh face's corners as chart points of its own part.
    methods: per part id, the parameterisation used ("lscm", "harmonic", "tutte" or "slim").
    """

    chart_part: np.ndarray
    chart_uv: np.ndarray
    chart_vertex: np.ndarray
    chart_faces: np.ndarray
    methods: dict


def signed_uv_areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) signed areas of the faces in UV (positive = counter-clockwise)."""
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def boundary_self_intersects(uv: np.ndarray, loop: np.ndarray) -> bool:
    """Whether the closed polygon ``uv[loop]`` crosses itself (non-adjacent edges intersect)."""
    p = uv[loop]
    q = np.roll(p, -1, axis=0)
    n = len(p)
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))  # the first and last edges share a vertex
    i, j = i[keep], j[keep]

    def orient(a, b, c):
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    d1 = orient(p[i], q[i], p[j])
    d2 = orient(p[i], q[i], q[j])
    d3 = orient(p[j], q[j], p[i])
    d4 = orient(p[j], q[j], q[i])
    return bool(np.any((d1 * d2 < 0) & (d3 * d4 < 0)))


def _arc_length_circle(vertices: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """(len(loop), 2) points on the unit circle spaced by the loop's arc length."""
    seg = np.linalg.norm(vertices[np.roll(loop, -1)] - vertices[loop], axis=1)
    t = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum() * 2 * np.pi
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _tutte(n_v: int, faces: np.ndarray, loop: np.ndarray, circle: np.ndarray) -> np.ndarray:
    """Tutte's embedding: each interior vertex at the mean of its neighbours, boundary fixed."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = sp.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_v, n_v))
    adj = ((adj + adj.T) > 0).astype(np.float64)
    lap = sp.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
    interior = np.setdiff1d(np.arange(n_v), loop)
    uv = np.zeros((n_v, 2))
    uv[loop] = circle
    if len(interior):
        a = lap[interior][:, interior].tocsc()
        rhs = -lap[interior][:, loop] @ circle
        uv[interior] = np.column_stack([sp.linalg.spsolve(a, rhs[:, k]) for k in range(2)])
    return uv


def _valid(uv: np.ndarray, faces: np.ndarray, loop: np.ndarray, eps: float) -> bool:
    if not np.isfinite(uv).all():
        return False
    area = signed_uv_areas(uv, faces)
    if np.median(area) < 0:
        area = -area
    return bool(np.all(area > eps * np.abs(area).sum())) and not boundary_self_intersects(uv, loop)


def _normalise(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Rotates a chart to its principal axes, makes faces counter-clockwise, scales onto [0,1]²."""
    if signed_uv_areas(uv, faces).sum() < 0:
        uv = uv * np.array([-1.0, 1.0])
    centred = uv - uv.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    rot = vecs[:, ::-1]  # major axis first
    if np.linalg.det(rot) < 0:
        rot[:, 1] = -rot[:, 1]
    # make the rotation unique: the major axis points towards larger first component
    if rot[0, 0] < 0:
        rot = -rot
    uv = centred @ rot
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    return (uv - lo) / np.maximum(hi - lo, 1e-12)


def parameterize_disk(vertices: np.ndarray, faces: np.ndarray, name: str = "chart",
                      eps: float = 1e-9) -> tuple[np.ndarray, str]:
    """Maps a disk-topology mesh onto [0,1]² without folds or overlaps.

    Args:
        vertices: (N, 3) float64. faces: (F, 3) int64, every vertex used.
        name: for error messages.
        eps: a face must keep a UV area above ``eps`` times the chart's total area.
    Returns:
        uv: (N, 2) float64 in [0,1]², every face counter-clockwise; method: the map used.
    Raises:
        MeshError: the mesh is not a disk (names the chart and why).
    """
    loop = oriented_loop(faces, name)

    # LSCM, pinning the two boundary vertices farthest apart
    bv = vertices[loop]
    d = np.linalg.norm(bv[:, None] - bv[None], axis=2)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    b = np.array([loop[i], loop[j]], dtype=np.int64)
    bc = np.array([[0.0, 0.0], [1.0, 0.0]])
    try:
        uv, _ = igl.lscm(vertices, faces, b, bc)
    except Exception:  # a solver failure falls through to the next map
        uv = np.full((len(vertices), 2), np.nan)
    if _valid(uv, faces, loop, eps):
        return _normalise(uv, faces), "lscm"
    circle = _arc_length_circle(vertices, loop)
    uv = igl.harmonic(vertices, faces, loop, circle, 1)
    if _valid(uv, faces, loop, eps):
        return _normalise(uv, faces), "harmonic"
    uv = _tutte(len(vertices), faces, loop, circle)
    if _valid(uv, faces, loop, eps):
        return _normalise(uv, faces), "tutte"
    area = signed_uv_areas(uv, faces)
    if np.all(np.sign(area) == np.sign(np.median(area))):  # fold-free, only too thin: SLIM can spread it
        slim = igl.slim_precompute(vertices, faces.astype(np.int32), uv, igl.MappingEnergyType.SYMMETRIC_DIRICHLET,
                                   loop.astype(np.int32), circle, 1e5)
        uv = igl.slim_solve(slim, SLIM_ITERATIONS)
        if _valid(uv, faces, loop, eps):
            return _normalise(uv, faces), "slim"
    raise MeshError(f"{name}: no fold-free parameterisation found (degenerate triangles?)")


def oriented_loop(faces: np.ndarray, name: str = "chart") -> np.ndarray:
    """(b,) int64 the one boundary loop of a disk, in the faces' orientation (counter-clockwise around the disk
    seen from the side its faces are counter-clockwise from).

    Args:
        faces: (F, 3) int64, every vertex 0..max used. name: for error messages.
    Raises:
        MeshError: the mesh is not a disk: several pieces, not one boundary loop, or handles (Euler
            characteristic not 1); the message names the chart and why.
    """
    n_comp, _ = connected_components(face_adjacency(faces), directed=False)
    if n_comp != 1:
        raise MeshError(f"{name}: is {n_comp} pieces, a chart must be one connected disk")
    loops = boundary_loops(faces)
    if len(loops) != 1:
        raise MeshError(f"{name}: has {len(loops)} boundary loops, a chart must be a disk (exactly one)")
    euler = int(faces.max()) + 1 - len(edges(faces)[0]) + len(faces)
    if euler != 1:
        raise MeshError(f"{name}: Euler characteristic {euler}, a disk has 1 (the part has handles)")
    return loops[0]


def _polyline_points(chain: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(len(t), 2) the points at arc-length fractions ``t`` (in [0, 1]) along the polyline ``chain`` (k, 2)."""
    seg = np.linalg.norm(np.diff(chain, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)]) / max(seg.sum(), 1e-12)
    return np.stack([np.interp(t, s, chain[:, k]) for k in range(2)], axis=1)


def square_chart(vertices: np.ndarray, faces: np.ndarray, loop: np.ndarray, corners: np.ndarray,
                 outline: np.ndarray | None = None, outline_corners: np.ndarray | None = None,
                 stops: tuple = (), bulge: float = SQUARE_BULGE, name: str = "chart",
                 eps: float = 1e-9) -> tuple[np.ndarray, str]:
    """Maps a disk into [0,1]² with four given boundary vertices at four corners of a target outline: a chart
    whose edges each meet a chosen stretch of the part's border (DensePose's limbs, torso and head).

    Each side's boundary vertices are spaced by arc length between its corners along the ``outline``
    polygon (DensePose's chart outline); the interior is the cotangent-harmonic map, or Tutte's embedding
    where that folds. A non-convex outline can still fold both: then the unit square, each side bowed
    outwards by ``bulge`` (strictly convex, so Tutte's embedding is fold-free and no boundary triangle is flat),
    bent bilinearly onto the outline's four corners.

    Args:
        vertices: (N, 3) float64. faces: (F, 3) int64, a disk using every vertex.
        loop: (b,) int64 its boundary loop, in the order that is to run counter-clockwise in (U, V).
        corners: (4,) int positions in ``loop`` (increasing) of the vertices that go to the outline's corners.
        outline: (K, 2) float counter-clockwise polygon in [0,1]² (None: the square). outline_corners: (4,) int
            increasing indices into ``outline`` of its corners, the first 0.
        stops: more landmarks on the sides: ``(loop position, side, fraction)``, the vertex that goes to that
            fraction of side ``side``'s length (side k runs from corner k to corner k + 1); between landmarks
            the border is spaced by arc length.
        name: for error messages. eps: smallest face area kept, as a share of the chart's.
    Returns:
        uv: (N, 2) float64 in [0,1]²; method: "harmonic" or "tutte", with "-corners" where the outline folded
        and the square was bent bilinearly onto the outline's four corners, "-square" where even that folded.
    Raises:
        MeshError: corners not increasing along the loop, or no fold-free map.
    """
    corners = np.asarray(corners, np.int64)
    if corners.shape != (4,) or np.any(np.diff(corners) <= 0) or corners[0] < 0 or corners[-1] >= len(loop):
        raise MeshError(f"{name}: corners {corners.tolist()} must be 4 increasing positions on its "
                        f"{len(loop)}-vertex border")
    seg = np.linalg.norm(vertices[np.roll(loop, -1)] - vertices[loop], axis=1)
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    outward = np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])

    ends = list(corners) + [corners[0] + len(loop)]
    marks = {side: [(ends[side], 0.0)] for side in range(4)}
    for pos, side, frac in stops:
        pos = pos + (len(loop) if side == 3 and pos < corners[0] + 1 else 0)
        if not ends[side] < pos < ends[side + 1] or not 0.0 < frac < 1.0:
            raise MeshError(f"{name}: landmark at border position {pos} is not inside side {side} "
                            f"({ends[side]}..{ends[side + 1]}) or its fraction {frac} not in (0, 1)")
        marks[side].append((pos, frac))
    for side in range(4):
        marks[side] = sorted(marks[side]) + [(ends[side + 1], 1.0)]
        if np.any(np.diff([f for _, f in marks[side]]) <= 0):
            raise MeshError(f"{name}: the landmarks of side {side} are not in border order")

    def border(chain_of_side) -> np.ndarray:
        target = np.zeros((len(loop), 2))
        for side in range(4):
            for (start, f0), (stop, f1) in zip(marks[side][:-1], marks[side][1:]):
                idx = np.arange(start, stop + 1) % len(loop)
                length = np.concatenate([[0.0], np.cumsum(seg[idx[:-1]])])
                t = f0 + (f1 - f0) * length[:-1] / max(length[-1], 1e-12)
                target[idx[:-1]] = chain_of_side(side, t)
        return target

    def bowed(side, t):
        a, b = square[side], square[(side + 1) % 4]
        return (a + t[:, None] * (b - a) + bulge * 4 * (t * (1 - t))[:, None] * outward[side] + bulge) / (1 + 2 * bulge)

    def solve(target):
        uv = igl.harmonic(vertices, faces, loop, target, 1)
        if _valid(uv, faces, loop, eps):
            return uv, "harmonic"
        uv = _tutte(len(vertices), faces, loop, target)
        return (uv, "tutte") if _valid(uv, faces, loop, eps) else (None, "")

    if outline is not None:
        outline = np.asarray(outline, np.float64)
        oc = list(np.asarray(outline_corners, np.int64)) + [len(outline)]
        closed = np.vstack([outline, outline[:1]])
        uv, method = solve(border(lambda side, t: _polyline_points(closed[oc[side]:oc[side + 1] + 1], t)))
        if uv is not None:
            return np.clip(uv, 0.0, 1.0), method
    uv, method = solve(border(bowed))
    if uv is None:
        raise MeshError(f"{name}: no fold-free map onto its outline or the square (degenerate triangles?)")
    if outline is not None:  # the outline folds: the square, bent bilinearly onto the outline's corners
        quad = outline[np.asarray(outline_corners, np.int64)]
        a, b, c, d = quad
        bent = ((1 - uv[:, :1]) * (1 - uv[:, 1:]) * a + uv[:, :1] * (1 - uv[:, 1:]) * b
                + uv[:, :1] * uv[:, 1:] * c + (1 - uv[:, :1]) * uv[:, 1:] * d)
        if _valid(bent, faces, loop, eps):
            return np.clip(bent, 0.0, 1.0), method + "-corners"
        method += "-square"
    return np.clip(uv, 0.0, 1.0), method


def build_atlas(vertices: np.ndarray, faces: np.ndarray, face_part: np.ndarray,
                parts: np.ndarray | None = None) -> Atlas:
    """Builds a ``UV_Processed``-style atlas from a per-face part labelling.

    Args:
        vertices: (N, 3) float. faces: (F, 3) int.
        face_part: (F,) int part id of each face (e.g. 1..24).
        parts: the part ids expected to be present (default: those in ``face_part``); a missing
            one is an error.
    Returns:
        the :class:`Atlas`; chart points are ordered by part, then by vertex id.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    face_part = np.asarray(face_part, dtype=np.int64)
    if face_part.shape != (len(faces),):
        raise InputError(f"face_part must have shape ({len(faces)},), got {face_part.shape}")
    present = np.unique(face_part)
    parts = present if parts is None else np.asarray(parts)
    missing = np.setdiff1d(parts, present)
    if len(missing):
        raise MeshError(f"parts {missing.tolist()} have no faces")
    extra = np.setdiff1d(present, parts)
    if len(extra):
        raise MeshError(f"faces carry unexpected part ids {extra.tolist()}")

    return assemble_atlas(faces, face_part, parts,
                          lambda p, used, local: parameterize_disk(vertices[used], local, name=f"part {int(p)}"))


def assemble_atlas(faces: np.ndarray, face_part: np.ndarray, parts, chart_of) -> Atlas:
    """The :class:`Atlas` of charts made part by part.

    Args:
        faces: (F, 3) int64. face_part: (F,) int64 part of each face. parts: the part ids, in order.
        chart_of: ``(part, used, local) -> (uv, method)``, given the part's vertices ``used`` (n,) int64 (mesh
            ids, sorted) and its faces ``local`` (f, 3) int64 in indices of ``used``; ``uv`` (n, 2) float.
    Returns:
        the atlas: chart points ordered by part, then vertex id.
    """
    chart_part, chart_uv, chart_vertex = [], [], []
    chart_faces = np.empty_like(faces)
    methods = {}
    offset = 0
    for p in parts:
        sel = np.flatnonzero(face_part == p)
        if len(sel) == 0:
            raise MeshError(f"part {int(p)} has no faces")
        used, local = np.unique(faces[sel], return_inverse=True)
        local = local.reshape(-1, 3)
        uv, methods[int(p)] = chart_of(int(p), used, local)
        chart_part.append(np.full(len(used), p, dtype=np.int64))
        chart_uv.append(uv)
        chart_vertex.append(used)
        chart_faces[sel] = local + offset
        offset += len(used)
    return Atlas(np.concatenate(chart_part), np.concatenate(chart_uv), np.concatenate(chart_vertex).astype(np.int64),
                 chart_faces, methods)


def dominant_vertex_part(vertices: np.ndarray, faces: np.ndarray, face_part: np.ndarray) -> np.ndarray:
    """(N,) int64: each vertex's part, the one covering most area around it (ties: lowest id)."""
    area = face_areas(vertices, faces)
    n_parts = int(face_part.max()) + 1
    acc = np.zeros((len(vertices), n_parts))
    for i in range(3):
        np.add.at(acc, (faces[:, i], face_part), area)
    return np.argmax(acc, axis=1).astype(np.int64)


def atlas_from_uv_processed(all_vertices: np.ndarray, all_faces: np.ndarray, face_indices: np.ndarray,
                            u_norm: np.ndarray, v_norm: np.ndarray) -> tuple[np.ndarray, Atlas]:
    """Reads DensePose's ``UV_Processed.mat`` tables (1-based) into mesh faces and an :class:`Atlas`.

    Args:
        all_vertices: (C,) 1-based mesh vertex of each chart point (``All_vertices``).
        all_faces: (F, 3) 1-based chart point ids of each face (``All_Faces``).
        face_indices: (F,) part id 1..24 of each face (``All_FaceIndices``).
        u_norm, v_norm: (C,) chart coordinates (``All_U_norm``, ``All_V_norm``).
    Returns:
        faces: (F, 3) int64 0-based mesh faces; the atlas (methods empty: given, not computed).
    """
    chart_vertex = np.asarray(all_vertices).ravel().astype(np.int64) - 1
    chart_faces = np.asarray(all_faces).astype(np.int64) - 1
    face_part = np.asarray(face_indices).ravel().astype(np.int64)
    uv = np.stack([np.asarray(u_norm).ravel(), np.asarray(v_norm).ravel()], axis=1).astype(np.float64)
    n_c = len(chart_vertex)
    if chart_faces.ndim != 2 or chart_faces.shape[1] != 3 or chart_faces.min() < 0 or chart_faces.max() >= n_c:
        raise MeshError(f"All_Faces must be (F, 3) 1-based indices into {n_c} chart points")
    if face_part.shape != (len(chart_faces),) or face_part.min() < 1 or face_part.max() > 24:
        raise MeshError("All_FaceIndices must hold one part id in 1..24 per face")
    if uv.shape[0] != n_c:
        raise MeshError(f"All_U_norm/All_V_norm must have {n_c} entries, got {uv.shape[0]}")
    chart_part = np.zeros(n_c, dtype=np.int64)
    for k in range(3):
        chart_part[chart_faces[:, k]] = face_part
    # a chart point must not be shared by faces of two parts
    for k in range(3):
        if np.any(chart_part[chart_faces[:, k]] != face_part):
            raise MeshError("a chart point is used by faces of two parts")
    return chart_vertex[chart_faces], Atlas(chart_part, uv, chart_vertex, chart_faces, {})


def refined_atlas(chart_part: np.ndarray, chart_uv: np.ndarray, chart_vertex: np.ndarray, chart_faces: np.ndarray,
                  vertices: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same charts sampled finer: each chart triangle's points at barycentric steps of 1 / ``level``, each point
    the same barycentric mix of its triangle's mesh vertices. A :class:`ChartLocator` over them reads a chart
    coordinate as (about) the surface point the chart names, within an edge / ``level``, not as the nearest vertex:
    what the charts say, apart from the template's resolution. A point on an edge or vertex shared by several
    triangles or charts is one point (so parts that meet still share points).

    Args:
        chart_part: (C,) int part of each chart point. chart_uv: (C, 2) float. chart_vertex: (C,) int mesh vertex.
        chart_faces: (F, 3) int chart points of each triangle (one chart each). vertices: (N, 3) float mesh.
        level: 1 gives back the chart points themselves (each vertex once per chart).
    Returns:
        part (C',) int, uv (C', 2) float64, point (C',) int64 index into ``points``, points (P, 3) float64.
    """
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    f = np.asarray(chart_faces, np.int64)
    w = np.array([(i, j, level - i - j) for i in range(level + 1) for j in range(level + 1 - i)], np.int64)  # (Q, 3)
    mesh = np.asarray(chart_vertex, np.int64)[f]  # (F, 3)
    weights = np.broadcast_to(w[None], (len(f), len(w), 3))
    ids = np.where(weights > 0, mesh[:, None, :], -1)  # a vertex with weight 0 is no part of the point
    order = np.argsort(ids, axis=-1, kind="stable")
    key = np.concatenate([np.take_along_axis(ids, order, -1), np.take_along_axis(weights, order, -1)], -1)
    _, first, point = np.unique(key.reshape(-1, 6), axis=0, return_index=True, return_inverse=True)
    mix = np.einsum("qk,fkc->fqc", w / level, np.asarray(vertices, np.float64)[mesh]).reshape(-1, 3)
    uv = np.einsum("qk,fkc->fqc", w / level, np.asarray(chart_uv, np.float64)[f]).reshape(-1, 2)
    part = np.repeat(np.asarray(chart_part)[f[:, 0]], len(w))
    _, keep = np.unique(np.stack([part, point.ravel()], 1), axis=0, return_index=True)  # one row per (part, point)
    keep = np.sort(keep)
    return part[keep], uv[keep], point.ravel()[keep].astype(np.int64), mix[first]


class ChartLocator:
    """The mesh vertex of the chart point nearest to a chart coordinate ``(U, V)`` within a part: DensePose's
    dense correspondence read back onto the mesh (one k-d tree per part over its chart points).

    Args:
        chart_part: (C,) int part 1..``n_parts`` of each chart point. chart_uv: (C, 2) float (U, V).
        chart_vertex: (C,) int mesh vertex of each chart point. n_parts: parts that must all have points.
    """

    def __init__(self, chart_part: np.ndarray, chart_uv: np.ndarray, chart_vertex: np.ndarray, n_parts: int = 24):
        self.trees, self.vertices = {}, {}
        for p in range(1, n_parts + 1):
            sel = np.flatnonzero(chart_part == p)
            if len(sel) == 0:
                raise InputError(f"template atlas has no chart points for part {p}")
            self.trees[p] = cKDTree(chart_uv[sel].astype(np.float64))
            self.vertices[p] = chart_vertex[sel]

    def vertices_of(self, part: int, uv: np.ndarray) -> np.ndarray:
        """(P,) vertex of the nearest chart point of ``part`` to each row of ``uv`` (P, 2) float (U, V)."""
        _, nearest = self.trees[part].query(np.asarray(uv, np.float64))
        return self.vertices[part][nearest]

    def locate(self, labels: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """(P,) int64 vertex of each pixel: ``labels`` (P,) int part (0: background -> -1), ``uv`` (P, 2)."""
        out = np.full(len(labels), -1, np.int64)
        for p in np.unique(labels[labels > 0]):
            sel = labels == p
            out[sel] = self.vertices_of(int(p), uv[sel])
        return out
