"""A trained checkpoint as the ``evaluate`` stage uses it: a reconstruction function and its segmentation."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
import logging

import numpy as np

from pipeline.core.errors import InputError
from pipeline.evaluate.batches import Reconstruct
from pipeline.template.file import Template

log = logging.getLogger(__name__)


class Reconstructor(NamedTuple):
    """A checkpoint's model ready to evaluate (:func:`model_reconstructor`)."""

    run: Reconstruct
    segmentation: np.ndarray               # (N, M) float32 learnt part weights ((N, 1) ones for the baselines)
    segmentation_init: np.ndarray | None   # (N, M) float32 part weights at initialisation; None if not saved
    info: dict                             # the checkpoint's info (pipeline.train.model.load_checkpoint)


def model_reconstructor(path: str | Path, template: Template, device: str = "cpu",
                        batch_size: int = 1024) -> Reconstructor:
    """The trained model of a checkpoint as a :data:`Reconstruct` function.

    Returns:
        :class:`Reconstructor`: the function, the (N, M) float32 learnt part weights, the weights at
        initialisation (the checkpoint's ``segmentation_init``: None in older checkpoints, or when its
        shape is not the learnt one's) and the checkpoint's info dict.
    Raises:
        ValueError: the checkpoint was trained on another template.
    """
    from pipeline.train.model import load_checkpoint, reconstruct

    model, info = load_checkpoint(path, device)
    if info.get("template_hash") not in (None, template.hash):
        raise InputError(f"{path}: trained on template {info['template_hash']!r}, but the template is "
                         f"{template.hash!r}; rerun the pipeline (dvc repro)")
    if model.n_vertices != len(template.vertices):
        raise InputError(f"{path}: model has {model.n_vertices} vertices, the template {len(template.vertices)}")

    def run(xy: np.ndarray, visible: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return reconstruct(model, xy, visible, batch_size=batch_size).numpy()

    segmentation = model.segmentation().detach().cpu().numpy().astype(np.float32)
    init = info.get("segmentation_init")
    if init is not None:
        init = (init.detach().cpu().numpy() if hasattr(init, "detach") else np.asarray(init)).astype(np.float32)
        if init.shape != segmentation.shape:
            log.warning("%s: segmentation_init is %s but the model's segmentation %s: ignored", path, init.shape,
                        segmentation.shape)
            init = None
    return Reconstructor(run, segmentation, init, info)
