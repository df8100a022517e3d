"""``models/model.pt``, the read side of the ``train`` stage: its layout, :func:`save_checkpoint` (the
trainer writes it, :mod:`pipeline.train.loop`), :func:`read_checkpoint` / :func:`load_checkpoint`
(evaluation and ``train.resume`` read it) and :func:`reconstruct`, the trained model as the evaluation
uses it (with :class:`pipeline.train.refine.Refiner`, its test-time refinement, as ``refine``).

``torch.save`` of a dict, loadable with ``weights_only=True`` (N template vertices, K eigenvectors
used, M latent parts):

===================  ==========================================================================
key                  value
===================  ==========================================================================
model, psi           state dicts of the :class:`~pipeline.train.model.LiftingModel` and of Ψ
                     (None without canonicalisation)
optimizer            the optimiser's state
params               every section of params.yaml as plain dicts
step                 optimisation steps done
template_hash        the template's content hash
template             (N, 3) float32 canonical template vertices
basis                (N, K) float32 unit-RMS LBO eigenvectors
template_scale       metres per canonical unit
metrics              last logged losses
first_loss           the divergence reference
rng                  torch's CPU generator state
segmentation_init    (N, M) float32 part weights before training
data                 the store it was trained on: ``keypoints`` (its path) and ``instances``
                     (:func:`pipeline.keypoints.store.instances_fingerprint`); absent in older
                     checkpoints
first_round          ``train.rounds: 2``: round 1's model (state dict ``model``), the template's
                     ``faces`` (F, 3) long and ``turned_z`` (:class:`~pipeline.train.rounds.FirstRound`),
                     which clean the keypoints before this model sees them; None after one round
===================  ==========================================================================

So a model loads from the checkpoint alone, without the template or lbo files. The rest normals of
the facing loss are not saved.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.core.config import load_params_dict
from pipeline.core.io import atomic_path
from pipeline.train.model import LiftingModel, ModelOutput, denormalise, normalise
from pipeline.train.rounds import FirstRound

__all__ = ["save_checkpoint", "read_checkpoint", "load_checkpoint", "reconstruct", "INFO_KEYS"]

INFO_KEYS = ("step", "template_hash", "params", "metrics", "template_scale", "segmentation_init", "data")


def save_checkpoint(path: str | Path, model: LiftingModel, psi: torch.nn.Module | None, optimizer, params: dict,
                    step: int, template_hash: str, template_scale: float, metrics: dict, first_loss: float | None,
                    segmentation_init: torch.Tensor, data: dict | None = None,
                    first_round: FirstRound | None = None) -> None:
    """Writes the checkpoint atomically (layout above); ``params`` as plain dicts, ``data`` the training store's
    record (``{"keypoints": path, "instances": fingerprint}``), ``first_round`` round 1 of two rounds."""
    ck = {
        "segmentation_init": segmentation_init,
        "model": model.state_dict(),
        "psi": psi.state_dict() if psi is not None else None,
        "optimizer": optimizer.state_dict(),
        "params": params,
        "step": step,
        "template_hash": template_hash,
        "template": model.template.cpu(),
        "basis": model.basis.cpu(),
        "template_scale": template_scale,
        "metrics": metrics,
        "first_loss": first_loss,
        "rng": torch.get_rng_state(),
        "data": dict(data or {}),
        "first_round": first_round.state() if first_round is not None else None,
    }
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """The checkpoint's dict (layout above), tensors on ``device``."""
    return torch.load(Path(path), map_location=device, weights_only=True)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[LiftingModel, dict]:
    """Loads a trained model from a checkpoint, in eval mode.

    Returns:
        model: :class:`LiftingModel` on ``device``.
        info: dict of :data:`INFO_KEYS`: ``step``, ``template_hash``, ``params`` (every section as plain
            dicts), ``metrics`` (last logged losses), ``template_scale`` (metres per canonical unit) and
            ``segmentation_init`` ((N, M) float32 part weights before training; None in checkpoints
            older than it), ``data`` (the training store's path and instances fingerprint; None in older ones),
            ``first_round`` (a :class:`~pipeline.train.rounds.FirstRound` to pass to :func:`reconstruct`; None
            after one round of training).
    """
    ck = read_checkpoint(path, device)
    cfg = load_params_dict({"model": ck["params"]["model"]}).model  # other sections may have changed since

    def lifting_model(state: dict) -> LiftingModel:
        model = LiftingModel(cfg, ck["template"].cpu().numpy(), ck["basis"].cpu().numpy())
        model.load_state_dict(state)
        return model.to(device).eval()

    first = ck.get("first_round")
    first_round = FirstRound(lifting_model(first["model"]), first["faces"], first["turned_z"]) if first else None
    return lifting_model(ck["model"]), {k: ck.get(k) for k in INFO_KEYS} | {"first_round": first_round}


@torch.no_grad()
def reconstruct(model: LiftingModel, xy, visible, batch_size: int = 1024,
                first_round: FirstRound | None = None,
                refine: Callable[[torch.Tensor, torch.Tensor, ModelOutput], ModelOutput] | None = None
                ) -> torch.Tensor:
    """Posed 3D shapes in the image frame of the input keypoints.

    Args:
        model: a trained :class:`LiftingModel`.
        xy: (B, N, 2) float keypoints, image pixels (any value where invisible); tensor or numpy.
        visible: (B, N) bool.
        first_round: the checkpoint's round 1 (``info["first_round"]`` of :func:`load_checkpoint`): the
            keypoints it turns away are hidden before ``model`` sees them, as in training. None: none hidden.
        refine: ``(xy, visible, prediction) -> prediction`` of normalised keypoints, e.g. a
            :class:`pipeline.train.refine.Refiner`; None: the network's prediction as it is.
    Returns:
        (B, N, 3) float32 CPU tensor: x, y in image pixels (the normalisation undone), z in the same
        pixel units, pointing away from the camera; depth is known up to a constant per instance.
    """
    model.eval()
    device = model.template.device
    xy = torch.as_tensor(np.asarray(xy) if not isinstance(xy, torch.Tensor) else xy, dtype=torch.float32)
    visible = torch.as_tensor(np.asarray(visible) if not isinstance(visible, torch.Tensor) else visible,
                              dtype=torch.bool)
    out = []
    for s in range(0, len(xy), batch_size):
        shown = visible[s:s + batch_size]
        if first_round is not None:
            shown = first_round.clean(xy[s:s + batch_size], shown)
        norm = normalise(xy[s:s + batch_size], shown)
        pred = model(norm.xy.to(device), shown.to(device))
        if refine is not None:
            pred = refine(norm.xy.to(device), shown.to(device), pred)
        out.append(denormalise(pred.points.float().cpu(), norm.centre, norm.scale))
    if not out:
        return torch.zeros(0, model.n_vertices, 3)
    return torch.cat(out)
