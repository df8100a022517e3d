"""The one typed loader of ``params.yaml``.

Every stage reads its parameters through :func:`load_params`. Each section of ``params.yaml`` is a
frozen dataclass below; each field carries its allowed range or choices in its metadata, so that an
unknown key, a wrong type or an out-of-range value fails with an error naming the key and what is
allowed, before any work starts::

    >>> load_params_dict({"lbo": {"k": -3}})
    Traceback (most recent call last):
    ...
    pipeline.config.ParamsError: params: lbo.k = -3 is out of range: allowed an integer in [2, 4096]

Adding a parameter: add a field with ``param(...)`` to its section, document it in ``params.yaml``,
and list it under the stage's ``params`` in ``dvc.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ParamsError",
    "CommonParams",
    "TemplateParams",
    "LboParams",
    "Detectron2Params",
    "PrecomputedParams",
    "Params",
    "load_params",
    "load_params_dict",
]


class ParamsError(ValueError):
    """A key of ``params.yaml`` is unknown, of the wrong type or out of range."""


def param(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
          choices: tuple | None = None) -> Any:
    """A dataclass field with its documentation and allowed values.

    Args:
        default: value used when the key is absent.
        doc: one line on what the key does (shown in errors).
        lo, hi: inclusive numeric bounds (None: unbounded).
        choices: the allowed values of a categorical key.
    """
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "choices": choices})


@dataclass(frozen=True)
class CommonParams:
    """Knobs shared by every stage."""

    seed: int = param(0, "seed of every random generator", lo=0, hi=2**32 - 1)
    device: str = param("auto", "torch device: auto (CUDA when present), cpu or cuda",
                        choices=("auto", "cpu", "cuda"))


@dataclass(frozen=True)
class TemplateParams:
    """Stage ``template``: the canonical mesh, its 24-chart atlas and tables."""

    source: str = param("anny", "where the template comes from", choices=("anny", "smpl"))
    topology: str = param("notoes_collapse10pc", "Anny topology (source: anny)",
                          choices=("notoes_collapse10pc", "notoes_collapse5pc", "notoes", "anny"))
    smpl_model: str = param("", "path to an SMPL model file, .pkl or .npz (source: smpl)")
    smpl_uv: str = param("", "path to DensePose's UV_Processed.mat (source: smpl)")
    cse_dim: int = param(16, "dimension D of the CSE vertex embeddings", lo=1, hi=256)
    components: str = param("keep_largest", "a mesh with several components: keep_largest or refuse",
                            choices=("keep_largest", "refuse"))


@dataclass(frozen=True)
class LboParams:
    """Stage ``lbo``: the Laplace-Beltrami eigenbasis of the template."""

    k: int = param(64, "number K of smallest eigenpairs to compute", lo=2, hi=4096)


@dataclass(frozen=True)
class Detectron2Params:
    """Stage ``densepose``, ``densepose.source: detectron2``: run a DensePose R-CNN on an image folder."""

    config: str = param("", "DensePose config file (.yaml from the DensePose project's configs/)")
    weights: str = param("", "model weights file (.pkl or .pth), a local path; nothing is downloaded")
    images: str = param("", "folder of input images (jpg, jpeg, png, bmp, tif, tiff, webp), read sorted")
    score_threshold: float = param(0.8, "keep person detections with at least this score", lo=0.0, hi=1.0)
    max_instances: int = param(0, "keep at most this many best-scoring people per image (0: all)", lo=0, hi=1000)
    batch_size: int = param(4, "images per forward pass", lo=1, hi=256)
    test_list: str = param("", "file of image names (one a line) that form the test split; empty: all train")
    cse_mesh: str = param("smpl_27554", "CSE models: mesh whose vertex embeddings are read from the checkpoint")


@dataclass(frozen=True)
class PrecomputedParams:
    """Stage ``densepose``, ``densepose.source: precomputed``: import DensePose results made elsewhere."""

    format: str = param("dump", "dump (apply_net.py dump file) or iuv_png (IUV PNG folder + boxes JSON)",
                        choices=("dump", "iuv_png"))
    dump: str = param("", "format dump: the file written by `apply_net.py dump`")
    iuv_folder: str = param("", "format iuv_png: folder of full-frame IUV PNGs (and instance-index PNGs)")
    boxes_json: str = param("", "format iuv_png: JSON listing each image's IUV PNG, boxes and scores")
    score_threshold: float = param(0.0, "keep instances with at least this score", lo=0.0, hi=1.0)
    max_instances: int = param(0, "keep at most this many best-scoring instances per image (0: all)", lo=0, hi=1000)
    test_list: str = param("", "file of image names (one a line) that form the test split; empty: all train")


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    common: CommonParams = field(default_factory=CommonParams)
    template: TemplateParams = field(default_factory=TemplateParams)
    lbo: LboParams = field(default_factory=LboParams)
    detectron2: Detectron2Params = field(default_factory=Detectron2Params)
    precomputed: PrecomputedParams = field(default_factory=PrecomputedParams)


def _describe(meta: dict, typ: type) -> str:
    """Human text for what a field accepts, e.g. 'an integer in [1, 256]'."""
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[typ]
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and hi is not None:
        return f"{name} in [{lo}, {hi}]"
    if lo is not None:
        return f"{name} >= {lo}"
    if hi is not None:
        return f"{name} <= {hi}"
    return name


def _check_value(key: str, value: Any, typ: type, meta: dict) -> Any:
    allowed = _describe(meta, typ)
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = math.isfinite(value)
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise ParamsError(f"params: {key} = {value!r} has the wrong type: allowed {allowed}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ParamsError(f"params: {key} = {value!r} is not allowed: allowed {allowed}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParamsError(f"params: {key} = {value!r} is out of range: allowed {allowed}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Builds dataclass ``cls`` from a mapping, checking every key recursively."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"params: {prefix or 'the file'} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        raise ParamsError(f"params: unknown key {prefix + '.' if prefix else ''}{unknown[0]} in {where}; "
                          f"known keys: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        typ = hints[name]
        if isinstance(typ, types.UnionType):
            raise TypeError(f"{cls.__name__}.{name}: union types are not supported")
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, key)
        else:
            kwargs[name] = _check_value(key, value, typ, dict(fields[name].metadata))
    return cls(**kwargs)


def load_params_dict(raw: dict | None) -> Params:
    """Validates a parsed ``params.yaml`` mapping; missing keys take their defaults."""
    return _build(Params, raw, "")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Reads and validates ``params.yaml``.

    Raises:
        FileNotFoundError: the file is missing (names it).
        ParamsError: the YAML is invalid, or a key is unknown, mistyped or out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ParamsError(f"params: {path} is not valid YAML: {e}") from e
    try:
        return load_params_dict(raw)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


def as_dict(obj: Any) -> dict:
    """A params dataclass as a plain dict (for store attributes and checkpoints)."""
    return dataclasses.asdict(obj)
