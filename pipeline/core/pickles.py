"""Reading the pickled files users give us (SMPL models, DensePose meshes, model weights) safely.

A pickle can run code when loaded. These files only ever hold arrays in plain containers, so they
are read by a restricted unpickler that admits numpy arrays, scipy sparse matrices, plain
containers and ``chumpy`` objects (SMPL's official files; each becomes a stand-in holding its
array), and refuses anything else with :class:`pickle.UnpicklingError`. Files written by
``torch.save`` (zip archives) are read with ``torch.load(weights_only=True)``, PyTorch's own
restricted loader.

:data:`NUMPY_GLOBALS` is the one list of numpy names a pickle of arrays needs (shared with the
DensePose dump loader, :mod:`pipeline.densepose.precomputed`): the ``ndarray`` and ``dtype`` classes, the
``_reconstruct`` function ``ndarray.__reduce__`` names (protocols 0-4), ``_frombuffer``
(``__reduce_ex__`` at protocol 5) and ``scalar`` (numpy scalars), under both the numpy 1
(``numpy.core``) and numpy 2 (``numpy._core``) module names. None of them calls anything it is
given: they build an array, a dtype or a scalar from bytes (an object array's elements are
unpickled by the same restricted unpickler). :data:`BYTES_GLOBALS` is how protocols 0-2 write ``bytes``
(an array's data among them): ``_codecs.encode(text, 'latin1')``, and ``bytes()`` for empty bytes; each
is admitted in exactly that form (a latin-1 string, no arguments), anything else refused. :func:`unreadable_message` says "truncated or corrupt"
for a cut ``torch.save`` zip archive or pickle, whatever error the reader tripped over.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.core.errors import InputError

__all__ = ["NUMPY_GLOBALS", "BYTES_GLOBALS", "ArrayUnpickler", "read_pickle", "as_array", "looks_truncated", "unreadable_message"]


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


def _numpy_globals() -> dict[str, Any]:
    try:  # numpy 2
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric
    found = {"ndarray": np.ndarray, "dtype": np.dtype, "multiarray._reconstruct": multiarray._reconstruct,
             "multiarray.scalar": multiarray.scalar, "numeric._frombuffer": numeric._frombuffer}
    return {f"numpy{sub}.{name}": obj for name, obj in found.items()
            for sub in (("",) if "." not in name else (".core", "._core"))}


NUMPY_GLOBALS: dict[str, Any] = _numpy_globals()
"""``module.name`` -> object, for the numpy names a pickle of arrays refers to (and nothing else)."""



def _latin1_bytes(text, encoding):
    """``_codecs.encode`` as protocols 0-2 pickle non-empty bytes: ``(text, 'latin1')`` -> bytes, nothing else."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode of a {type(text).__name__} as {encoding!r}: only "
                                     "a str as 'latin1' (bytes in a protocol 0-2 pickle) is allowed")
    return text.encode("latin1")


def _empty_bytes(*args):
    """``bytes()`` as protocols 0-2 pickle empty bytes: no arguments, nothing else."""
    if args:
        raise pickle.UnpicklingError(f"refusing bytes() with {len(args)} argument(s): only bytes() (empty bytes in "
                                     "a protocol 0-2 pickle) is allowed")
    return b""


BYTES_GLOBALS: dict[str, Any] = {"_codecs.encode": _latin1_bytes, "builtins.bytes": _empty_bytes,
                                 "__builtin__.bytes": _empty_bytes}
"""``module.name`` -> a checked stand-in, for how protocols 0-2 pickle ``bytes`` (module docstring)."""

_OTHERS = {"copy_reg._reconstructor", "copyreg._reconstructor", "__builtin__.object", "builtins.object",
           "collections.OrderedDict"}
_RENAMED = {"copy_reg": "copyreg", "__builtin__": "builtins"}
_SPARSE = {"csc_matrix", "csr_matrix", "coo_matrix"}
_ZIP_MAGIC = b"PK\x03\x04"


class ArrayUnpickler(pickle.Unpickler):
    """Admits arrays, sparse matrices, plain containers and chumpy stand-ins; refuses the rest."""

    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyArray
        key = f"{module}.{name}"
        if key in NUMPY_GLOBALS:
            return NUMPY_GLOBALS[key]
        if key in BYTES_GLOBALS:
            return BYTES_GLOBALS[key]
        if key in _OTHERS:
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
        if looks_truncated(path, e):
            raise InputError(unreadable_message(path, what, e)) from e
        raise InputError(f"{path}: refused as {what}: {e}") from e
    except Exception as e:
        raise InputError(unreadable_message(path, what, e)) from e


def _starts_like_zip(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == _ZIP_MAGIC


def looks_truncated(path: str | Path, e: BaseException) -> bool:
    """Whether ``e``, raised reading ``path``, comes from a cut or damaged file: a file that starts
    as a zip archive (``torch.save``) but has no readable directory, or a pickle that ends early."""
    said = str(e).lower()
    if isinstance(e, (EOFError, zipfile.BadZipFile)) or any(w in said for w in ("truncated", "corrupt",
                                                                                 "central directory")):
        return True
    return _starts_like_zip(path) and not zipfile.is_zipfile(path)


def unreadable_message(path: str | Path, what: str, e: BaseException) -> str:
    """One line for a file that could not be read as ``what``: "truncated or corrupt" when it is."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if not looks_truncated(path, e):
        return f"{path}: not readable as {what} ({type(e).__name__}: {first})"
    if _starts_like_zip(path):
        why = ("its zip directory, at the end of the file, is missing: the file was cut short"
               if not zipfile.is_zipfile(path) else f"{type(e).__name__}: {first}")
        return f"{path}: truncated or corrupt zip archive (a torch.save file), not readable as {what} ({why}); " \
               "copy or write the file again"
    return (f"{path}: truncated or corrupt pickle, not readable as {what} ({type(e).__name__}: {first}); "
            "copy or write the file again")


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
