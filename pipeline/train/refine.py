"""Test-time refinement (``eval.refine_*``; not in the paper): the network's prediction of an instance is where a
few Adam steps start that move that instance's part motions and camera to lower the training loss's own terms on
its own keypoints, no ground truth involved.

The network is amortised: one forward pass for every instance, and at the CPU default's size it under-fits the
keypoints it is given (the visible vertices of the hands lie a mean 110 mm from their keypoints in the image plane,
the torso's 46; docs/results.md). Refinement fits them, each instance for itself, with what training used against
wrong keypoints still in place:

``L_b = mean_i ρ(|π(Y_bi) − x_bi|²) + w_arap · ARAP_b + w_facing · facing_b + a · |θ_b − θ_b⁰|²``

over instance b's visible keypoints i: the training run's own re-projection norm ρ (its scale, ``loss.robust``,
``loss.mirror``), relative ARAP energy and facing term (weights from the checkpoint's ``loss`` params), and
``a = eval.refine_anchor`` times the squared distance of the latent θ (part motions, blendshapes) from the
network's θ⁰: the prior that keeps the shape near the network's shape space, so that the steps converge instead of
fitting every wrong keypoint (without it the error rises again after about 50 steps). Canonicalisation, entropy and
the part segmentation play no part: Ψ and the segmentation are the network's. The instances do not interact (each
term is per instance; Adam is per parameter), so the result does not depend on the batch.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.core.config import EvalParams, LossParams
from pipeline.train.losses import (ArapOperator, arap_loss, arap_rotations, arap_weights, facing_loss, loss_mirror,
                                   reprojection_loss)
from pipeline.train.model import LiftingModel, ModelOutput, vertex_normals

__all__ = ["Refiner", "ROTATIONS_EVERY"]

# ARAP's best rotations R_i are found anew every this many steps and kept in between (its local/global alternation:
# the energy with kept rotations bounds the best one from above); finding them is most of a step's time
ROTATIONS_EVERY = 5


class Refiner:
    """Refines a model's predictions (module docstring).

    Args:
        model: the trained :class:`~pipeline.train.model.LiftingModel` (its weights are not changed).
        loss: the ``loss`` params it was trained with. cfg: the ``eval`` params (``refine_steps``, ``refine_lr``,
            ``refine_anchor``).
        faces: (F, 3) int template faces. vertex_part: (N,) int each vertex's DensePose part
            (``loss.mirror_parts: limbs``).
    """

    def __init__(self, model: LiftingModel, loss: LossParams, cfg: EvalParams, faces: np.ndarray,
                 vertex_part: np.ndarray):
        self.model, self.loss, self.cfg = model, loss, cfg
        template = model.template
        self.arap = None
        if loss.arap > 0 and model.type != "c3dpo":
            weights = arap_weights(template.cpu().numpy(), np.asarray(faces))
            self.arap = ArapOperator(template, weights).to(template.device)
        self.facing = loss.facing if model.type == "dp3d" else 0.0
        if self.facing > 0 and model.rest_normals is None:
            model.set_rest_normals(vertex_normals(template[None], torch.as_tensor(np.asarray(faces), dtype=torch.long,
                                                                                 device=template.device))[0])
        self.mirror = loss_mirror(loss, template, vertex_part)

    def objective(self, out: ModelOutput, xy: torch.Tensor, visible: torch.Tensor, start: torch.Tensor,
                  rotations: torch.Tensor | None = None) -> torch.Tensor:
        """Σ_b L_b (module docstring). out: the refined prediction; xy (B, N, 2) normalised keypoints; visible
        (B, N) bool; start: (B, L) the network's latent θ⁰; rotations: (B, N, 3, 3) ARAP's R_i (None: the best
        for ``out``)."""
        loss = self.loss
        # ρ's mean over each instance's own keypoints: weights 1 / (its visible count) make the batch's weighted mean
        # the mean of the instances' means
        shown = visible.sum(1, keepdim=True).clamp(min=1).to(xy.dtype)
        weight = (1.0 / shown).expand_as(visible)
        total = len(xy) * reprojection_loss(out.points[..., :2], xy, visible, loss.robust_scale or loss.huber_eps,
                                            norm=loss.robust, mirror=self.mirror, weight=weight)
        if self.arap is not None:
            total = total + loss.arap * len(xy) * arap_loss(self.arap, out.shape, loss.arap_rotations, rotations)
        if self.facing > 0:
            evidence = visible.to(xy.dtype)
            total = total + self.facing * facing_loss(out.normals, evidence, self.model.segmentation(),
                                                      per_instance=True).sum()
        return total + self.cfg.refine_anchor * ((out.latent - start) ** 2).sum()

    def __call__(self, xy: torch.Tensor, visible: torch.Tensor, start: ModelOutput) -> ModelOutput:
        """The refined prediction of a batch. xy: (B, N, 2) normalised keypoints; visible: (B, N) bool; start: the
        network's prediction (:meth:`LiftingModel.forward`) for them."""
        if self.cfg.refine_steps == 0:
            return start
        model = self.model
        frozen = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                theta0 = start.latent.detach()
                latent = theta0.clone().requires_grad_(True)
                camera = start.camera.detach().clone().requires_grad_(True)
                opt = torch.optim.Adam([latent, camera], lr=self.cfg.refine_lr)
                rotations = None
                for step in range(self.cfg.refine_steps):
                    opt.zero_grad()
                    out = model.pose(latent, camera)
                    if self.arap is not None and step % ROTATIONS_EVERY == 0:
                        rotations = arap_rotations(self.arap, out.shape, self.loss.arap_rotations)
                    self.objective(out, xy, visible, theta0, rotations).backward()
                    opt.step()
            with torch.no_grad():
                return model.pose(latent.detach(), camera.detach())
        finally:
            for p, g in zip(model.parameters(), frozen):
                p.requires_grad_(g)
