"""The DensePose chart losses of the correspondence network (as DensePose trains its chart head), on dense
targets from the exact rendering.

With ``fg`` the person's pixels (the exact IUV's foreground, minus the pixels of a pasted occluder),
``I`` the true part (0 on background) and ``U, V`` its chart coordinates, all resampled to the
112 x 112 heatmap grid (nearest):

- ``coarse``: cross-entropy of ``coarse_segm`` against ``fg`` over every pixel;
- ``fine``: cross-entropy of ``fine_segm`` against ``I`` over ``fg`` only (as DensePose trains it: the parts
  are learnt where there is a person, the foreground by ``coarse``; channel 0 is never a target, so the
  converters' ``argmax(fine) * (argmax(coarse) > 0)`` picks a body part wherever ``coarse`` sees the person);
- ``uv``: smooth-L1 (``beta``) of ``u`` and ``v`` read at the true part's channel against ``U``, ``V``,
  over ``fg``.

The total is ``w_coarse coarse + w_fine fine + w_uv uv``. Size letters: ``B`` boxes, ``S`` crop side
(legend: :mod:`pipeline`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from pipeline.core.errors import InputError
from pipeline.network.model import ChartOutput, HEATMAP

__all__ = ["ChartTargets", "chart_targets", "chart_loss"]


class ChartTargets(NamedTuple):
    """On the 112 x 112 grid: ``labels`` (B, 112, 112) int64 part 0..24, ``u``/``v`` (B, 112, 112) float32,
    ``fg`` (B, 112, 112) bool."""

    labels: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    fg: torch.Tensor


def chart_targets(labels: torch.Tensor, uv: torch.Tensor, occluder: torch.Tensor | None = None) -> ChartTargets:
    """Targets from exact maps: ``labels`` (B, S, S) int part 0..24, ``uv`` (B, 2, S, S) float, ``occluder``
    (B, S, S) bool pixels a pasted occluder hides (they become background)."""
    if labels.dim() != 3 or uv.shape != (labels.shape[0], 2, *labels.shape[1:]):
        raise InputError(f"targets: labels (B, S, S) and uv (B, 2, S, S), got {tuple(labels.shape)} and "
                         f"{tuple(uv.shape)}")
    lab = labels.long()
    if occluder is not None:
        lab = torch.where(occluder.bool(), torch.zeros_like(lab), lab)
    if lab.min() < 0 or lab.max() > 24:
        raise InputError("targets: labels must be exact parts 0..24 (no missing pixels)")
    size = (HEATMAP, HEATMAP)
    lab = F.interpolate(lab[:, None].float(), size=size, mode="nearest")[:, 0].long()
    uv = F.interpolate(torch.nan_to_num(uv.float()), size=size, mode="nearest")
    return ChartTargets(lab, uv[:, 0], uv[:, 1], lab > 0)


def chart_loss(out: ChartOutput, t: ChartTargets, w_coarse: float = 1.0, w_fine: float = 1.0, w_uv: float = 1.0,
               beta: float = 0.1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The total loss and its terms (module docstring)."""
    coarse = F.cross_entropy(out.coarse_segm, t.fg.long())
    index = t.labels[:, None]
    u = out.u.gather(1, index)[:, 0][t.fg]
    v = out.v.gather(1, index)[:, 0][t.fg]
    if t.fg.any():
        fine = F.cross_entropy(out.fine_segm.permute(0, 2, 3, 1)[t.fg], t.labels[t.fg])
        uv = F.smooth_l1_loss(u, t.u[t.fg], beta=beta) + F.smooth_l1_loss(v, t.v[t.fg], beta=beta)
    else:
        fine = out.fine_segm.sum() * 0.0
        uv = out.u.sum() * 0.0
    terms = {"coarse": coarse, "fine": fine, "uv": uv}
    return w_coarse * coarse + w_fine * fine + w_uv * uv, terms
