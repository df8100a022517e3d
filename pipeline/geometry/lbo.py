"""Laplace-Beltrami eigenbasis of a mesh (METHOD.md §4), and ``lbo.npz``, its file (:func:`save_basis`,
:func:`load_basis`).

Solves ``L φ = λ M φ`` for the K smallest pairs, with ``L`` the cotangent Laplacian (positive
semi-definite) and ``M`` the lumped mass matrix, both from ``robust_laplacian`` (intrinsic
Delaunay, so obtuse triangles do not give negative weights). ``eigsh`` runs in shift-invert mode
from a fixed start vector; signs are fixed so that results are reproducible bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import robust_laplacian
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from pipeline.core.errors import InputError
from pipeline.core.io import load_npz, save_npz

__all__ = ["Eigenbasis", "laplacian", "eigenbasis", "unit_rms", "save_basis", "load_basis"]


@dataclass(frozen=True)
class Eigenbasis:
    """The ``lbo`` stage's result. evals: (K,) float64 ascending. evecs: (N, K) float64, M-orthonormal
    (``evecsᵀ M evecs = I``). mass: (N,) float64 lumped vertex areas (the diagonal of M)."""

    evals: np.ndarray
    evecs: np.ndarray
    mass: np.ndarray

    def lines(self) -> list[str]:
        near_zero = int(np.sum(np.abs(self.evals) < 1e-6 * self.evals[-1]))
        return [f"{len(self.evals)} eigenpairs of {len(self.mass)} vertices: eigenvalues {self.evals[0]:.3g} .. "
                f"{self.evals[-1]:.3g}; {near_zero} near zero"]


def laplacian(vertices: np.ndarray, faces: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Cotangent Laplacian ``L`` (N, N) positive semi-definite and lumped mass ``M`` (N, N) diagonal."""
    L, M = robust_laplacian.mesh_laplacian(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    return L.tocsr(), M.tocsr()


def eigenbasis(vertices: np.ndarray, faces: np.ndarray, k: int, name: str = "mesh") -> Eigenbasis:
    """The ``k`` smallest generalised eigenpairs of the mesh's Laplace-Beltrami operator.

    Args:
        vertices: (N, 3) float. faces: (F, 3) int. k: number of pairs, 1 <= k < N.
    Returns:
        :class:`Eigenbasis`; each eigenvector's largest-magnitude entry is positive.
    Raises:
        ValueError: ``k`` out of range (names the vertex count).
    """
    n_v = len(vertices)
    if not 1 <= k < n_v:
        raise InputError(f"lbo.k = {k} must be in [1, {n_v - 1}]: {name} has {n_v} vertices")
    L, M = laplacian(vertices, faces)
    mass = M.diagonal()
    # shift slightly below 0 so that L - σM is positive definite despite the zero eigenvalue
    sigma = -1e-6 * abs(L.diagonal().sum() / mass.sum())
    v0 = np.linspace(1.0, 2.0, n_v)
    evals, evecs = sla.eigsh(L.tocsc(), k=k, M=M.tocsc(), sigma=sigma, which="LM", v0=v0)
    order = np.argsort(evals)
    evals, evecs = evals[order], evecs[:, order]
    # re-orthonormalise in the M inner product (Cholesky of the Gram matrix) to remove solver drift
    gram = evecs.T @ (mass[:, None] * evecs)
    evecs = evecs @ np.linalg.inv(np.linalg.cholesky(gram)).T
    sign = np.sign(evecs[np.argmax(np.abs(evecs), axis=0), np.arange(k)])
    evecs = evecs * np.where(sign == 0, 1.0, sign)
    return Eigenbasis(evals, evecs, mass)


def unit_rms(evecs: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """(N, K) eigenvectors scaled to unit RMS over vertices (the scaling the model uses)."""
    return evecs / np.maximum(np.sqrt(np.mean(evecs**2, axis=0, keepdims=True)), eps)


def save_basis(path: str | Path, basis: Eigenbasis, template_hash: str) -> None:
    """Writes ``lbo.npz``: ``evals`` (K,) float64, ``evecs`` (N, K) float32, ``mass`` (N,) float64 and the
    ``template_hash`` of the template it was computed on."""
    save_npz(path, {"evals": basis.evals, "evecs": basis.evecs.astype(np.float32), "mass": basis.mass,
                    "template_hash": np.asarray(template_hash)})


def load_basis(path: str | Path, template_hash: str | None = None) -> Eigenbasis:
    """Reads ``lbo.npz`` (``evecs`` as stored: float32).

    Raises:
        InputError: the file is unreadable, lacks an array, or was computed on another template than
            ``template_hash`` (when given).
    """
    z = load_npz(path, required=("evals", "evecs", "mass", "template_hash"))
    if template_hash is not None and str(z["template_hash"]) != template_hash:
        raise InputError(f"{path} was computed for template {z['template_hash']}, not {template_hash}; rerun lbo "
                         "(dvc repro lbo)")
    return Eigenbasis(z["evals"], z["evecs"], z["mass"])
