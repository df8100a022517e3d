"""``data/template.npz``, the read side of the ``template`` stage: its layout, the :class:`Template` record,
its checks, save and :func:`load_template` (built by :mod:`pipeline.template.build`; METHOD.md §1).

``data/template.npz`` layout (every array saved without pickle; N vertices, F faces, C chart
points, D embedding dims, J = 14 joints):

=================  ===============  =====================================================
key                shape, dtype     meaning
=================  ===============  =====================================================
vertices           (N, 3) float32   rest-pose vertices, metres
faces              (F, 3) int64     triangles, counter-clockwise seen from outside
face_part          (F,) uint8       DensePose part 1..24 of each face
vertex_part        (N,) uint8       part covering most area around each vertex
chart_part         (C,) uint8       part of each chart point (``All_FaceIndices`` per point)
chart_uv           (C, 2) float32   (U, V) in [0, 1] (``All_U_norm``, ``All_V_norm``)
chart_vertex       (C,) int64       mesh vertex of each chart point (``All_vertices`` - 1)
chart_faces        (F, 3) int64     each face's corners as chart points (``All_Faces`` - 1)
embedding          (N, D) float32   CSE vertex embeddings, rows L2-normalised
joint_regressor    (J, N) float32   rows sum to 1; LSP joint order
joint_names        (J,) str
up, forward        (3,) float32     the body's up and facing directions in rest pose
source, topology   () str           where it came from
charts             () str           chart convention: ``densepose`` (DensePose's U, V) or ``own``
hash               () str           content hash of all arrays above
=================  ===============  =====================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.io import load_npz, save_npz

__all__ = ["CHART_CONVENTIONS", "Template", "check_template", "load_template", "N_PARTS", "PART_NAMES", "SEGMENTS", "COARSE_OF_PART",
           "JOINT_NAMES", "apply_regressor", "canonical_template", "part_colours", "part_rgb", "uv_rgb",
           "N_LABELS", "MISSING_LABEL", "encode_iuv", "decode_uv", "decode_iuv"]

# DensePose's 24 body parts. Part ids follow DensePose (0 is background), as in DensePose-COCO: torso 1 back,
# 2 front; of the legs the lower id is the back, of the arms the lower id is the front (15-22; measured on
# DensePose-RCNN's own output, pipeline/template/densepose_layout.py); the head is split into its right (23) and left (24) halves. "Right" and "left" are the
# person's own.
N_PARTS = 24
# A template's chart convention: "densepose" charts read DensePose's own U, V (real DensePose output);
# "own" charts are the project's flattening, right only for data rendered with the same template.
CHART_CONVENTIONS = ("densepose", "own")

PART_NAMES = (
    "torso back", "torso front", "right hand", "left hand", "left foot", "right foot",
    "right upper leg back", "left upper leg back", "right upper leg front", "left upper leg front",
    "right lower leg back", "left lower leg back", "right lower leg front", "left lower leg front",
    "left upper arm front", "right upper arm front", "left upper arm back", "right upper arm back",
    "left lower arm front", "right lower arm front", "left lower arm back", "right lower arm back",
    "head right", "head left",
)

# Coarse body segments: (name, back id, front id) (``SEGMENTS[name][0]`` is always the back); hands, feet and the head have no front/back.
SEGMENTS = {
    "torso": (1, 2), "right hand": (3, 3), "left hand": (4, 4), "left foot": (5, 5), "right foot": (6, 6),
    "right upper leg": (7, 9), "left upper leg": (8, 10), "right lower leg": (11, 13), "left lower leg": (12, 14),
    "left upper arm": (17, 15), "right upper arm": (18, 16), "left lower arm": (21, 19),
    "right lower arm": (22, 20), "head": (23, 24),
}

def _coarse_table() -> np.ndarray:
    table = np.zeros(N_PARTS + 1, dtype=np.int64)
    for i, ids in enumerate(SEGMENTS.values(), start=1):
        table[list(ids)] = i
    return table


# The 14 coarse parts: part id 0..24 -> coarse id 0..14 (each pair merged, 0 background).
COARSE_OF_PART = _coarse_table()

# The 14 evaluation joints, LSP order (rows of ``joint_regressor``).
JOINT_NAMES = (
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle",
    "right wrist", "right elbow", "right shoulder", "left shoulder", "left elbow", "left wrist",
    "neck", "head top",
)


@dataclass(frozen=True)
class Template:
    """The template; see the module docstring for shapes and dtypes."""

    vertices: np.ndarray
    faces: np.ndarray
    face_part: np.ndarray
    vertex_part: np.ndarray
    chart_part: np.ndarray
    chart_uv: np.ndarray
    chart_vertex: np.ndarray
    chart_faces: np.ndarray
    embedding: np.ndarray
    joint_regressor: np.ndarray
    joint_names: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    source: str
    topology: str
    charts: str
    hash: str = ""

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array, in a fixed order (the hash covers all but ``hash``)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def content_hash(self) -> str:
        """sha256 (first 16 hex digits) over every array's dtype, shape and bytes, except ``hash``."""
        h = hashlib.sha256()
        for name, a in self.arrays().items():
            if name == "hash":
                continue
            a = np.ascontiguousarray(a)
            h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Writes the ``.npz`` atomically and deterministically."""
        save_npz(path, self.arrays())


_FIELDS = tuple(f.name for f in dataclasses.fields(Template))


def check_template(t: Template, name: str = "template") -> None:
    """Checks shapes and cross-references of a template; raises ValueError naming the key."""
    n, f, c = len(t.vertices), len(t.faces), len(t.chart_part)

    def need(cond, msg):
        if not cond:
            raise InputError(f"{name}: {msg}")

    need(t.vertices.shape == (n, 3) and np.isfinite(t.vertices).all(), "vertices must be finite (N, 3)")
    need(t.faces.shape == (f, 3) and t.faces.min() >= 0 and t.faces.max() < n, "faces must index vertices")
    need(t.face_part.shape == (f,) and t.face_part.min() >= 1 and t.face_part.max() <= N_PARTS,
         "face_part must hold 1..24 per face")
    need(t.vertex_part.shape == (n,), "vertex_part must be (N,)")
    need(t.chart_uv.shape == (c, 2) and t.chart_vertex.shape == (c,), "chart arrays must share C")
    need(t.chart_uv.min() >= 0 and t.chart_uv.max() <= 1, "chart_uv must lie in [0, 1]")
    need(t.chart_vertex.min() >= 0 and t.chart_vertex.max() < n, "chart_vertex must index vertices")
    need(t.chart_faces.shape == (f, 3) and np.array_equal(t.chart_vertex[t.chart_faces], t.faces),
         "chart_faces must map onto faces through chart_vertex")
    need(np.array_equal(t.chart_part[t.chart_faces], np.repeat(t.face_part[:, None], 3, axis=1)),
         "chart_faces must use chart points of the face's own part")
    need(np.array_equal(np.unique(t.chart_part), np.arange(1, N_PARTS + 1)), "all 24 parts need chart points")
    need(str(t.charts) in CHART_CONVENTIONS, f"charts must be one of {CHART_CONVENTIONS}, got {t.charts!r}")
    need(t.embedding.ndim == 2 and t.embedding.shape[0] == n, "embedding must be (N, D)")
    need(t.joint_regressor.shape == (len(JOINT_NAMES), n), "joint_regressor must be (14, N)")
    need(np.allclose(t.joint_regressor.sum(axis=1), 1, atol=1e-4), "joint_regressor rows must sum to 1")


def load_template(path: str | Path) -> Template:
    """Reads and checks ``template.npz``; a changed file (hash mismatch) is an error."""
    data = load_npz(path, required=_FIELDS)
    kw = {k: (str(data[k]) if data[k].ndim == 0 and data[k].dtype.kind == "U" else data[k]) for k in _FIELDS}
    t = Template(**kw)
    check_template(t, str(path))
    if t.content_hash() != t.hash:
        raise InputError(f"{path}: content hash {t.content_hash()} does not match the stored {t.hash}")
    return t



def canonical_template(vertices: np.ndarray, up: np.ndarray, forward: np.ndarray,
                       eps: float = 1e-9) -> tuple[np.ndarray, float]:
    """The template centred, facing the camera and scaled to unit image-plane RMS radius.

    Args:
        vertices: (N, 3) float metres; up, forward: (3,) unit vectors of the body in rest pose.
    Returns:
        (N, 3) float32 canonical vertices; the scale (metres per canonical unit).
    """
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    fwd = np.asarray(forward, np.float64)
    fwd = fwd - up * (fwd @ up)
    fwd /= np.linalg.norm(fwd)
    # rows: where body axes go. image x = up x forward (right-handed), image y = -up, z = -forward
    src = np.stack([np.cross(up, fwd), up, fwd])  # (3, 3) body axes in template coordinates
    dst = np.diag([1.0, -1.0, -1.0])
    rot = dst.T @ src  # maps template coords to camera-facing coords
    x = (np.asarray(vertices, np.float64) - np.mean(vertices, axis=0)) @ rot.T
    if np.linalg.det(rot) < 0:  # keep it a rotation: flip image x
        x[:, 0] *= -1
    scale = float(np.sqrt(np.mean(np.sum(x[:, :2] ** 2, axis=1))))
    return (x / max(scale, eps)).astype(np.float32), scale


def apply_regressor(regressor: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Joints from vertices. regressor: (J, N); vertices: (..., N, 3) -> (..., J, 3)."""
    return np.einsum("jv,...vc->...jc", regressor, vertices)


# --- the parts' colours (every figure draws parts with them) ------------------------------------------------
# (25, 3) RGB: grey background (0), then matplotlib's tab20 (parts 1..20) and Set1's first four (21..24)
_PART_PALETTE = (
    (0.6, 0.6, 0.6),
    (0.12156862745098039, 0.4666666666666667, 0.7058823529411765),
    (0.6823529411764706, 0.7803921568627451, 0.9098039215686274),
    (1.0, 0.4980392156862745, 0.054901960784313725),
    (1.0, 0.7333333333333333, 0.47058823529411764),
    (0.17254901960784313, 0.6274509803921569, 0.17254901960784313),
    (0.596078431372549, 0.8745098039215686, 0.5411764705882353),
    (0.8392156862745098, 0.15294117647058825, 0.1568627450980392),
    (1.0, 0.596078431372549, 0.5882352941176471),
    (0.5803921568627451, 0.403921568627451, 0.7411764705882353),
    (0.7725490196078432, 0.6901960784313725, 0.8352941176470589),
    (0.5490196078431373, 0.33725490196078434, 0.29411764705882354),
    (0.7686274509803922, 0.611764705882353, 0.5803921568627451),
    (0.8901960784313725, 0.4666666666666667, 0.7607843137254902),
    (0.9686274509803922, 0.7137254901960784, 0.8235294117647058),
    (0.4980392156862745, 0.4980392156862745, 0.4980392156862745),
    (0.7803921568627451, 0.7803921568627451, 0.7803921568627451),
    (0.7372549019607844, 0.7411764705882353, 0.13333333333333333),
    (0.8588235294117647, 0.8588235294117647, 0.5529411764705883),
    (0.09019607843137255, 0.7450980392156863, 0.8117647058823529),
    (0.6196078431372549, 0.8549019607843137, 0.8980392156862745),
    (0.8941176470588236, 0.10196078431372549, 0.10980392156862745),
    (0.21568627450980393, 0.49411764705882355, 0.7215686274509804),
    (0.30196078431372547, 0.6862745098039216, 0.2901960784313726),
    (0.596078431372549, 0.3058823529411765, 0.6392156862745098),
)


def part_colours() -> np.ndarray:
    """(25, 3) float64 RGB: grey background (0) and 24 distinct part colours (a new array)."""
    return np.array(_PART_PALETTE)


def part_rgb(labels: np.ndarray) -> np.ndarray:
    """(S, S, 3) float RGB of part labels (S, S): part colours, white background, magenta missing."""
    labels = np.asarray(labels)
    missing = labels > N_PARTS
    rgb = part_colours()[np.where(missing, 0, labels)]
    rgb[labels == 0] = 1.0
    rgb[missing] = (1.0, 0.0, 1.0)
    return rgb


def uv_rgb(labels: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(S, S, 3) float RGB of U (red) and V (green) on a part pixel; white background, magenta where
    the label or U/V is missing. labels: (S, S); uv: (2, S, S)."""
    labels = np.asarray(labels)
    uv = np.asarray(uv, np.float32)
    with np.errstate(invalid="ignore"):
        bad_uv = ~np.all(np.isfinite(uv), axis=0)
    u, v = np.nan_to_num(uv[0]), np.nan_to_num(uv[1])
    rgb = np.stack([u, v, np.full_like(u, 0.4)], axis=-1)
    rgb[labels == 0] = 1.0
    rgb[((labels > 0) & bad_uv) | (labels > N_PARTS)] = (1.0, 0.0, 1.0)
    return np.clip(rgb, 0, 1)


# --- Detectron2's IUV encoding of a point on the parts' charts (METHOD.md §2.5) -------------------------------
N_LABELS = N_PARTS + 1  # background + 24 DensePose parts
MISSING_LABEL = 255  # a part label that is missing (DensePose output, after the door)


def encode_iuv(labels: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Detectron2's quantised IUV image (``quantize_densepose_chart_result``).

    Args:
        labels: (..., H, W) int part 0..24 (anything else is missing). uv: (..., 2, H, W) float U, V.
    Returns:
        (..., H, W, 3) uint8 ``(I, floor(clamp(255 U, 0, 255)), floor(clamp(255 V, 0, 255)))``; all 0
        where the label is background or missing or U/V is NaN.
    """
    labels = np.asarray(labels)
    uv = np.asarray(uv, dtype=np.float32)
    valid = (labels > 0) & (labels < N_LABELS) & np.isfinite(uv).all(axis=-3)
    q = np.floor(np.clip(np.nan_to_num(uv) * 255.0, 0, 255)).astype(np.uint8)  # (..., 2, H, W)
    iuv = np.stack([labels.astype(np.uint8), q[..., 0, :, :], q[..., 1, :, :]], axis=-1)
    iuv[~valid] = 0
    return iuv


def decode_uv(q: np.ndarray) -> np.ndarray:
    """U or V from a quantised value: the bin centre ``min((q + 0.5) / 255, 1)`` (float32)."""
    return np.minimum((q.astype(np.float32) + 0.5) / 255.0, 1.0)


def decode_iuv(iuv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_iuv` up to quantisation (U, V at their bin centres).

    Args:
        iuv: (..., H, W, 3) uint8, channels I, U, V in this order.
    Returns:
        labels (..., H, W) int64 (I > 24 -> 255 missing) and uv (..., 2, H, W) float32 (0 on background, NaN
        where missing).
    """
    iuv = np.asarray(iuv)
    if iuv.ndim < 3 or iuv.shape[-1] != 3:
        raise InputError(f"an IUV image is (H, W, 3), got {iuv.shape}")
    labels = iuv[..., 0].astype(np.int64)
    labels[labels >= N_LABELS] = MISSING_LABEL
    uv = np.moveaxis(decode_uv(iuv[..., 1:]), -1, -3)
    label = labels[..., None, :, :]
    uv = np.where(label == 0, 0.0, uv).astype(np.float32)
    return labels, np.where(label == MISSING_LABEL, np.float32(np.nan), uv)
