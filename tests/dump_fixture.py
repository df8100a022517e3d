"""Stand-ins for the Detectron2 / DensePose classes an ``apply_net.py dump`` file pickles, so tests can
write real dump files without Detectron2 (read back by :mod:`pipeline.precomputed`)."""

from __future__ import annotations

import contextlib
import sys
import types
from dataclasses import dataclass
from typing import Optional

import torch


@contextlib.contextmanager
def fake_densepose_modules():
    """``densepose.structures.{chart_result,cse}`` and ``detectron2.structures.boxes`` with classes of
    the real names and fields, registered only while a test saves a dump."""

    @dataclass
    class DensePoseChartResultWithConfidences:
        labels: torch.Tensor
        uv: torch.Tensor
        sigma_1: Optional[torch.Tensor] = None
        sigma_2: Optional[torch.Tensor] = None
        kappa_u: Optional[torch.Tensor] = None
        kappa_v: Optional[torch.Tensor] = None
        fine_segm_confidence: Optional[torch.Tensor] = None
        coarse_segm_confidence: Optional[torch.Tensor] = None

    @dataclass
    class DensePoseEmbeddingPredictorOutput:
        embedding: torch.Tensor
        coarse_segm: torch.Tensor

    class Boxes:
        def __init__(self, tensor):
            self.tensor = tensor

    classes = {"densepose.structures.chart_result": DensePoseChartResultWithConfidences,
               "densepose.structures.cse": DensePoseEmbeddingPredictorOutput,
               "detectron2.structures.boxes": Boxes}
    names = ["densepose", "densepose.structures", "detectron2", "detectron2.structures", *classes]
    assert not any(n in sys.modules for n in names)
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    for mod, cls in classes.items():
        cls.__module__, cls.__qualname__ = mod, cls.__name__
        setattr(sys.modules[mod], cls.__name__, cls)
    try:
        yield types.SimpleNamespace(chart=DensePoseChartResultWithConfidences,
                                    cse=DensePoseEmbeddingPredictorOutput, boxes=Boxes)
    finally:
        for n in names:
            sys.modules.pop(n, None)
