"""The images the correspondence network learns from (stage ``images``).

:func:`write_images_store` renders ``network.train_bodies + network.test_bodies`` Anny bodies, ``network.views``
crops of ``network.crop`` pixels each, as photo-like images with their exact IUV (the synthetic source,
:mod:`pipeline.densepose.synthetic`, with ``synthetic.images: true``, :mod:`pipeline.render.scene`):
``data/images.zarr``, a densepose store (layout: :mod:`pipeline.densepose.store`; read side:
:mod:`pipeline.images.store`) whose ``rgb``, ``gt/iuv`` and ``gt/occluder`` are the training data and
whose ``labels``/``uv`` (the corruption model's output on the same crops) are the yardstick of
``metrics/correspondence.json``. Everything else about the bodies, cameras, lighting and occluders comes
from the ``synthetic`` section, so the network learns the distribution it is later run on; the bodies are
drawn from a seed of their own (:func:`images_seed`), so none of them is a body of ``densepose.zarr``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from pipeline.core.config import Params, as_dict
from pipeline.densepose.synthetic import write_synthetic_store
from pipeline.densepose.write import DenseposeSummary
from pipeline.template.file import Template

__all__ = ["IMAGES_STREAM", "images_seed", "write_images_store"]

IMAGES_STREAM = 5  # the seed stream of the network's bodies (the synthetic source's bodies use common.seed)


def images_seed(seed: int) -> int:
    """The seed the network's bodies are drawn with, from ``common.seed``: unlike any body of the synthetic source."""
    return int(np.random.SeedSequence([seed, IMAGES_STREAM]).generate_state(1)[0])


def write_images_store(params: Params, template: Template, out: str | Path) -> DenseposeSummary:
    """Stage ``images``'s entry point: renders the network's bodies as images into ``out`` (module docstring)."""
    n = params.network
    synthetic = dataclasses.replace(params.synthetic, train_bodies=n.train_bodies, test_bodies=n.test_bodies,
                                    views=n.views, images=True, cse=False)
    record = {"common": as_dict(params.common), "network": as_dict(n), "synthetic": as_dict(synthetic)}
    return write_synthetic_store(out, template, synthetic, crop=n.crop,
                                 seed=images_seed(params.common.seed), device=params.common.device, params=record,
                                 source="images")
