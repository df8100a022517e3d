"""Stand-ins for the Detectron2 / DensePose classes an ``apply_net.py dump`` file pickles, so tests can
write real dump files without Detectron2 (read back by :mod:`pipeline.densepose.precomputed`)."""

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


def chart_at_box(dp, box, gen: torch.Generator, labels=None, uv=None):
    """A ``DensePoseChartResultWithConfidences`` at ``box``'s integer size, as apply_net.py writes it:
    random labels 0..24 and U, V in [0, 1) (0 on the background) unless given."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = max(int(y1 - y0), 1), max(int(x1 - x0), 1)
    lab = torch.randint(0, 25, (h, w), generator=gen) if labels is None else labels
    uvs = torch.rand(2, h, w, generator=gen) * (lab > 0) if uv is None else uv
    return dp.chart(labels=lab, uv=uvs)


def save_dump(entries, path, writer: str = "torch"):
    """Writes ``entries`` as apply_net.py does (``torch``: a zip), with the legacy ``torch.save``
    stream (``legacy``), or as a plain pickle (``pickle``, protocol 2, or ``pickleN``)."""
    import pickle

    if writer == "torch":
        torch.save(entries, path)
    elif writer == "legacy":
        torch.save(entries, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(entries, f, protocol=int(writer[6:] or 2))
    return path
