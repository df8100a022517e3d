"""The three sources of the ``densepose`` stage behind one entry point (METHOD.md §2.1).

Every source module has ``write_store(params, template, out) -> DenseposeSummary``: it reads its own
params section (``synthetic``, ``detectron2`` or ``precomputed``) with ``densepose`` and ``common``,
writes ``out`` (``data/densepose.zarr``, layout :mod:`pipeline.densepose.store`) and returns the same
:class:`~pipeline.densepose.write.DenseposeSummary`. :func:`write_densepose` picks the source that
``densepose.source`` names; each is imported only when chosen (Detectron2's code is heavy).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.config import Params
from pipeline.core.errors import InputError
from pipeline.densepose.write import DenseposeSummary
from pipeline.template.file import Template

__all__ = ["SOURCES", "write_densepose"]

SOURCES = ("synthetic", "detectron2", "precomputed")


def write_densepose(params: Params, template: Template, out: str | Path) -> DenseposeSummary:
    """Writes ``densepose.zarr`` from the source ``params.densepose.source``."""
    source = params.densepose.source
    # plain import statements (not importlib), so that dvc.yaml's code deps list every source
    if source == "synthetic":  # posed Anny bodies, rendered with exact ground truth
        from pipeline.densepose.synthetic import source as module
    elif source == "detectron2":  # a DensePose R-CNN run on a folder of images
        from pipeline.densepose import detectron2 as module
    elif source == "precomputed":  # apply_net.py dumps or IUV PNG folders
        from pipeline.densepose import precomputed as module
    else:
        raise InputError(f"densepose.source = {source!r}: allowed {', '.join(SOURCES)}")
    return module.write_store(params, template, out)
