import numpy as np
import pytest

from pipeline.geometry.lbo import eigenbasis, laplacian, unit_rms


def test_unit_sphere_spectrum(icosphere):
    v, f = icosphere
    b = eigenbasis(v, f, 16)
    expected = np.array([0] + [2] * 3 + [6] * 5 + [12] * 7, float)
    assert abs(b.evals[0]) < 1e-8
    assert np.allclose(b.evals[1:], expected[1:], rtol=0.03), b.evals


def test_m_orthonormal_ascending_and_constant_first(icosphere):
    v, f = icosphere
    b = eigenbasis(v, f, 24)
    gram = b.evecs.T @ (b.mass[:, None] * b.evecs)
    assert np.abs(gram - np.eye(24)).max() < 1e-6
    assert np.all(np.diff(b.evals) >= -1e-9)
    assert np.ptp(b.evecs[:, 0]) < 1e-6 * np.abs(b.evecs[:, 0]).max()
    L, M = laplacian(v, f)
    resid = L @ b.evecs - (M @ b.evecs) * b.evals
    assert np.abs(resid).max() < 1e-6 * max(1, b.evals.max())


def test_deterministic(icosphere):
    v, f = icosphere
    a, b = eigenbasis(v, f, 8), eigenbasis(v, f, 8)
    assert np.array_equal(a.evecs, b.evecs) and np.array_equal(a.evals, b.evals)


def test_template_has_exactly_one_zero_eigenvalue(template):
    b = eigenbasis(template.vertices.astype(np.float64), template.faces, 16)
    assert np.sum(np.abs(b.evals) < 1e-6 * b.evals[-1]) == 1
    assert b.evals[1] > 1e-3 * b.evals[-1]


def test_k_too_large_is_an_error(icosphere):
    v, f = icosphere
    with pytest.raises(ValueError, match=r"lbo.k = 2562 must be in \[1, 2561\].*2562 vertices"):
        eigenbasis(v, f, len(v))


def test_unit_rms():
    x = np.random.default_rng(0).normal(size=(100, 3)) * [1, 5, 0.1]
    assert np.allclose(np.sqrt(np.mean(unit_rms(x) ** 2, axis=0)), 1)


def test_basis_file_round_trip_and_template_check(tmp_path, icosphere):
    from pipeline.core.errors import InputError
    from pipeline.geometry.lbo import load_basis, save_basis

    v, f = icosphere
    basis = eigenbasis(v, f, 8)
    save_basis(tmp_path / "lbo.npz", basis, "abc")
    back = load_basis(tmp_path / "lbo.npz", "abc")
    assert back.evecs.dtype == np.float32 and np.array_equal(back.evecs, basis.evecs.astype(np.float32))
    assert np.array_equal(back.evals, basis.evals) and np.array_equal(back.mass, basis.mass)
    with pytest.raises(InputError, match="computed for template abc, not xyz; rerun lbo"):
        load_basis(tmp_path / "lbo.npz", "xyz")
