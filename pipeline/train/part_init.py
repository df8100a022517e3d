"""A fresh model (:func:`build_model`) and the initial part segmentation of DP3D: the logits ``A`` (K, M) of
``w = softmax(Φ_K A)``.

Sizes: N template vertices, K LBO eigenvectors (unit RMS, the first one constant), M latent parts
(legend: :mod:`pipeline`).

Why not a plain random ``A``: a random row for the *constant* eigenvector φ₀ only adds a random bias
per part, so a few parts swallow the body (measured on the default template: 6 of 10 parts used at
the start, head and both arms in one part) and training never undoes it. Two initialisations:

- ``spectral`` (default): spectral clustering of the template. Each vertex gets the coordinates
  ``e_i = (φ_1(i), …, φ_{M-1}(i))`` of the first M-1 non-constant eigenvectors; an area-weighted
  k-means (k-means++ seeding, the best of a few seeded restarts) finds M centres ``c_j``; the logits
  are ``-|e_i - c_j|² / τ``. Dropping ``-|e_i|²/τ``, which is the same for every part of a vertex,
  this is *exactly* linear in the eigenvectors: ``A[k, j] = 2 c_jk / τ`` for k = 1..M-1 and
  ``A[0, j] = -|c_j|² / τ`` (φ₀ = 1), other rows 0. So every part starts as one coherent region
  (head, a hand, a foot, a thigh, ...) chosen by the geometry alone, and ``τ`` is set so that the median
  gap between a vertex's best and second-best logit is ``sharpness``: soft enough for the
  reprojection loss to move the borders.
- ``random``: the paper's decaying Xavier init (row k has std ``g σ̄ / (1 + k)``) with the row of φ₀
  set to 0, so that no part gets a global head start.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipeline.core.config import ModelParams
from pipeline.core.errors import InputError
from pipeline.template.file import canonical_template
from pipeline.train.model import LiftingModel

__all__ = ["weighted_kmeans", "spectral_logits", "random_logits", "initial_logits", "logit_initialiser",
           "build_model", "KMEANS_RESTARTS"]

KMEANS_RESTARTS = 5


def weighted_kmeans(x: np.ndarray, weights: np.ndarray, m: int, rng: np.random.Generator,
                    iters: int = 100) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means with sample weights and k-means++ seeding.

    Args:
        x: float points, one row of coordinates per vertex (N rows). weights: (N,) float >= 0 (not all 0).
        m: number M of clusters, <= N. rng: the random generator of the seeding.
    Returns:
        centres (M rows of x's coordinates) float64, labels (N,) int64, weighted inertia Σ w |x - c|².
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(weights, np.float64)
    centres = [x[rng.choice(len(x), p=w / w.sum())]]
    for _ in range(1, m):
        d2 = ((x[:, None] - np.asarray(centres)[None]) ** 2).sum(-1).min(1)
        q = w * d2
        centres.append(x[rng.choice(len(x), p=q / q.sum())] if q.sum() > 0 else x[rng.integers(len(x))])
    c = np.asarray(centres)
    labels = np.zeros(len(x), np.int64)
    for _ in range(iters):
        labels = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        new = c.copy()
        for j in range(m):
            sel = labels == j
            if w[sel].sum() > 0:
                new[j] = np.average(x[sel], axis=0, weights=w[sel])
        if np.allclose(new, c, rtol=0, atol=1e-12):
            break
        c = new
    inertia = float((w * ((x - c[labels]) ** 2).sum(1)).sum())
    return c, labels, inertia


def spectral_logits(basis: np.ndarray, m: int, areas: np.ndarray, sharpness: float,
                    rng: np.random.Generator) -> np.ndarray:
    """(K, M) float32 ``A`` of the ``spectral`` initialisation (module docstring).

    Args:
        basis: (N, K) float unit-RMS LBO eigenvectors, the first constant (= 1).
        m: parts M. areas: (N,) float vertex areas (k-means weights). sharpness: median logit gap.
    """
    basis = np.asarray(basis, np.float64)
    n, k = basis.shape
    a = np.zeros((k, m))
    d = min(m - 1, k - 1)
    if m == 1 or d == 0:
        return a.astype(np.float32)
    emb = basis[:, 1:1 + d]  # (N, min(M, K) - 1)
    best = min((weighted_kmeans(emb, areas, m, rng) for _ in range(KMEANS_RESTARTS)), key=lambda r: r[2])
    c = best[0]  # (M, min(M, K) - 1)
    d2 = ((emb[:, None] - c[None]) ** 2).sum(-1)  # (N, M)
    two = np.sort(d2, axis=1)[:, :2]
    tau = float(np.median(two[:, 1] - two[:, 0])) / sharpness
    tau = max(tau, 1e-12)
    a[1:1 + d] = 2.0 * c.T / tau
    a[0] = -(c**2).sum(1) / tau / float(np.mean(basis[:, 0]))
    return a.astype(np.float32)


def random_logits(k: int, m: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(K, M) float32 decaying Xavier ``A``: row k has std ``sqrt(2/(K+M)) σ̄ / (1 + k)``, row 0 zero."""
    std = math.sqrt(2.0 / (k + m)) * sigma / (1.0 + np.arange(k))
    a = rng.standard_normal((k, m)) * std[:, None]
    a[0] = 0.0
    return a.astype(np.float32)


def initial_logits(basis: np.ndarray, m: int, mode: str, sharpness: float, sigma: float,
                   areas: np.ndarray | None, seed: int) -> np.ndarray:
    """(K, M) float32 initial ``A`` for ``model.segmentation_init`` = ``spectral`` or ``random``.

    Args:
        basis: (N, K) float unit-RMS eigenvectors. areas: (N,) float vertex areas (None: equal).
        seed: seeds k-means++ or the random rows.
    """
    rng = np.random.default_rng(seed)
    if mode == "spectral":
        areas = np.ones(len(basis)) if areas is None else np.asarray(areas, np.float64)
        return spectral_logits(basis, m, areas, sharpness, rng)
    if mode == "random":
        return random_logits(basis.shape[1], m, sigma, rng)
    raise InputError(f"model.segmentation_init = {mode!r}: allowed spectral or random")


def logit_initialiser(cfg: ModelParams, areas: np.ndarray | None = None) -> Callable[[np.ndarray, int], np.ndarray]:
    """``(basis (N, K), seed) -> (K, M)`` initial logits as ``cfg`` (``model``) asks, for :class:`LiftingModel`.
    areas: (N,) float vertex areas weighting the spectral clustering (None: equal)."""
    def init(basis: np.ndarray, seed: int) -> np.ndarray:
        return initial_logits(basis, cfg.parts, cfg.segmentation_init, cfg.init_sharpness, cfg.sigma_init, areas,
                              seed)
    return init


def build_model(cfg: ModelParams, vertices: np.ndarray, up: np.ndarray, forward: np.ndarray,
                evecs: np.ndarray) -> LiftingModel:
    """A fresh model from the template (metres, as in template.npz) and unit-RMS LBO eigenvectors, its spectral
    part initialisation weighting every vertex alike (the trainer weights them by area)."""
    canon, _ = canonical_template(vertices, up, forward)
    return LiftingModel(cfg, canon, evecs, init_logits=logit_initialiser(cfg))
