"""Reading the pickled files users give us (SMPL models, DensePose meshes, model weights) safely.

A pickle can run code when loaded. These files only ever hold arrays in plain containers, so they
are read by a restricted unpickler that admits numpy arrays, scipy sparse matrices, plain
containers and ``chumpy`` objects (SMPL's official files; each becomes a stand-in holding its
array), and refuses anything else with :class:`pickle.UnpicklingError`. Files written by
``torch.save`` (zip archives) are read with ``torch.load(weights_only=True)``, PyTorch's own
restricted loader.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.errors import InputError

__all__ = ["ArrayUnpickler", "read_pickle", "as_array"]


class _ChumpyArray:
    """Stand-in for a pickled ``chumpy`` object: keeps the state, whose ``x`` is the array."""

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {"x": state}

    def array(self) -> np.ndarray:
        if "x" not in self.state:
            raise InputError("a chumpy object without an array value")
        return np.asarray(self.state["x"])


_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
    ("__builtin__", "object"), ("builtins", "object"), ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}
_RENAMED = {"copy_reg": "copyreg", "__builtin__": "builtins", "numpy.core.multiarray": "numpy._core.multiarray"}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix"}


class ArrayUnpickler(pickle.Unpickler):
    """Admits arrays, sparse matrices, plain containers and chumpy stand-ins; refuses the rest."""

    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyArray
        if (module, name) in _ALLOWED:
            mod = _RENAMED.get(module, module)
            return getattr(__import__(mod, fromlist=[name]), name)
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return getattr(sp, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not an array, sparse matrix or chumpy object")


def read_pickle(path: str | Path, what: str) -> Any:
    """Loads a pickle (Python 2 or 3) or a ``torch.save`` file of arrays in plain containers.

    Args:
        path: the file.  what: what it should be, for the error messages ("an SMPL model file").
    Raises:
        FileNotFoundError: no such file.  ValueError: naming the file, when it is not readable or
            holds anything but arrays in containers (a pickle that would run code is refused).
    """
    path = Path(path)
    if not str(path) or not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path!s}")
    try:
        if zipfile.is_zipfile(path):
            import torch

            return torch.load(path, map_location="cpu", weights_only=True)
        with open(path, "rb") as fh:
            return ArrayUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise InputError(f"{path}: refused as {what}: {e}") from e
    except Exception as e:
        raise InputError(f"{path}: not readable as {what} ({type(e).__name__}: {e})") from e


def as_array(x) -> np.ndarray | sp.spmatrix:
    """A loaded value as an array: chumpy stand-ins give their array, tensors their numpy copy,
    sparse matrices stay sparse."""
    if isinstance(x, _ChumpyArray):
        return x.array()
    if sp.issparse(x):
        return x
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)
