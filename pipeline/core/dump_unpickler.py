"""The restricted unpickler of DensePose dumps: the security boundary of the ``precomputed`` source.

``apply_net.py dump`` files are pickles (a ``torch.save`` zip archive, the legacy ``torch.save``
stream, or a plain pickle); unpickling runs whatever functions the file names, so :func:`load_dump`
admits only what a dump can hold: the ``densepose.structures`` and ``detectron2.structures`` classes
it refers to, mapped to the stand-ins below (same field names as Detectron2's; nothing from
Detectron2 is imported), PyTorch's tensor and storage rebuild functions (PyTorch's own weights-only
allowlist), numpy arrays (:data:`pipeline.core.pickles.NUMPY_GLOBALS`, nothing else of numpy), bytes as
protocols 0-2 write them (:data:`pipeline.core.pickles.BYTES_GLOBALS`: ``_codecs.encode`` of a latin-1 string,
``bytes()`` for empty bytes, no other call) and plain containers. Anything else (``os.system``, ``builtins.eval``...) is refused with
:class:`UnsafeDumpError` naming the file and the class, also when it hides inside a tensor storage.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.core.errors import InputError, UserError
from pipeline.core.pickles import BYTES_GLOBALS, NUMPY_GLOBALS, unreadable_message

__all__ = ["UnsafeDumpError", "ChartResult", "EmbeddingOutput", "ChartPredictorOutput", "Boxes", "Instances",
           "restricted_pickle", "load_dump"]


class UnsafeDumpError(UserError, pickle.UnpicklingError):
    """A dump refers to a class or function outside the allowlist."""


# --- stand-ins for the classes a dump refers to (same field names as Detectron2's) -------------

@dataclass
class ChartResult:
    """Stands in for ``DensePoseChartResult`` and ``DensePoseChartResultWithConfidences``.

    labels: (h, w) long; uv: (2, h, w) float; confidences: (h, w) float or None.
    """

    labels: torch.Tensor = None
    uv: torch.Tensor = None
    sigma_1: torch.Tensor | None = None
    sigma_2: torch.Tensor | None = None
    kappa_u: torch.Tensor | None = None
    kappa_v: torch.Tensor | None = None
    fine_segm_confidence: torch.Tensor | None = None
    coarse_segm_confidence: torch.Tensor | None = None


@dataclass
class EmbeddingOutput:
    """Stands in for ``DensePoseEmbeddingPredictorOutput``: embedding (k, D, h, w), coarse_segm (k, 2, h, w)."""

    embedding: torch.Tensor = None
    coarse_segm: torch.Tensor = None


@dataclass
class ChartPredictorOutput:
    """Stands in for ``DensePoseChartPredictorOutput`` (raw heatmaps: coarse_segm (k, 2, h, w), fine_segm,
    u, v (k, 25, h, w))."""

    coarse_segm: torch.Tensor = None
    fine_segm: torch.Tensor = None
    u: torch.Tensor = None
    v: torch.Tensor = None


@dataclass
class Boxes:
    """Stands in for ``detectron2.structures.Boxes``: tensor (k, 4) XYXY."""

    tensor: torch.Tensor = None


class Instances:
    """Stands in for ``detectron2.structures.Instances`` (``_image_size``, ``_fields``)."""

    _image_size: tuple = ()
    _fields: dict = {}

    def __getattr__(self, name):
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)


_STRUCTURES = {
    "DensePoseChartResult": ChartResult,
    "DensePoseChartResultWithConfidences": ChartResult,
    "DensePoseEmbeddingPredictorOutput": EmbeddingOutput,
    "DensePoseChartPredictorOutput": ChartPredictorOutput,
}
_DETECTRON2 = {("detectron2.structures.boxes", "Boxes"): Boxes,
               ("detectron2.structures", "Boxes"): Boxes,
               ("detectron2.structures.instances", "Instances"): Instances,
               ("detectron2.structures", "Instances"): Instances}
_STAND_INS = tuple({*_STRUCTURES.values(), Boxes, Instances})


def _torch_globals() -> dict[str, Any]:
    """PyTorch's own allowlist for ``weights_only`` loading: tensor/storage rebuild functions,
    dtypes, ``torch.Size``, ``OrderedDict``, ``_codecs.encode`` (bytes in protocol 2)..."""
    from torch import _weights_only_unpickler

    return dict(_weights_only_unpickler._get_allowed_globals())


def _safe_reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (protocol 0/1 pickles), for stand-ins only."""
    if base is not object or cls not in _STAND_INS:
        raise UnsafeDumpError(f"copyreg._reconstructor of {cls!r} with base {base!r} is not allowed")
    return object.__new__(cls)


def _refusing_as_unsafe(build, source: str):
    """``build`` (of :data:`~pipeline.core.pickles.BYTES_GLOBALS`), its refusals an :class:`UnsafeDumpError`
    naming ``source``."""
    def checked(*args):
        try:
            return build(*args)
        except pickle.UnpicklingError as e:
            raise UnsafeDumpError(f"{source}: {e}") from None
    return checked


class _Unpickler(pickle.Unpickler):
    """Admits the stand-ins, PyTorch's tensor rebuild globals, numpy arrays and plain containers;
    nothing else. ``source`` (the file) is named in every refusal."""

    source = "<dump>"
    _allowed: dict[str, Any] | None = None

    def find_class(self, module: str, name: str):
        if _Unpickler._allowed is None:
            _Unpickler._allowed = _torch_globals()
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 2 writes Python 2 names
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = f"{module}.{name}"
        if (module == "densepose.structures" or module.startswith("densepose.structures.")) and name in _STRUCTURES:
            return _STRUCTURES[name]
        if (module, name) in _DETECTRON2:
            return _DETECTRON2[(module, name)]
        if key == "torch.storage._load_from_bytes":  # a tensor in a plain pickle: a torch.save stream
            source = self.source
            return lambda b: torch.load(io.BytesIO(b), map_location="cpu", pickle_module=restricted_pickle(source),
                                        weights_only=False)
        if key == "copyreg._reconstructor":
            return _safe_reconstructor
        if key in ("builtins.object", "builtins.tuple", "builtins.list", "builtins.dict", "builtins.frozenset"):
            return getattr(__import__("builtins"), name)
        if key in NUMPY_GLOBALS:
            return NUMPY_GLOBALS[key]
        if key in BYTES_GLOBALS:  # before PyTorch's list, which admits any _codecs.encode
            return _refusing_as_unsafe(BYTES_GLOBALS[key], self.source)
        if key in _Unpickler._allowed:
            return _Unpickler._allowed[key]
        raise UnsafeDumpError(f"{self.source}: refers to {key}, which a DensePose dump never contains; "
                              "refusing to load it (only densepose/detectron2 structures, tensors, numpy "
                              "arrays and plain containers are allowed)")


def restricted_pickle(source: str) -> types.ModuleType:
    """A ``pickle``-like module whose ``Unpickler`` and ``load`` are restricted and name ``source``
    (the file) in their refusals; for ``torch.load(pickle_module=...)``."""
    mod = types.ModuleType("densepose3d_restricted_pickle")
    mod.Unpickler = type("Unpickler", (_Unpickler,), {"source": source})
    mod.load = lambda f, **kw: mod.Unpickler(f, **kw).load()
    mod.loads = lambda b, **kw: mod.Unpickler(io.BytesIO(b), **kw).load()
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def load_dump(path: str | Path) -> Any:
    """Unpickles an ``apply_net.py dump`` file safely; tensors land on the CPU.

    Raises:
        FileNotFoundError: no such file.
        UnsafeDumpError: the file refers to a class or function outside the allowlist (named).
        InputError: the file is not a readable torch/pickle file ("truncated or corrupt" when cut).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DensePose dump not found: {path}")
    module = restricted_pickle(str(path))
    try:
        if zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", pickle_module=module, weights_only=False)
        with open(path, "rb") as f:
            first = module.Unpickler(f).load()
            if isinstance(first, int) and first == torch.serialization.MAGIC_NUMBER:
                f.seek(0)  # legacy torch.save stream
                return torch.load(f, map_location="cpu", pickle_module=module, weights_only=False)
            return first  # a plain pickle
    except UnsafeDumpError:
        raise
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, AttributeError,
            TypeError, ValueError) as e:
        raise InputError(unreadable_message(path, "a DensePose dump", e)) from e
