"""The DP3D model and its two baselines (METHOD.md §5), and the prediction API.

Sizes: B instances, N template vertices, K LBO eigenvectors, M latent parts, L latent size, Q basis
shapes (baselines), U trunk width (legend: :mod:`pipeline`).

All coordinates the networks see and produce live in the *normalised keypoint frame* of
:func:`normalise` (image x right, y down, depth z away from the camera).

``model.type``:

- ``dp3d``: ``w = softmax(Φ_K A)`` (N, M) soft parts; per-part rigid motions ``G_j = exp(ξ_j)``
  and learnt rest transforms ``Ḡ_j``; linear blend skinning ``Y_i = Σ_j w_ij G_j Ḡ_j⁻¹ X_i``;
  optional blendshapes ``X' = X + Σ_b β_b Φ_K C_b`` before posing (supp. D).
- ``no_parts``: ``Y = X + Φ_K (α B)``, ``B`` (Q, K, 3) learnt, ``α`` (Q,) predicted.
- ``c3dpo``: ``Y = S̄ + Σ_d α_d S_d``, a free linear basis over all vertices (S̄ starts at X; ``S_d``
  (Q, N, 3) learnt, ``α`` (Q,) predicted).

Every type then applies the predicted global camera ``G_0`` (rotation, image-plane translation
and a log-scale: the normalisation divides by the RMS of the *visible* keypoints, so the size
of the body in that frame varies per instance) and projects orthographically, ``π(x,y,z)=(x,y)``.
The template X is stored centred, rotated so that its ``up`` is image -y and its ``forward``
faces the camera (-z), and scaled so that its image-plane RMS radius is 1: at initialisation
(heads near zero) every prediction is the template in this frame.

Prediction API (used by the evaluate stage, in :mod:`pipeline.train.checkpoint`):

- :func:`~pipeline.train.checkpoint.load_checkpoint` ``(path, device) -> (model, info)``
- :func:`~pipeline.train.checkpoint.reconstruct` ``(model, xy, visible) -> (B, N, 3)`` posed shape in image pixels
- ``model.segmentation() -> (N, M)`` part weights
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import roma
import torch
from torch import nn

from pipeline.core.config import ModelParams
from pipeline.core.errors import InputError

__all__ = ["Trunk", "head", "LiftingModel", "ModelOutput", "ShapeOutput", "NormalisedKeypoints", "normalise",
           "denormalise", "vertex_normals", "CAMERA_DIM", "XI_DIM"]

XI_DIM = 6  # se(3) vector: axis-angle (3) + translation (3)
CAMERA_DIM = 6  # axis-angle (3) + image-plane translation (2) + log-scale (1)
HETERO_HIDDEN = 64
HEAD_INIT_STD = 1e-3  # heads start near zero: the first predictions are the rest template
BASIS_INIT_STD = 1e-2  # learnt shape bases start small but non-zero (else α and B get no gradient)


# --- keypoint normalisation (METHOD.md §3) -------------------------------------------------------
# Per-instance keypoint normalisation and its inverse (METHOD.md §3).
#
# The model sees each instance's keypoints centred on the mean of its visible keypoints and divided
# by one scale, the RMS distance of the visible keypoints from that mean. :func:`denormalise` maps
# points of that normalised frame (2D, or 3D with depth in the same units) back to image pixels, so
# that ``denormalise(normalise(xy, visible)) == xy`` on visible keypoints.
#
# Both functions accept torch tensors or numpy arrays and return the same kind.


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


def vertex_normals(points: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, N, 3) unit area-weighted vertex normals of meshes ``points`` (B, N, 3) with faces (F, 3) long
    (outward for the template's winding)."""
    a, b, c = points[:, faces[:, 0]], points[:, faces[:, 1]], points[:, faces[:, 2]]
    fn = torch.cross(b - a, c - a, dim=-1)  # (B, F, 3), length 2 area
    out = torch.zeros_like(points)
    for k in range(3):
        out = out.index_add(1, faces[:, k], fn)
    return out / out.norm(dim=-1, keepdim=True).clamp(min=eps)


# --- the networks ------------------------------------------------------------------------------------

class Trunk(nn.Module):
    """C3DPO trunk: Linear(in, U) + BN + ReLU, then residual blocks U -> bottleneck -> bottleneck -> U.

    Every linear layer is followed by BatchNorm and ReLU. ``forward``: (B, in_dim) -> (B, U).
    """

    def __init__(self, in_dim: int, hidden: int = 1024, bottleneck: int = 256, blocks: int = 6):
        super().__init__()

        def layer(i, o):
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

        self.stem = nn.Sequential(*layer(in_dim, hidden))
        self.blocks = nn.ModuleList(
            nn.Sequential(*layer(hidden, bottleneck), *layer(bottleneck, bottleneck), *layer(bottleneck, hidden))
            for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return h


def head(hidden: int, out: int) -> nn.Linear:
    """A linear output layer (hidden -> out) started near 0: small weights, zero bias."""
    lin = nn.Linear(hidden, out)
    nn.init.normal_(lin.weight, std=HEAD_INIT_STD)
    nn.init.zeros_(lin.bias)
    return lin


class ShapeOutput(NamedTuple):
    """vertices: (B, N, 3) posed shape, object frame. vertex_xi: (B, N, 6) per-vertex blended se(3)
    vector (dp3d) or None. part_linear: (B, M, 3, 3) linear part of each ``G_j Ḡ_j⁻¹`` (dp3d) or None."""

    vertices: torch.Tensor
    vertex_xi: torch.Tensor | None
    part_linear: torch.Tensor | None = None


class ModelOutput(NamedTuple):
    """What one forward pass predicts (normalised keypoint frame).

    latent: (B, L) shape parameters (part motions and β, or basis coefficients α).
    shape: (B, N, 3) posed shape in the object frame (what Ψ and ARAP see).
    camera: (B, 6) axis-angle, image-plane translation, log-scale.
    points: (B, N, 3) the shape in the camera frame; ``points[..., :2]`` is the projection.
    uncertainty: (B, N) heteroscedastic scale b (``model.heteroscedastic``) or None.
    normals: (B, N, 3) the template's unit normals moved by the blended part rotations and the camera
        rotation (dp3d, once :meth:`LiftingModel.set_rest_normals` was called) or None.
    vertex_xi: (B, N, 6) per-vertex blended se(3) vector (dp3d) or None.
    """

    latent: torch.Tensor
    shape: torch.Tensor
    camera: torch.Tensor
    points: torch.Tensor
    uncertainty: torch.Tensor | None
    normals: torch.Tensor | None = None
    vertex_xi: torch.Tensor | None = None


class LiftingModel(nn.Module):
    """DP3D or a baseline; see the module docstring.

    Args:
        cfg: the ``model`` params.
        vertices: (N, 3) float canonical template (:func:`pipeline.template.file.canonical_template`).
        basis: (N, K') float LBO eigenvectors scaled to unit RMS; the first ``cfg.lbo_basis`` are used.
        init_logits: ``(basis (N, K) float, seed) -> (K, M)`` initial part logits ``A``
            (:func:`pipeline.train.part_init.logit_initialiser`); None for a model whose weights are loaded next.
    """

    def __init__(self, cfg: ModelParams, vertices: np.ndarray, basis: np.ndarray,
                 init_logits: Callable[[np.ndarray, int], np.ndarray] | None = None):
        super().__init__()
        n = len(vertices)
        k = min(cfg.lbo_basis, basis.shape[1])
        self.cfg = cfg
        self.type = cfg.type
        self.register_buffer("template", torch.as_tensor(np.asarray(vertices), dtype=torch.float32))
        self.register_buffer("basis", torch.as_tensor(np.asarray(basis)[:, :k], dtype=torch.float32))
        self.register_buffer("rest_normals", None, persistent=False)  # (N, 3), see set_rest_normals
        self.trunk = Trunk(3 * n, cfg.hidden, cfg.bottleneck, cfg.blocks)
        m, d, nb = cfg.parts, cfg.basis_size, cfg.blendshapes
        if self.type == "dp3d":
            seed = int(torch.randint(0, 2**31 - 1, (1,)))  # follows torch's seed
            logits = (init_logits(np.asarray(basis)[:, :k], seed) if init_logits is not None
                      else np.zeros((k, m), np.float32))
            self.logits = nn.Parameter(torch.as_tensor(logits))  # A: (K, M), pipeline.train.part_init
            self.rest = nn.Parameter(torch.zeros(m, XI_DIM))  # ξ̄_j
            self.blend = nn.Parameter(torch.randn(nb, k, 3) * BASIS_INIT_STD) if nb else None  # C_b
            self.latent_dim = m * XI_DIM + nb
        elif self.type == "no_parts":
            self.shape_basis = nn.Parameter(torch.randn(d, k, 3) * BASIS_INIT_STD)  # B
            self.latent_dim = d
        elif self.type == "c3dpo":
            self.mean_shape = nn.Parameter(self.template.clone())  # S̄
            self.shape_basis = nn.Parameter(torch.randn(d, n, 3) * BASIS_INIT_STD)  # S_d
            self.latent_dim = d
        else:
            raise InputError(f"model.type = {self.type!r}: allowed dp3d, no_parts or c3dpo")
        self.latent_head = head(cfg.hidden, self.latent_dim)
        self.camera_head = head(cfg.hidden, CAMERA_DIM)
        if cfg.heteroscedastic:
            self.hetero = nn.Sequential(nn.Linear(k + XI_DIM, HETERO_HIDDEN), nn.ReLU(),
                                        nn.Linear(HETERO_HIDDEN, 1), nn.Softplus())
        else:
            self.hetero = None

    @property
    def n_vertices(self) -> int:
        return self.template.shape[0]

    def segmentation(self) -> torch.Tensor:
        """(N, M) soft part weights, rows sum to 1 (dp3d); (N, 1) ones for the baselines."""
        if self.type != "dp3d":
            return torch.ones(self.n_vertices, 1, device=self.template.device)
        return torch.softmax(self.basis @ self.logits, dim=1)

    def shape_from_latent(self, latent: torch.Tensor) -> ShapeOutput:
        """Poses the template. latent: (B, L) -> :class:`ShapeOutput`."""
        bsz = latent.shape[0]
        x = self.template
        if self.type == "no_parts":
            offsets = (latent @ self.shape_basis.flatten(1)).view(bsz, -1, 3)  # (B, K, 3)
            return ShapeOutput(x + self.basis @ offsets, None)
        if self.type == "c3dpo":
            return ShapeOutput(self.mean_shape + (latent @ self.shape_basis.flatten(1)).view(bsz, -1, 3), None)
        m = self.cfg.parts
        xi = latent[:, : m * XI_DIM].view(bsz, m, XI_DIM)
        if self.blend is not None:
            beta = latent[:, m * XI_DIM:]
            x = x + self.basis @ (beta @ self.blend.flatten(1)).view(bsz, -1, 3)  # (B, N, 3)
        w = self.segmentation()  # (N, M)
        rot = roma.rotvec_to_rotmat(xi[..., :3])  # (B, M, 3, 3)
        rest_rot = roma.rotvec_to_rotmat(self.rest[:, :3])  # (M, 3, 3)
        a = rot @ rest_rot.transpose(-1, -2)  # G_j Ḡ_j⁻¹ linear part, (B, M, 3, 3)
        b = xi[..., 3:] - (a @ self.rest[:, 3:, None])[..., 0]  # its translation, (B, M, 3)
        # Y_i = Σ_j w_ij (A_j X_i + b_j) as one matmul: Z[i, (j, k)] = w_ij X_ik, A'[(j, k), r] = A_j[r, k]
        z = (w[..., None] * x[..., None, :]).flatten(-2)  # (N, 3M) or (B, N, 3M)
        y = z @ a.transpose(-1, -2).reshape(bsz, m * 3, 3) + w @ b  # (B, N, 3)
        return ShapeOutput(y, w @ xi, a)

    def forward(self, xy: torch.Tensor, visible: torch.Tensor) -> ModelOutput:
        """xy: (B, N, 2) normalised keypoints (0 where invisible); visible: (B, N) bool."""
        v = visible.to(xy.dtype)[..., None]
        inp = torch.cat([xy * v, v], dim=-1).flatten(1)  # (B, 3N)
        h = self.trunk(inp)
        out = self.pose(self.latent_head(h), self.camera_head(h))
        if self.hetero is None:
            return out
        xi = out.vertex_xi if out.vertex_xi is not None else out.camera[:, None].expand(-1, self.n_vertices, -1)
        feats = torch.cat([self.basis.expand(len(xy), -1, -1), xi], dim=-1)  # (B, N, K + 6)
        return out._replace(uncertainty=self.hetero(feats)[..., 0])

    def pose(self, latent: torch.Tensor, camera: torch.Tensor) -> ModelOutput:
        """The shape of ``latent`` (B, L) seen by ``camera`` (B, 6): :class:`ModelOutput` without the
        heteroscedastic scale (what :meth:`forward` predicts once its heads have given both; test-time refinement,
        :mod:`pipeline.train.refine`, moves them)."""
        shape = self.shape_from_latent(latent)
        rot = roma.rotvec_to_rotmat(camera[:, :3])  # (B, 3, 3)
        normals = None
        if self.rest_normals is not None and shape.part_linear is not None:
            # n_i' = R_0 Σ_j w_ij A_j n_i: rotations only, so no stretch of the shape changes it
            n = torch.einsum("nm,bmrc,nc->bnr", self.segmentation(), shape.part_linear, self.rest_normals)
            normals = n @ rot.transpose(-1, -2)
            normals = normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        shift = torch.cat([camera[:, 3:5], torch.zeros_like(camera[:, :1])], dim=1)  # (B, 3)
        points = camera[:, 5, None, None].exp() * (shape.vertices @ rot.transpose(-1, -2)) + shift[:, None]
        return ModelOutput(latent, shape.vertices, camera, points, None, normals, shape.vertex_xi)

    def set_rest_normals(self, normals: np.ndarray | torch.Tensor) -> None:
        """Gives the model the template's (N, 3) unit outward normals (canonical frame), so that
        ``forward`` also returns the posed normals (for ``loss.facing``; not saved in checkpoints)."""
        self.rest_normals = torch.as_tensor(normals, dtype=torch.float32, device=self.template.device)
