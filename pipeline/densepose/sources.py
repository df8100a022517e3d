"""The three sources of the ``densepose`` stage behind one entry point (METHOD.md §2.1).

Every source module has ``write_store(params, template, out) -> DenseposeSummary``: it reads its own
params section (``synthetic``, ``detectron2`` or ``precomputed``) with ``densepose`` and ``common``,
writes ``out`` (``data/densepose.zarr``, layout :mod:`pipeline.densepose.store`) and returns the same
:class:`~pipeline.densepose.write.DenseposeSummary`. :func:`write_densepose` picks the source that
``densepose.source`` names; each is imported only when chosen (Detectron2's code is heavy).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pipeline.core.config import Params
from pipeline.densepose.write import DenseposeSummary
from pipeline.template.file import Template

__all__ = ["SOURCES", "write_densepose"]

SOURCES = {
    "synthetic": "pipeline.densepose.synthetic.source",  # posed Anny bodies, rendered with exact ground truth
    "detectron2": "pipeline.densepose.detectron2",  # a DensePose R-CNN run on a folder of images
    "precomputed": "pipeline.densepose.precomputed",  # apply_net.py dumps or IUV PNG folders
}


def write_densepose(params: Params, template: Template, out: str | Path) -> DenseposeSummary:
    """Writes ``densepose.zarr`` from the source ``params.densepose.source``."""
    return importlib.import_module(SOURCES[params.densepose.source]).write_store(params, template, out)
