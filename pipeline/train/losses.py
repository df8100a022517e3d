"""DP3D training losses (METHOD.md §5, eqs. 5-9) and the training objective that combines them.

Sizes: B instances, N template vertices, F faces, E undirected template edges, M latent parts, L latent
size, T rotation samples (legend: :mod:`pipeline`).
Every robust norm is the pseudo-Huber ``ρ(r) = ε(√(1+(r/ε)²) − 1)``, but the re-projection's may be
Geman–McClure or Cauchy (``loss.robust``, :func:`robust_norm`), its scale annealed from wide to narrow, and
mirror-aware (``loss.mirror``). A loss whose weight is 0 is
neither built nor computed (this is how the ablations run); the baselines skip the losses that do
not apply to them (``c3dpo``: ARAP, entropy, facing and self-visibility; ``no_parts``: entropy, facing and
self-visibility).

Normalisations (the paper's are lost with its equations; these make each term scale-free, so that
its weight says how much it matters, see docs/METHOD.md §5.6):

- ARAP (eq. 7) is the *relative* ARAP energy: the energy divided by the rest shape's own Dirichlet
  energy ``Σ c_ik |X_i − X_k|²``, i.e. a weighted mean of the squared edge distortion after the
  best local rotations (0.01 is about a 10 % edge-length change everywhere). Divided by ``Σ c`` only,
  as before, it was 326x smaller on the default template (median canonical edge 0.064) and did not act.
- Entropy (eq. 8) is the mean vertex entropy in units of ``log M``: 0 for hard parts, 1 for uniform.
- Facing (not in the paper; dp3d only): the side of each part that the keypoints show must face the
  camera: a hinge on the depth component of the evidence-weighted mean normal of each part's visible
  vertices (:func:`facing_loss`). It settles the depth sign of turned-around parts, which the
  orthographic re-projection cannot see. Two simpler forms failed, measured (docs/METHOD.md §5.6): a
  per-vertex hinge on the predicted *mesh* normals paid the model to stretch depth (DP3D 1.29x the
  flat reference), and a per-vertex hinge on rotated template normals pushed the parts to face the
  camera (1.03x): 18 % of the visible vertices truly face away a little (silhouettes, false
  visibility), so a per-vertex hinge is not 0 on the truth; the per-part mean with pixel counts is
  (true shapes 0.002, turned around 0.81, one arm turned 0.048).
- Oracle 3D (diagnostic, off by default): ``mean ρ(|Y − Y*|)`` of depth-centred predicted and true
  shapes in the normalised frame; needs synthetic ground truth. An upper bound, not a method.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import roma
import torch
from torch import nn

from pipeline.core.config import LossParams
from pipeline.core.errors import InputError
from pipeline.geometry.lbo import laplacian
from pipeline.geometry.mesh import edges as mesh_edges
from pipeline.train.model import LiftingModel, Trunk, head, vertex_normals

__all__ = ["pseudo_huber", "ROBUST_NORMS", "robust_norm", "annealed_scale", "mirror_map", "loss_mirror", "smooth_min",
           "reprojection_loss", "canonicalisation_loss", "ArapWeights", "arap_weights", "ArapOperator",
           "best_rotations", "arap_loss", "arap_rotations", "entropy_loss", "facing_loss", "facing_gate",
           "self_visibility", "oracle_loss", "make_psi", "TrainingObjective", "LOSS_NAMES"]

LOSS_NAMES = ("reprojection", "canonicalisation", "arap", "entropy", "facing", "oracle_3d")


def pseudo_huber(r2: torch.Tensor, eps: float) -> torch.Tensor:
    """ρ of a residual given its *squared* norm ``r2`` (smooth at 0, unlike the norm itself)."""
    return eps * (torch.sqrt(1.0 + r2 / eps**2) - 1.0)


ROBUST_NORMS = ("pseudo_huber", "geman_mcclure", "cauchy")


def robust_norm(r2: torch.Tensor, scale: float, kind: str = "pseudo_huber") -> torch.Tensor:
    """ρ of residuals given their *squared* norms ``r2`` (any shape) at scale ``c``; all three are 0 at 0 and
    alike near it (ρ ≈ r²/2c), and differ in what a wrong keypoint costs far away:

    - ``pseudo_huber``: c(√(1 + r²/c²) − 1), grows like |r| (convex; the paper's);
    - ``geman_mcclure``: (c/2) r²/(r² + c²), at most c/2 (bounded: a gross outlier pulls with a force → 0);
    - ``cauchy``: (c/2) log(1 + r²/c²), grows like c log |r| (its pull falls as 1/|r|).
    """
    q = r2 / scale**2
    if kind == "pseudo_huber":
        return scale * (torch.sqrt(1.0 + q) - 1.0)
    if kind == "geman_mcclure":
        return 0.5 * scale * q / (1.0 + q)
    if kind == "cauchy":
        return 0.5 * scale * torch.log1p(q)
    raise InputError(f"loss.robust = {kind!r}: allowed {', '.join(ROBUST_NORMS)}")


def annealed_scale(progress: float, end: float, start: float = 0.0, anneal: float = 0.5) -> float:
    """The robust norm's scale at ``progress`` (0 first step .. 1 last): ``start`` shrinking geometrically to
    ``end`` over the first ``anneal`` of training, then ``end`` (``start`` 0 or ``anneal`` 0: ``end`` throughout)."""
    if start <= 0 or anneal <= 0 or progress >= anneal:
        return end
    return float(start * (end / start) ** (max(progress, 0.0) / anneal))


def mirror_map(canonical: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """(N,) int64 each vertex's left/right mirror: the nearest vertex to its reflection in the body's sagittal
    plane (canonical frame: x is the body's left-right axis, centred). An involution on a symmetric template.

    Args:
        canonical: (N, 3) float. keep: (N,) bool vertices that are their own mirror here (``loss.mirror_parts:
            limbs`` keeps the torso and head, so that a whole body mirrored, facing the other way, is not free).
    """
    from scipy.spatial import cKDTree

    x = np.asarray(canonical, np.float64)
    reflected = x * np.array([-1.0, 1.0, 1.0]) + np.array([2.0 * np.median(x[:, 0]), 0.0, 0.0])
    out = cKDTree(x).query(reflected)[1].astype(np.int64)
    if keep is not None:  # kept vertices, and any whose mirror is a kept one, are their own
        keep = np.asarray(keep, bool)
        out = np.where(keep | keep[out], np.arange(len(out)), out)
    return out


def limb_vertices(vertex_part: np.ndarray) -> np.ndarray:
    """(N,) bool the vertices of the arms, hands, legs and feet (every part but the torso's and the head's,
    :data:`pipeline.template.file.SEGMENTS`) of (N,) int ``vertex_part``."""
    from pipeline.template.file import SEGMENTS

    return ~np.isin(np.asarray(vertex_part), SEGMENTS["torso"] + SEGMENTS["head"])


def loss_mirror(cfg: LossParams, template: torch.Tensor, vertex_part: np.ndarray | None) -> torch.Tensor | None:
    """The (N,) long mirror map the re-projection loss uses under ``loss.mirror`` (``loss.mirror_parts``: every vertex,
    or the limbs' only), on the device of the (N, 3) canonical ``template``; None when ``loss.mirror`` is off.
    vertex_part: (N,) int each vertex's DensePose part (needed for ``limbs``)."""
    if not cfg.mirror:
        return None
    keep = None  # loss.mirror_parts all: every vertex may take its mirror
    if cfg.mirror_parts == "limbs":
        if vertex_part is None:
            raise InputError("loss.mirror_parts = limbs needs the template's vertex parts")
        keep = ~limb_vertices(vertex_part)
    return torch.as_tensor(mirror_map(template.detach().cpu().numpy(), keep), device=template.device)


def smooth_min(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """The smaller of ``a`` and ``b`` taken softly: w a + (1 − w) b with w = σ((b − a)/τ): ``a`` itself where
    ``a`` = ``b``, and ``a`` up to e^{−(b − a)/τ} where ``b`` is larger by several τ."""
    w = torch.sigmoid((b - a) / temperature)
    return w * a + (1.0 - w) * b


def reprojection_loss(pred: torch.Tensor, xy: torch.Tensor, visible: torch.Tensor, eps: float,
                      uncertainty: torch.Tensor | None = None, b_min: float = 0.1, norm: str = "pseudo_huber",
                      mirror: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5 (or supp. C's heteroscedastic form): mean over visible keypoints, or with ``weight`` the weighted
    mean ``Σ w ρ / Σ w``, ``w = visible * weight``.

    Args:
        pred, xy: (B, N, 2) float projected and observed keypoints (normalised frame).
        visible: (B, N) bool. uncertainty: (B, N) float scale b > 0, or None.
        eps: the norm's scale c. norm: :data:`ROBUST_NORMS` (:func:`robust_norm`).
        mirror: (N,) int each vertex's mirror (:func:`mirror_map`), or None: mirror-aware, a keypoint is
            explained by its vertex or by its mirror, whichever re-projects closer (:func:`smooth_min` of the
            squared residuals, τ = c²):
            DensePose's left/right swaps then cost nothing, and the plain residual is kept where the mirror is
            farther.
        weight: (B, N) float >= 0 per keypoint (``loss.confidence``: the keypoints' confidence), or None (1).
    """
    r2 = ((pred - xy) ** 2).sum(-1)  # (B, N)
    if mirror is not None:  # the closer of the two, softly (τ = c²: a bounded norm cannot tell far from farther)
        r2 = smooth_min(r2, ((pred[:, mirror] - xy) ** 2).sum(-1), eps**2)
    rho = robust_norm(r2, eps, norm)
    if uncertainty is not None:  # both terms see the floored scale: log(b) alone would fall without bound as b -> 0
        b = uncertainty.clamp(min=b_min)
        rho = torch.log(b) + rho / b
    v = visible.to(rho.dtype) if weight is None else visible.to(rho.dtype) * weight.to(rho.dtype)
    return (rho * v).sum() / v.sum().clamp(min=1e-12)  # nothing visible: 0


def make_psi(model: LiftingModel) -> nn.Module:
    """Ψ (eq. 6): the C3DPO trunk from a flattened 3D shape (B, 3N) to the model's latent (B, L)."""
    cfg = model.cfg
    return nn.Sequential(Trunk(3 * model.n_vertices, cfg.hidden, cfg.bottleneck, cfg.blocks),
                         head(cfg.hidden, model.latent_dim))


def canonicalisation_loss(model: LiftingModel, psi: nn.Module, shape: torch.Tensor, eps: float,
                          rotations: torch.Tensor | None = None, samples: int = 1) -> torch.Tensor:
    """Eq. 6: Ψ must re-pose the template from a randomly rotated shape back to the shape.

    Args:
        shape: (B, N, 3) posed shapes (object frame), gradients flow into them too.
        rotations: (T B, 3, 3) rotations to apply; uniformly random (torch's generator) when None.
        samples: T rotations per shape (C3DPO's official code draws several).
    """
    if samples > 1:
        shape = shape.repeat(samples, 1, 1)  # (T B, N, 3)
    if rotations is None:
        rotations = roma.random_rotmat(len(shape), device=shape.device, dtype=shape.dtype)
    rotated = shape @ rotations.transpose(-1, -2)  # (T B, N, 3)
    again = model.shape_from_latent(psi(rotated.flatten(1))).vertices
    return pseudo_huber(((again - shape) ** 2).sum(-1), eps).mean()


class ArapWeights(NamedTuple):
    """edges: (E, 2) int64 template edges; weights: (E,) float64 cotangent weights c_ik >= 0."""

    edges: np.ndarray
    weights: np.ndarray


def arap_weights(vertices: np.ndarray, faces: np.ndarray) -> ArapWeights:
    """Cotangent edge weights of the template (negative ones, from obtuse angles, clamped to 0)."""
    e, _ = mesh_edges(faces)
    lap, _ = laplacian(vertices, faces)
    c = -np.asarray(lap[e[:, 0], e[:, 1]]).ravel()
    return ArapWeights(e, np.maximum(c, 0.0))


def best_rotations(cov: torch.Tensor, method: str = "horn", iters: int = 6) -> torch.Tensor:
    """Rotations R maximising ``tr(Rᵀ P)`` for each 3x3 ``P`` (reflection-corrected Procrustes).

    Args:
        cov: (..., 3, 3) float P = Σ c (posed edge)(rest edge)ᵀ.
        method: ``svd`` (``torch.linalg.svd``, one LAPACK call per matrix) or ``horn``: the top
            eigenvector of Horn's 4x4 quaternion matrix by repeated squaring, all in batched
            elementwise ops (several times faster on CPU; same optimum, never a reflection).
    Returns:
        (..., 3, 3) rotations, no gradient.
    """
    with torch.no_grad():
        if method == "svd":
            u, _, vt = torch.linalg.svd(cov)
            d = torch.det(u @ vt)
            u = torch.cat([u[..., :2], u[..., 2:] * d[..., None, None]], dim=-1)
            return u @ vt
        if method != "horn":
            raise InputError(f"best_rotations: method = {method!r}: allowed horn or svd")
        s = cov.transpose(-1, -2)  # Horn's S_ab = Σ rest_a posed_b
        sxx, sxy, sxz = s[..., 0, 0], s[..., 0, 1], s[..., 0, 2]
        syx, syy, syz = s[..., 1, 0], s[..., 1, 1], s[..., 1, 2]
        szx, szy, szz = s[..., 2, 0], s[..., 2, 1], s[..., 2, 2]
        n = torch.empty((*s.shape[:-2], 4, 4), dtype=s.dtype, device=s.device)
        n[..., 0, 0], n[..., 1, 1] = sxx + syy + szz, sxx - syy - szz
        n[..., 2, 2], n[..., 3, 3] = -sxx + syy - szz, -sxx - syy + szz
        for (r, c), v in {(0, 1): syz - szy, (0, 2): szx - sxz, (0, 3): sxy - syx, (1, 2): sxy + syx,
                          (1, 3): szx + sxz, (2, 3): syz + szy}.items():
            n[..., r, c] = v
            n[..., c, r] = v
        # shift so every eigenvalue is >= 0 (the top one stays on top), then square: a -> q qᵀ
        shift = n.flatten(-2).norm(dim=-1).clamp(min=1e-30)
        n = n / shift[..., None, None] + torch.eye(4, dtype=n.dtype, device=n.device)
        a = n
        for _ in range(iters):
            a = a @ a
            a = a / a.flatten(-2).norm(dim=-1).clamp(min=1e-30)[..., None, None]
        col = a.diagonal(dim1=-2, dim2=-1).argmax(-1)  # the column of q qᵀ with the most weight
        q = torch.take_along_dim(a, col[..., None, None], dim=-1)[..., 0]  # (..., 4) w, x, y, z
        for _ in range(2):  # polish with power steps on the un-squared matrix
            q = (n @ q[..., None])[..., 0]
            q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        return roma.unitquat_to_rotmat(q[..., [1, 2, 3, 0]]).to(cov.dtype)


class ArapOperator(nn.Module):
    """Precomputed sparse operators of the ARAP energy for one rest shape (buffers)."""

    def __init__(self, rest: torch.Tensor, w: ArapWeights):
        super().__init__()
        e = torch.as_tensor(w.edges, dtype=torch.long)
        c = torch.as_tensor(w.weights, dtype=torch.float32)
        n = rest.shape[0]
        i = torch.cat([e[:, 0], e[:, 1]])  # directed edges i -> k, both ways
        k = torch.cat([e[:, 1], e[:, 0]])
        cc = torch.cat([c, c])
        d = rest[i] - rest[k]  # (2E, 3) rest edges
        # W[(b, i), k] = c_ik d_ik[b]: P_i[a, b] = Y_i[a] s_i[b] - Σ_k c_ik d_ik[b] Y_k[a]
        rows = (torch.arange(3)[:, None] * n + i[None]).flatten()
        cols = k.repeat(3)
        vals = (cc[None] * d.T).flatten()
        # a plain attribute, not a buffer: DistributedDataParallel broadcasts buffers and gloo has no sparse
        self.w = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (3 * n, n), check_invariants=False).coalesce()
        self.register_buffer("s", torch.zeros(n, 3).index_add_(0, i, cc[:, None] * d), persistent=False)  # (N, 3)
        self.register_buffer("i", e[:, 0], persistent=False)
        self.register_buffer("k", e[:, 1], persistent=False)
        self.register_buffer("c", c, persistent=False)
        self.register_buffer("rest_energy", (cc * (d**2).sum(-1)).sum(), persistent=False)  # Σ_dir c |d|²
        self.n = n

    def covariances(self, posed: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, N, 3, 3) P_i = Σ_k c_ik (Y_i - Y_k)(X_i - X_k)ᵀ, differentiable in Y."""
        bsz = posed.shape[0]
        flat = posed.permute(1, 0, 2).reshape(self.n, bsz * 3)  # (N, B*3)
        if self.w.device != posed.device:
            self.w = self.w.to(posed.device)
        wy = torch.sparse.mm(self.w, flat).view(3, self.n, bsz, 3)  # [b, i, batch, a]
        wy = wy.permute(2, 1, 3, 0)  # (B, N, 3, 3), indexed [batch, i, a, b]
        return posed[..., :, None] * self.s[:, None, :] - wy


def arap_loss(op: ArapOperator, posed: torch.Tensor, method: str = "horn",
              rotations: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 7, relative: ``Σ_i Σ_k c_ik |(Y_i − Y_k) − R_i (X_i − X_k)|² / Σ_i Σ_k c_ik |X_i − X_k|²`` over
    both directions of every edge, averaged over the batch; R_i best rotations computed without gradient.
    0 for a rigidly moved rest shape; a uniform scaling by s gives (s − 1)².

    Expanded as Σ c|Y_i−Y_k|² − 2 Σ_i tr(R_iᵀ P_i) + Σ c|X_i−X_k|², so no (B, E, 3, 3) tensor is formed.

    Args:
        posed: (B, N, 3) float posed shapes, same vertex order as the rest shape of ``op``.
        rotations: (B, N, 3, 3) float R_i to use instead of the best ones (:func:`arap_rotations`), e.g. kept from
            an earlier step (ARAP's local/global alternation: the energy is then an upper bound of the best one).
    """
    cov = op.covariances(posed)  # (B, N, 3, 3)
    rot = best_rotations(cov.detach(), method) if rotations is None else rotations
    dy = posed[:, op.i] - posed[:, op.k]  # (B, E, 3)
    posed_energy = 2.0 * (op.c * (dy**2).sum(-1)).sum(-1)  # (B,)
    cross = (rot * cov).sum((-1, -2, -3))  # Σ_i tr(R_iᵀ P_i), (B,)
    total = posed_energy - 2.0 * cross + op.rest_energy
    return (total / op.rest_energy).mean()


def arap_rotations(op: ArapOperator, posed: torch.Tensor, method: str = "horn") -> torch.Tensor:
    """(B, N, 3, 3) the best rotations R_i of :func:`arap_loss` for posed shapes (B, N, 3), no gradient."""
    return best_rotations(op.covariances(posed.detach()), method)


def entropy_loss(weights: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 8 in units of log M: mean over vertices of the entropy of their part distribution / log M
    (0 hard .. 1 uniform; 0 for M = 1). weights: (N, M), rows sum to 1."""
    m = weights.shape[1]
    if m < 2:
        return weights.new_zeros(())
    return -(weights * torch.log(weights.clamp(min=eps))).sum(1).mean() / math.log(m)


def facing_loss(normals: torch.Tensor, evidence: torch.Tensor, weights: torch.Tensor,
                per_instance: bool = False) -> torch.Tensor:
    """Each part's visible side must face the camera.

    For instance b and part j, ``n̄_bj = Σ_i e_bi w_ij n_bi`` sums the normals of the vertices the
    keypoints show, weighted by their evidence e (pixels mapping to the vertex) and part weight; the loss
    is ``Σ_bj m_bj max(0, n̄_bj,z / |n̄_bj|) / Σ_bj m_bj`` with ``m_bj = Σ_i e_bi w_ij``, or with ``per_instance``
    the (B,) ``Σ_j m_bj max(0, ...) / Σ_j m_bj`` of each instance alone.

    Args:
        normals: (B, N, 3) float unit vertex normals, camera frame (z away from the camera), e.g.
            ``ModelOutput.normals``. evidence: (B, N) float >= 0, 0 where invisible (pixel counts, or the
            visibility as 0/1). weights: (N, M) float part weights (rows sum to 1).
    """
    agg = torch.einsum("bnc,bn,nm->bmc", normals, evidence, weights)  # (B, M, 3)
    mass = evidence @ weights  # (B, M)
    z = agg[..., 2] / agg.norm(dim=-1).clamp(min=1e-12)
    if per_instance:
        return (mass * torch.relu(z)).sum(1) / mass.sum(1).clamp(min=1e-12)
    return (mass * torch.relu(z)).sum() / mass.sum().clamp(min=1e-12)


def facing_gate(pred: torch.Tensor, xy: torch.Tensor, scale: float) -> torch.Tensor:
    """(B, N) float in (0, 1]: ``exp(-r² / scale²)`` of each keypoint's re-projection residual r, the weight of its
    evidence in :func:`facing_loss` (``loss.facing_gate``). A keypoint naming a vertex its pixel does not show (a
    left/right mirror patch, a hidden vertex named at the silhouette) is one the model cannot place where it was
    seen: its large residual keeps it from forcing a hidden side to face the camera.

    Args:
        pred, xy: (B, N, 2) float projected (detached: the gate passes no gradient) and observed keypoints.
        scale: g, normalised keypoint units.
    """
    return torch.exp(-((pred - xy) ** 2).sum(-1) / scale**2)


def self_visibility(points: torch.Tensor, faces: torch.Tensor, z_max: float = 0.0) -> torch.Tensor:
    """(B, N) float 0/1: 1 where vertex i faces the camera in the predicted shape ``points`` (its area-weighted mesh
    normal has z <= ``z_max``, z pointing away from the camera), 0 where it is turned away
    (``loss.self_visibility``, ``loss.self_visibility_z``). A pixel naming a vertex the body hides from it (a
    silhouette's far side, a left/right mirror patch) mostly names one the prediction turns away: on the default
    data this flag finds those keypoints with a ROC AUC of 0.87, the stored confidence with 0.63
    (``scripts/hidden_keypoints.py``).

    Args:
        points: (B, N, 3) float predicted shapes, camera frame (detached by the caller: the flag passes no
            gradient). faces: (F, 3) long template faces.
    """
    return (vertex_normals(points, faces)[..., 2] <= z_max).to(points.dtype)


def oracle_loss(points: torch.Tensor, truth: torch.Tensor, eps: float) -> torch.Tensor:
    """Diagnostic 3D loss: ``mean ρ(|Y_i − Y*_i|)`` over all vertices of depth-centred shapes.

    Args:
        points, truth: (B, N, 3) float predicted and true shapes, camera frame, normalised keypoint units.
    """
    def centred(p):
        return torch.cat([p[..., :2], p[..., 2:] - p[..., 2:].mean(1, keepdim=True)], dim=-1)

    return pseudo_huber(((centred(points) - centred(truth)) ** 2).sum(-1), eps).mean()


class TrainingObjective(nn.Module):
    """The model, Ψ and the loss operators in one module, so DistributedDataParallel syncs all of them.

    ``forward(xy, visible, truth=None, count=None, confidence=None)`` -> (total loss, {name: detached value}) for
    normalised keypoints xy (B, N, 2), visible (B, N), for ``loss.oracle_3d`` the true shapes (B, N, 3) in the same
    frame, for ``loss.facing`` the pixel counts (B, N) of the keypoints (None: visibility alone), and for
    ``loss.confidence`` the keypoints' confidence (B, N), the weights of the re-projection loss (None: 1).
    The logged dict also holds ``share_<term>``: each weighted term's share of the total.

    Args:
        faces: (F, 3) int template faces (needed by ``loss.facing``). vertex_part: (N,) int each vertex's
            DensePose part (needed by ``loss.mirror_parts: limbs``).
    """

    def __init__(self, model: LiftingModel, cfg: LossParams, arap: ArapWeights | None,
                 faces: np.ndarray | None = None, vertex_part: np.ndarray | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.weights = {
            "canonicalisation": cfg.canonicalisation,
            "arap": cfg.arap if model.type != "c3dpo" else 0.0,
            "entropy": cfg.entropy if model.type == "dp3d" and model.cfg.parts > 1 else 0.0,
            "facing": cfg.facing if model.type == "dp3d" else 0.0,
            "oracle_3d": cfg.oracle_3d,
        }
        self.psi = make_psi(model) if self.weights["canonicalisation"] > 0 else None
        self.progress = 1.0  # share of training done: the training loop sets it each step (the norm's annealing)
        self.register_buffer("mirror", loss_mirror(cfg, model.template, vertex_part), persistent=False)
        if self.weights["arap"] > 0:
            if arap is None:
                raise InputError("loss.arap > 0 needs the template's ARAP weights")
            self.arap = ArapOperator(model.template, arap)
        else:
            self.arap = None
        self_visible = cfg.self_visibility > 0 and model.type == "dp3d"  # like facing: not in the paper's baselines
        if self_visible and faces is None:
            raise InputError("loss.self_visibility > 0 needs the template's faces")
        self.register_buffer("faces", torch.as_tensor(np.asarray(faces), dtype=torch.long) if self_visible else None,
                             persistent=False)
        if self.weights["facing"] > 0:
            if faces is None:
                raise InputError("loss.facing > 0 needs the template's faces")
            x = model.template[None]
            model.set_rest_normals(vertex_normals(x, torch.as_tensor(np.asarray(faces), dtype=torch.long))[0])

    def reprojection_scale(self) -> float:
        """The re-projection norm's scale c now (``loss.robust_scale``, or ``huber_eps``; annealed)."""
        cfg = self.cfg
        end = cfg.robust_scale or cfg.huber_eps
        return annealed_scale(self.progress, end, cfg.robust_scale_start, cfg.robust_anneal)

    def forward(self, xy: torch.Tensor, visible: torch.Tensor, truth: torch.Tensor | None = None,
                count: torch.Tensor | None = None, confidence: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model(xy, visible)
        cfg = self.cfg
        seen = None  # loss.self_visibility: 0 where the prediction turns the keypoint's vertex away
        if self.faces is not None and self.progress >= cfg.self_visibility:
            seen = self_visibility(out.points.detach(), self.faces, cfg.self_visibility_z)
            confidence = seen if confidence is None else confidence * seen
        terms = {"reprojection": reprojection_loss(out.points[..., :2], xy, visible, self.reprojection_scale(),
                                                   out.uncertainty, cfg.b_min, cfg.robust, self.mirror,
                                                   weight=confidence)}
        if self.psi is not None:
            terms["canonicalisation"] = canonicalisation_loss(self.model, self.psi, out.shape, cfg.huber_eps,
                                                              samples=cfg.canon_samples)
        if self.arap is not None:  # batches come shuffled: the first rows are a random subset
            sub = out.shape[: cfg.arap_instances] if cfg.arap_instances else out.shape
            terms["arap"] = arap_loss(self.arap, sub, cfg.arap_rotations)
        if self.weights["entropy"] > 0:
            terms["entropy"] = entropy_loss(self.model.segmentation())
        if self.weights["facing"] > 0:
            evidence = visible.to(xy.dtype) if count is None else count.to(xy.dtype) * visible
            if seen is not None:
                evidence = evidence * seen
            if cfg.facing_gate > 0:  # only the keypoints the model explains say which way their part faces
                evidence = evidence * facing_gate(out.points[..., :2].detach(), xy, cfg.facing_gate)
            terms["facing"] = facing_loss(out.normals, evidence, self.model.segmentation())
        if self.weights["oracle_3d"] > 0:
            if truth is None:
                raise InputError("loss.oracle_3d > 0 needs the true shapes (synthetic ground truth)")
            terms["oracle_3d"] = oracle_loss(out.points, truth, cfg.huber_eps)
        weighted = {k: v * (self.weights[k] if k != "reprojection" else 1.0) for k, v in terms.items()}
        total = sum(weighted.values())
        logged = {k: v.detach() for k, v in terms.items()}
        denom = total.detach().abs().clamp(min=1e-30)
        logged.update({f"share_{k}": v.detach() / denom for k, v in weighted.items()})
        if out.uncertainty is not None:  # the plain pixel error stays comparable across models
            logged["reprojection_error"] = (((out.points[..., :2] - xy) ** 2).sum(-1).sqrt() * visible).sum().detach() \
                / visible.sum().clamp(min=1)
        return total, logged
