"""Two rounds of training (``train.rounds: 2``, METHOD.md §5.7): the keypoints a trained model turns away.

About a fifth of the visible keypoints of network-like DensePose output name a vertex that is hidden in the
image (silhouette and seam pixels naming a vertex just behind what they show, mirror patches); trained on,
they pull those vertices to the front. No ground truth says which they are, but a trained model's own
reconstruction does: a keypoint whose vertex's mesh normal faces away from the camera (normal z >
``train.turned_z``) is one the model could not have seen. Round 1 trains as usual; its reconstruction of
every instance flags those keypoints; round 2 trains anew (the same seed) with them invisible. At inference
the same round-1 model cleans the keypoints before round 2 reconstructs (:class:`FirstRound`, kept inside
the checkpoint), so training and evaluation see the keypoints alike.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.train.model import LiftingModel, normalise, vertex_normals

__all__ = ["turned_away", "FirstRound"]


def turned_away(points: torch.Tensor, faces: torch.Tensor, visible: torch.Tensor, z_max: float) -> torch.Tensor:
    """(B, N) bool: the visible keypoints whose vertex's mesh normal in ``points`` faces away (z > ``z_max``).

    Args:
        points: (B, N, 3) float reconstruction, z away from the camera (any scale: only directions count).
        faces: (F, 3) long. visible: (B, N) bool.
    """
    return visible & (vertex_normals(points.float(), faces)[..., 2] > z_max)


class FirstRound:
    """Round 1's model, which cleans keypoints for round 2: :meth:`clean` hides those it turns away.

    Args:
        model: round 1's trained :class:`LiftingModel` (eval mode is set here).
        faces: (F, 3) the template's faces. z_max: ``train.turned_z``.
    """

    def __init__(self, model: LiftingModel, faces, z_max: float):
        self.model = model.eval()
        self.faces = torch.as_tensor(np.asarray(faces), dtype=torch.long, device=model.template.device)
        self.z_max = float(z_max)

    @torch.no_grad()
    def turned(self, xy: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(B, N) bool on ``xy``'s device: the keypoints round 1 turns away. xy: (B, N, 2) float image pixels;
        visible: (B, N) bool."""
        device = self.model.template.device
        points = self.model(normalise(xy.float(), visible).xy.to(device), visible.to(device)).points
        # the normalised frame differs from the image's by a shift and a positive scale: the same normals
        return turned_away(points, self.faces, visible.to(device), self.z_max).to(xy.device)

    def clean(self, xy: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """(B, N) bool: ``visible`` without the keypoints round 1 turns away (shapes as :meth:`turned`)."""
        return visible & ~self.turned(xy, visible)

    def turned_rows(self, xy, visible, batch_size: int = 1024) -> np.ndarray:
        """(n, N) bool: :meth:`turned` over many instances, ``batch_size`` at a time. xy: (n, N, 2) float;
        visible: (n, N) bool (arrays or tensors)."""
        xy = torch.as_tensor(np.asarray(xy), dtype=torch.float32)
        visible = torch.as_tensor(np.asarray(visible), dtype=torch.bool)
        out = [self.turned(xy[s:s + batch_size], visible[s:s + batch_size]).cpu().numpy()
               for s in range(0, len(xy), batch_size)]
        return np.concatenate(out) if out else np.zeros(visible.shape, bool)

    def state(self) -> dict:
        """What the checkpoint keeps (``first_round``): the model's state dict, the faces and the threshold."""
        return {"model": self.model.state_dict(), "faces": self.faces.cpu(), "turned_z": self.z_max}
