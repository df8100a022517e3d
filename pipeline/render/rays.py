"""Rendering posed bodies with exact dense correspondence by ray casting (NVIDIA Warp).

For every crop pixel a ray through its centre (METHOD.md §2 crop geometry) is cast against the
body's mesh with ``wp.mesh_query_ray`` (a BVH query; the same kernel runs on CPU and CUDA). The hit
face and its barycentrics give everything else exactly: part ``I`` = the face's part, ``U, V`` =
the barycentric blend of the face's chart coordinates, the CSE embedding = the blend of its
vertices' embeddings, foreground = hit, depth = camera-frame z of the hit point.

Per-vertex visibility is a 3D test (references/002 §2.2): vertex k is visible iff the ray from it
toward the camera (the camera centre in perspective, the reverse optical axis in orthographic),
started ``tol`` metres off the surface, hits nothing.

Warp's barycentrics: a hit at ``u p0 + v p1 + (1 - u - v) p2`` of the face's corners.
Size letters: ``n`` instances, ``G`` bodies, ``N`` vertices, ``F`` faces, ``C`` chart points, ``S`` crop
side, ``D`` embedding dims, ``P`` foreground pixels (legend: :mod:`pipeline`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.dispatch import start_warp
from pipeline.geometry.cameras import Cameras

wp = start_warp()  # quiet (no greeting, no no-CUDA-driver warning), CPU kernels for the pinned dispatch

__all__ = ["Hits", "SurfaceMaps", "BodyMeshes", "cast_crops", "vertex_visibility", "surface_maps",
           "surface_maps_reference", "warp_device"]

wp.config.quiet = True
_MAX_T = 1.0e6


def warp_device(device: str, local_rank: int = 0) -> str:
    """Warp device for a params device: ``auto`` -> CUDA when present, else CPU; a GPU is the
    ``local_rank``-th (one a process under torchrun)."""
    wp.init()
    if device == "auto":
        return f"cuda:{local_rank}" if wp.is_cuda_available() else "cpu"
    if device == "cuda":
        if not wp.is_cuda_available():
            raise InputError("common.device = cuda, but Warp finds no CUDA device: set common.device to auto or cpu")
        return f"cuda:{local_rank}"
    return "cpu"


class BodyMeshes:
    """Warp meshes (BVHs) of G posed bodies sharing one face list, kept alive for the kernels.

    Args:
        vertices: (G, N, 3) body-frame metres. faces: (F, 3) int. device: Warp device.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, device: str = "cpu"):
        self.device = device
        idx = wp.array(np.ascontiguousarray(faces, np.int32).ravel(), dtype=wp.int32, device=device)
        self.points = wp.array(np.ascontiguousarray(vertices, np.float32), dtype=wp.vec3, device=device)  # (G, N)
        self.meshes = [wp.Mesh(points=self.points[b], indices=idx) for b in range(len(vertices))]
        self.ids = wp.array(np.array([m.id for m in self.meshes], np.uint64), dtype=wp.uint64, device=device)
        self._idx = idx


@wp.kernel
def _cast_kernel(offset: int, meshes: wp.array(dtype=wp.uint64), body: wp.array(dtype=wp.int32),
                 rotation: wp.array(dtype=wp.mat33), centre: wp.array(dtype=wp.vec3),
                 focal: wp.array(dtype=float), principal: wp.array(dtype=wp.vec2), box: wp.array(dtype=wp.vec4),
                 ortho: int, size: int, max_t: float,
                 face: wp.array3d(dtype=wp.int32), bary: wp.array3d(dtype=wp.vec2),
                 depth: wp.array3d(dtype=float)):
    i, r, c = wp.tid()
    i = i + offset
    b = box[i]
    x = b[0] + (float(c) + 0.5) * (b[2] - b[0]) / float(size)
    y = b[1] + (float(r) + 0.5) * (b[3] - b[1]) / float(size)
    xc = (x - principal[i][0]) / focal[i]
    yc = (y - principal[i][1]) / focal[i]
    o_cam = wp.vec3(0.0, 0.0, 0.0)
    d_cam = wp.normalize(wp.vec3(xc, yc, 1.0))
    if ortho != 0:
        o_cam = wp.vec3(xc, yc, 0.0)
        d_cam = wp.vec3(0.0, 0.0, 1.0)
    rt = wp.transpose(rotation[i])
    q = wp.mesh_query_ray(meshes[body[i]], rt * o_cam + centre[i], rt * d_cam, max_t)
    if q.result:
        face[i, r, c] = q.face
        bary[i, r, c] = wp.vec2(q.u, q.v)
        depth[i, r, c] = o_cam[2] + q.t * d_cam[2]
    else:
        face[i, r, c] = -1
        bary[i, r, c] = wp.vec2(0.0, 0.0)
        depth[i, r, c] = 0.0


@wp.kernel
def _visibility_kernel(offset: int, meshes: wp.array(dtype=wp.uint64), body: wp.array(dtype=wp.int32),
                       points: wp.array2d(dtype=wp.vec3), rotation: wp.array(dtype=wp.mat33),
                       centre: wp.array(dtype=wp.vec3), ortho: int, tol: float,
                       visible: wp.array2d(dtype=wp.bool)):
    i, k = wp.tid()
    i = i + offset
    p = points[body[i], k]
    rt = wp.transpose(rotation[i])
    d = rt * wp.vec3(0.0, 0.0, -1.0)
    max_t = float(1.0e6)
    if ortho == 0:
        to_cam = centre[i] - p
        max_t = wp.length(to_cam)
        d = to_cam / max_t
    q = wp.mesh_query_ray(meshes[body[i]], p + tol * d, d, max_t - tol)
    visible[i, k] = not q.result


def _launch(kernel, n: int, rest: tuple[int, ...], device: str, inputs: list) -> None:
    """Launches ``kernel`` over (n, *rest); on CPU split by instance over threads (Warp's CPU launches
    are serial, but release the GIL). Each instance is computed alike whatever the split."""
    wp.load_module(kernel.module, device=device)  # compile once, before any thread launches
    threads = 1 if device != "cpu" else max(1, min(_cpu_threads(), n))
    bounds = [n * k // threads for k in range(threads + 1)]

    def run(k: int) -> None:
        if bounds[k + 1] > bounds[k]:
            wp.launch(kernel, dim=(bounds[k + 1] - bounds[k], *rest), device=device, inputs=[bounds[k], *inputs])

    if threads == 1:
        run(0)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Hits:
    """Per crop pixel: ``face`` (n, S, S) int32 (-1 = background), ``bary`` (n, S, S, 2) float32
    (Warp's u, v), ``depth`` (n, S, S) float32 camera-frame z in metres (0 on background)."""

    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray


def _camera_arrays(cameras: Cameras, device: str):
    return (wp.array(np.ascontiguousarray(cameras.rotation, np.float32), dtype=wp.mat33, device=device),
            wp.array(np.ascontiguousarray(cameras.centre, np.float32), dtype=wp.vec3, device=device))


def cast_crops(meshes: BodyMeshes, body: np.ndarray, cameras: Cameras, boxes: np.ndarray, size: int) -> Hits:
    """Casts one ray per crop pixel of each instance.

    Args:
        meshes: the posed bodies. body: (n,) int index of each instance's body in ``meshes``.
        cameras: n cameras. boxes: (n, 4) image-pixel boxes. size: S.
    """
    dev = meshes.device
    n = len(body)
    rot, cen = _camera_arrays(cameras, dev)
    face = wp.empty((n, size, size), dtype=wp.int32, device=dev)
    bary = wp.empty((n, size, size), dtype=wp.vec2, device=dev)
    depth = wp.empty((n, size, size), dtype=float, device=dev)
    _launch(_cast_kernel, n, (size, size), dev, [
        meshes.ids, wp.array(np.asarray(body, np.int32), dtype=wp.int32, device=dev), rot, cen,
        wp.array(np.asarray(cameras.focal, np.float32), dtype=float, device=dev),
        wp.array(np.asarray(cameras.principal, np.float32), dtype=wp.vec2, device=dev),
        wp.array(np.asarray(boxes, np.float32), dtype=wp.vec4, device=dev),
        int(cameras.projection == "orthographic"), size, _MAX_T, face, bary, depth])
    return Hits(face.numpy(), bary.numpy(), depth.numpy())


def vertex_visibility(meshes: BodyMeshes, body: np.ndarray, cameras: Cameras, tol: float) -> np.ndarray:
    """(n, N) bool: vertex seen by the instance's camera (3D ray test with tolerance ``tol`` metres)."""
    if tol < 0:
        raise InputError(f"visibility tolerance must be >= 0, got {tol}")
    dev = meshes.device
    n, v = len(body), meshes.points.shape[1]
    rot, cen = _camera_arrays(cameras, dev)
    out = wp.empty((n, v), dtype=wp.bool, device=dev)
    _launch(_visibility_kernel, n, (v,), dev, [
        meshes.ids, wp.array(np.asarray(body, np.int32), dtype=wp.int32, device=dev), meshes.points, rot, cen,
        int(cameras.projection == "orthographic"), float(tol), out])
    return out.numpy()


@dataclass(frozen=True)
class SurfaceMaps:
    """Exact correspondence per crop pixel: ``labels`` (n, S, S) uint8 part 0..24; ``uv`` (n, 2, S, S)
    float32 (0 on background); ``embedding`` (n, D, S, S) float16 (0 on background) or None;
    ``mask`` (n, S, S) bool foreground; ``iuv`` (n, S, S, 3) uint8 Detectron2's quantised IUV
    ``(I, floor(clamp(255 U, 0, 255)), floor(clamp(255 V, 0, 255)))`` (METHOD.md §2)."""

    labels: np.ndarray
    uv: np.ndarray
    embedding: np.ndarray | None
    mask: np.ndarray
    iuv: np.ndarray


@wp.kernel
def _maps_kernel(offset: int, face: wp.array3d(dtype=wp.int32), bary: wp.array3d(dtype=wp.vec2),
                 faces: wp.array2d(dtype=wp.int32), face_part: wp.array(dtype=wp.uint8),
                 chart_faces: wp.array2d(dtype=wp.int32), chart_uv: wp.array(dtype=wp.vec2),
                 embedding: wp.array2d(dtype=float), dim: int,
                 labels: wp.array3d(dtype=wp.uint8), uv: wp.array4d(dtype=float),
                 emb: wp.array4d(dtype=wp.float16), iuv: wp.array4d(dtype=wp.uint8)):
    i, r, c = wp.tid()
    i = i + offset
    f = face[i, r, c]
    if f < 0:
        labels[i, r, c] = wp.uint8(0)
        uv[i, 0, r, c] = 0.0
        uv[i, 1, r, c] = 0.0
        for d in range(dim):
            emb[i, d, r, c] = wp.float16(0.0)
        for k in range(3):
            iuv[i, r, c, k] = wp.uint8(0)
        return
    b = bary[i, r, c]
    w0 = b[0]
    w1 = b[1]
    w2 = 1.0 - w0 - w1
    labels[i, r, c] = face_part[f]
    t = w0 * chart_uv[chart_faces[f, 0]] + w1 * chart_uv[chart_faces[f, 1]] + w2 * chart_uv[chart_faces[f, 2]]
    u = wp.clamp(t[0], 0.0, 1.0)
    v = wp.clamp(t[1], 0.0, 1.0)
    uv[i, 0, r, c] = u
    uv[i, 1, r, c] = v
    iuv[i, r, c, 0] = face_part[f]
    iuv[i, r, c, 1] = wp.uint8(wp.floor(wp.clamp(u * 255.0, 0.0, 255.0)))
    iuv[i, r, c, 2] = wp.uint8(wp.floor(wp.clamp(v * 255.0, 0.0, 255.0)))
    a = faces[f, 0]
    bb = faces[f, 1]
    cc = faces[f, 2]
    for d in range(dim):
        emb[i, d, r, c] = wp.float16(w0 * embedding[a, d] + w1 * embedding[bb, d] + w2 * embedding[cc, d])


def surface_maps(hits: Hits, faces: np.ndarray, face_part: np.ndarray, chart_uv: np.ndarray,
                 chart_faces: np.ndarray, embedding: np.ndarray | None = None, device: str = "cpu") -> SurfaceMaps:
    """I, U, V, embedding, mask and quantised IUV from the hit faces and barycentrics (a Warp
    kernel per pixel; :func:`surface_maps_reference` is the same in numpy).

    Args:
        faces: (F, 3). face_part: (F,) 1..24. chart_uv: (C, 2). chart_faces: (F, 3) chart points.
        embedding: (N, D) vertex embeddings, or None to skip the CSE map.
    """
    n, s = hits.face.shape[0], hits.face.shape[-1]
    dim = 0 if embedding is None else embedding.shape[1]
    emb_in = np.zeros((1, 1), np.float32) if embedding is None else np.ascontiguousarray(embedding, np.float32)
    labels = wp.empty((n, s, s), dtype=wp.uint8, device=device)
    uv = wp.empty((n, 2, s, s), dtype=float, device=device)
    emb = wp.empty((n, dim, s, s) if dim else (1, 1, 1, 1), dtype=wp.float16, device=device)
    iuv = wp.empty((n, s, s, 3), dtype=wp.uint8, device=device)
    _launch(_maps_kernel, n, (s, s), device, [
        wp.array(np.ascontiguousarray(hits.face, np.int32), dtype=wp.int32, device=device),
        wp.array(np.ascontiguousarray(hits.bary, np.float32), dtype=wp.vec2, device=device),
        wp.array(np.ascontiguousarray(faces, np.int32), dtype=wp.int32, device=device),
        wp.array(np.ascontiguousarray(face_part, np.uint8), dtype=wp.uint8, device=device),
        wp.array(np.ascontiguousarray(chart_faces, np.int32), dtype=wp.int32, device=device),
        wp.array(np.ascontiguousarray(chart_uv, np.float32), dtype=wp.vec2, device=device),
        wp.array(emb_in, dtype=float, device=device), dim, labels, uv, emb, iuv])
    return SurfaceMaps(labels.numpy(), uv.numpy(), emb.numpy() if dim else None, hits.face >= 0, iuv.numpy())


def surface_maps_reference(hits: Hits, faces: np.ndarray, face_part: np.ndarray, chart_uv: np.ndarray,
                           chart_faces: np.ndarray, embedding: np.ndarray | None = None) -> SurfaceMaps:
    """The same as :func:`surface_maps` with plain numpy gathers (slower; the tests' reference)."""
    n, s = hits.face.shape[0], hits.face.shape[-1]
    mask = hits.face >= 0
    f = hits.face[mask]  # (P,) foreground pixels
    u, v = hits.bary[mask, 0], hits.bary[mask, 1]
    w = np.stack([u, v, 1.0 - u - v], axis=1).astype(np.float32)  # (P, 3) corner weights
    labels = np.zeros(hits.face.shape, np.uint8)
    labels[mask] = face_part[f]
    uv = np.zeros((n, s, s, 2), np.float32)
    uv[mask] = np.clip(np.einsum("pk,pkc->pc", w, chart_uv[chart_faces[f]].astype(np.float32)), 0.0, 1.0)
    emb = None
    if embedding is not None:
        emb = np.zeros((n, s, s, embedding.shape[1]), np.float32)
        emb[mask] = np.einsum("pk,pkd->pd", w, embedding[faces[f]].astype(np.float32))
        emb = emb.transpose(0, 3, 1, 2).astype(np.float16)
    uv = uv.transpose(0, 3, 1, 2)
    q = np.floor(np.clip(uv * 255.0, 0, 255)).astype(np.uint8)
    iuv = np.stack([labels, q[:, 0], q[:, 1]], axis=-1)
    return SurfaceMaps(labels, uv, emb, mask, iuv)
