"""Readers for the licensed SMPL model file and DensePose's ``UV_Processed.mat``.

Neither file is bundled: users give their paths in ``params.yaml``. SMPL's official ``.pkl`` files
hold ``chumpy`` objects and scipy sparse matrices pickled by Python 2; they are read by a
restricted unpickler that admits numpy arrays, scipy sparse matrices and plain containers, maps
every ``chumpy`` class to a stand-in holding its array, and refuses anything else (a pickle can run
code). ``.npz`` model files (as SMPL-X ships) are read too.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

__all__ = ["read_smpl_model", "read_uv_processed", "UV_KEYS"]

UV_KEYS = ("All_FaceIndices", "All_Faces", "All_U_norm", "All_V_norm", "All_vertices")
_SMPL_KEYS = ("v_template", "f", "weights", "J_regressor")


class _ChumpyArray:
    """Stand-in for a pickled ``chumpy`` object: keeps the state, whose ``x`` is the array."""

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}

    def array(self) -> np.ndarray:
        if "x" not in self.state:
            raise ValueError("a chumpy object without an array value")
        return np.asarray(self.state["x"])


_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"), ("_codecs", "encode"),
}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix"}


class _SmplUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyArray
        if (module, name) in _ALLOWED:
            mod = {"copy_reg": "copyreg", "__builtin__": "builtins",
                   "numpy.core.multiarray": "numpy._core.multiarray"}.get(module, module)
            return getattr(__import__(mod, fromlist=[name]), name)
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return getattr(sp, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not an array, sparse matrix or chumpy object")


def _as_array(x) -> np.ndarray | sp.spmatrix:
    if isinstance(x, _ChumpyArray):
        return x.array()
    if sp.issparse(x):
        return x
    return np.asarray(x)


def read_smpl_model(path: str | Path) -> dict:
    """Reads an SMPL model file (``.pkl`` official format, or ``.npz``).

    Returns:
        dict with ``v_template`` (V, 3) float64, ``f`` (F, 3) int64, ``weights`` (V, 24) float64,
        ``J_regressor`` (24, V) float64 dense.
    Raises:
        FileNotFoundError, ValueError: naming the file and the problem.
    """
    path = Path(path)
    if not str(path) or not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path!s} (set template.smpl_model in params.yaml)")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        else:
            with open(path, "rb") as fh:
                raw = _SmplUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: {e}") from e
    except Exception as e:
        raise ValueError(f"{path}: not a readable SMPL model file ({type(e).__name__}: {e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an SMPL model file holds a dict, got {type(raw).__name__}")
    missing = [k for k in _SMPL_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing SMPL key(s) {', '.join(missing)}")
    out = {k: _as_array(raw[k]) for k in _SMPL_KEYS}
    jr = out["J_regressor"]
    out["J_regressor"] = np.asarray(jr.toarray() if sp.issparse(jr) else jr, np.float64)
    out["v_template"] = np.asarray(out["v_template"], np.float64)
    out["f"] = np.asarray(out["f"]).astype(np.int64)
    out["weights"] = np.asarray(out["weights"], np.float64)
    n_v = len(out["v_template"])
    for key, shape in (("v_template", (n_v, 3)), ("weights", (n_v, None)), ("J_regressor", (None, n_v))):
        got = out[key].shape
        if len(got) != 2 or any(s is not None and s != g for s, g in zip(shape, got)):
            raise ValueError(f"{path}: {key} has shape {got}, expected {shape} (None: any)")
    return out


def read_uv_processed(path: str | Path) -> dict:
    """Reads DensePose's ``UV_Processed.mat`` (arrays as stored: 1-based indices).

    Returns:
        dict of the five :data:`UV_KEYS` arrays.
    """
    path = Path(path)
    if not str(path) or not path.is_file():
        raise FileNotFoundError(f"UV_Processed.mat not found: {path!s} (set template.smpl_uv in params.yaml)")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:
        raise ValueError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from e
    missing = [k for k in UV_KEYS if k not in mat]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    return {k: np.asarray(mat[k]) for k in UV_KEYS}
