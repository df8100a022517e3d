"""``models/model.pt``, the read side of the ``train`` stage: its layout, :func:`save_checkpoint` (the
trainer writes it, :mod:`pipeline.train.loop`) and :func:`read_checkpoint` / :func:`load_checkpoint`
(evaluation and ``train.resume`` read it).

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
===================  ==========================================================================

So a model loads from the checkpoint alone, without the template or lbo files. The rest normals of
the facing loss are not saved.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.core.config import load_params_dict
from pipeline.core.io import atomic_path
from pipeline.train.model import LiftingModel

__all__ = ["save_checkpoint", "read_checkpoint", "load_checkpoint", "INFO_KEYS"]

INFO_KEYS = ("step", "template_hash", "params", "metrics", "template_scale", "segmentation_init")


def save_checkpoint(path: str | Path, model: LiftingModel, psi: torch.nn.Module | None, optimizer, params: dict,
                    step: int, template_hash: str, template_scale: float, metrics: dict, first_loss: float | None,
                    segmentation_init: torch.Tensor) -> None:
    """Writes the checkpoint atomically (layout above); ``params`` as plain dicts."""
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
            older than it).
    """
    ck = read_checkpoint(path, device)
    cfg = load_params_dict({"model": ck["params"]["model"]}).model  # other sections may have changed since
    model = LiftingModel(cfg, ck["template"].cpu().numpy(), ck["basis"].cpu().numpy())
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    return model, {k: ck.get(k) for k in INFO_KEYS}
