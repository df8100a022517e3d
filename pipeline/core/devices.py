"""The torch device a stage runs on."""

from __future__ import annotations

import torch

from pipeline.core.errors import InputError


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("common.device = cuda, but torch sees no CUDA device: set common.device to auto or cpu")
    if name not in ("cpu", "cuda"):
        raise InputError(f"common.device = {name!r}: allowed auto, cpu or cuda")
    return name
