"""Readers for the licensed SMPL model file and DensePose's ``UV_Processed.mat``.

Neither file is bundled: users give their paths in ``params.yaml``. SMPL's official ``.pkl`` files
hold ``chumpy`` objects and scipy sparse matrices pickled by Python 2; they are read by the
restricted unpickler of :mod:`pipeline.core.pickles` (a pickle can run code). ``.npz`` model files (as
SMPL-X ships) are read too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from pipeline.core.errors import InputError
from pipeline.core.pickles import as_array, read_pickle

__all__ = ["read_smpl_model", "read_uv_processed", "UV_KEYS"]

UV_KEYS = ("All_FaceIndices", "All_Faces", "All_U_norm", "All_V_norm", "All_vertices")
_SMPL_KEYS = ("v_template", "f", "weights", "J_regressor")


def read_smpl_model(path: str | Path) -> dict:
    """Reads an SMPL model file (``.pkl`` official format, or ``.npz``).

    Returns:
        dict with ``v_template`` (N, 3) float64, ``f`` (F, 3) int64, ``weights`` (N, 24) float64,
        ``J_regressor`` (24, N) float64 dense.
    Raises:
        FileNotFoundError, ValueError: naming the file and the problem.
    """
    path = Path(path)
    if not str(path) or not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path!s} (set template.smpl_model in params.yaml)")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                raw = {k: z[k] for k in z.files}
        except Exception as e:
            raise InputError(f"{path}: not a readable SMPL model file ({type(e).__name__}: {e})") from e
    else:
        raw = read_pickle(path, "an SMPL model file")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: an SMPL model file holds a dict, got {type(raw).__name__}")
    missing = [k for k in _SMPL_KEYS if k not in raw]
    if missing:
        raise InputError(f"{path}: missing SMPL key(s) {', '.join(missing)}")
    out = {k: as_array(raw[k]) for k in _SMPL_KEYS}
    jr = out["J_regressor"]
    out["J_regressor"] = np.asarray(jr.toarray() if sp.issparse(jr) else jr, np.float64)
    out["v_template"] = np.asarray(out["v_template"], np.float64)
    out["f"] = np.asarray(out["f"]).astype(np.int64)
    out["weights"] = np.asarray(out["weights"], np.float64)
    n_v = len(out["v_template"])
    for key, shape in (("v_template", (n_v, 3)), ("weights", (n_v, None)), ("J_regressor", (None, n_v))):
        got = out[key].shape
        if len(got) != 2 or any(s is not None and s != g for s, g in zip(shape, got)):
            raise InputError(f"{path}: {key} has shape {got}, expected {shape} (None: any)")
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
        raise InputError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from e
    missing = [k for k in UV_KEYS if k not in mat]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    return {k: np.asarray(mat[k]) for k in UV_KEYS}
