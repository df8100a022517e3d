"""The SMPL source, on small stand-in files with the keys and layout of the licensed ones."""

import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from pipeline.template.build import smpl_template
from pipeline.template.smpl import read_smpl_model, read_uv_processed


def _fake_chumpy():
    """A module named chumpy.ch with a class Ch like chumpy's (its state holds the array in 'x')."""
    pkg = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch.Ch = Ch
    pkg.ch = ch
    return pkg, ch


def write_smpl_standins(t, folder):
    """An SMPL-like .pkl (chumpy arrays, sparse J_regressor) and UV_Processed.mat from template t."""
    n = len(t.vertices)
    rng = np.random.default_rng(0)
    jr = np.zeros((24, n))
    for j in range(24):
        idx = rng.choice(n, 6, replace=False)
        jr[j, idx] = 1 / 6
    pkg, ch = _fake_chumpy()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch
    try:
        model = {"v_template": ch.Ch(t.vertices.astype(np.float64)), "f": t.faces.astype(np.uint32),
                 "weights": ch.Ch(rng.random((n, 24))), "J_regressor": sp.csc_matrix(jr),
                 "kintree_table": np.zeros((2, 24), np.int64), "bs_type": "lrotmin"}
        with open(folder / "SMPL_NEUTRAL.pkl", "wb") as fh:
            pickle.dump(model, fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    scipy.io.savemat(folder / "UV_Processed.mat", {
        "All_FaceIndices": t.face_part[:, None].astype(np.float64),
        "All_Faces": (t.chart_faces + 1).astype(np.float64),
        "All_U_norm": t.chart_uv[:, :1].astype(np.float64),
        "All_V_norm": t.chart_uv[:, 1:].astype(np.float64),
        "All_vertices": (t.chart_vertex + 1)[:, None].astype(np.float64)})
    return folder / "SMPL_NEUTRAL.pkl", folder / "UV_Processed.mat", jr


def test_smpl_source_reads_the_files_into_a_template(template, tmp_path):
    pkl, mat, jr = write_smpl_standins(template, tmp_path)
    t = smpl_template(pkl, mat, cse_dim=8)
    assert np.allclose(t.vertices, template.vertices)
    assert np.array_equal(t.faces, template.faces) and np.array_equal(t.face_part, template.face_part)
    assert np.allclose(t.chart_uv, template.chart_uv, atol=1e-6)
    assert t.source == "smpl" and t.topology == "SMPL_NEUTRAL.pkl" and t.embedding.shape == (len(t.vertices), 8)
    assert t.charts == "densepose"  # DensePose's own charts, as given: real chart output reads right
    assert np.allclose(t.joint_regressor[0], jr[8] / jr[8].sum(), atol=1e-6)  # right ankle = SMPL joint 8


def test_npz_model_file(template, tmp_path):
    pkl, mat, jr = write_smpl_standins(template, tmp_path)
    np.savez(tmp_path / "model.npz", v_template=template.vertices, f=template.faces,
             weights=np.ones((len(template.vertices), 24)) / 24, J_regressor=jr)
    m = read_smpl_model(tmp_path / "model.npz")
    assert m["J_regressor"].shape == (24, len(template.vertices))


def test_code_in_a_model_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"v_template": Evil()}, fh)
    with pytest.raises(ValueError, match=r"evil.pkl: refused as an SMPL model file: refusing to load (posix|os|nt)\.system"):
        read_smpl_model(tmp_path / "evil.pkl")


def test_missing_and_broken_files_are_named(template, tmp_path):
    with pytest.raises(FileNotFoundError, match="template.smpl_model"):
        read_smpl_model("")
    with pytest.raises(FileNotFoundError, match="UV_Processed.mat"):
        read_uv_processed(tmp_path / "UV_Processed.mat")
    scipy.io.savemat(tmp_path / "uv.mat", {"All_FaceIndices": np.ones((3, 1))})
    with pytest.raises(ValueError, match="uv.mat: missing key.*All_Faces"):
        read_uv_processed(tmp_path / "uv.mat")
    with open(tmp_path / "partial.pkl", "wb") as fh:
        pickle.dump({"v_template": np.zeros((3, 3))}, fh)
    with pytest.raises(ValueError, match="partial.pkl: missing SMPL key"):
        read_smpl_model(tmp_path / "partial.pkl")


def test_nan_vertex_in_model_is_refused(template, tmp_path):
    pkl, mat, jr = write_smpl_standins(template, tmp_path)
    v = template.vertices.astype(np.float64).copy()
    v[7] = np.nan
    np.savez(tmp_path / "nan.npz", v_template=v, f=template.faces, weights=np.ones((len(v), 24)), J_regressor=jr)
    with pytest.raises(ValueError, match="nan.npz: 1 vertices are NaN"):
        smpl_template(tmp_path / "nan.npz", mat)
