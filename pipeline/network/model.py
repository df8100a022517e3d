"""A compact per-box DensePose chart predictor in plain PyTorch (no torchvision, no Detectron2).

It maps the RGB crop of one person's box, resampled to ``input_size`` pixels, to exactly what
Detectron2's chart head outputs for that box, so the existing converters
(:func:`pipeline.densepose.convert.chart_output_to_crops`) turn its output into a densepose store:

==============  ========================  ==========================================
output          shape                     meaning (as Detectron2's ``DensePoseChartPredictorOutput``)
==============  ========================  ==========================================
coarse_segm     (B, 2, 112, 112) float    logits: background, person
fine_segm       (B, 25, 112, 112) float   logits: background and the 24 parts
u, v            (B, 25, 112, 112) float   U and V of each part (read at the arg-max part)
==============  ========================  ==========================================

Architecture: a four-level U-Net. The encoder halves the resolution three times (``width``,
2 ``width``, 4 ``width``, 6 ``width`` channels; two 3x3 convolutions with batch normalisation and
ReLU per level), the decoder doubles it back with bilinear upsampling and skip connections, and four
1x1 convolutions give the heads; the result is resampled to 112 x 112 (``HEATMAP``) when the input is
another size. Size letters: ``B`` boxes of a batch (legend: :mod:`pipeline`).

Its checkpoint, and running it on crops: :mod:`pipeline.network.checkpoint` (the read side of
``models/network.pt``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import InputError

__all__ = ["HEATMAP", "N_FINE", "N_COARSE", "ChartOutput", "ChartNet", "unit_images", "standardise",
           "normalise_images"]

HEATMAP = 112  # Detectron2's chart heatmaps are 112 x 112 per box
N_FINE, N_COARSE = 25, 2
# per-channel mean and std of the training images (sRGB / 255): a fixed normalisation, no learnt state
_MEAN, _STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class ChartOutput(NamedTuple):
    """The chart head's output (module docstring): four (B, C, 112, 112) float tensors."""

    coarse_segm: torch.Tensor
    fine_segm: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor


def unit_images(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] from (B, H, W, 3) uint8 sRGB crops."""
    if rgb.dim() != 4 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
        raise InputError(f"images must be (B, H, W, 3) uint8 RGB, got {tuple(rgb.shape)} {rgb.dtype}")
    return rgb.permute(0, 3, 1, 2).float() / 255.0


def standardise(x: torch.Tensor) -> torch.Tensor:
    """The network input from (B, 3, H, W) float images in [0, 1]: a fixed per-channel normalisation."""
    mean = torch.tensor(_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(_STD, device=x.device)[:, None, None]
    return (x - mean) / std


def normalise_images(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float network input from (B, H, W, 3) uint8 sRGB crops."""
    return standardise(unit_images(rgb))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    layers = []
    for c in (c_in, c_out):
        layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ChartNet(nn.Module):
    """The per-box chart predictor (module docstring).

    Args:
        width: channels of the first level (the others: 2, 4 and 6 times as many).
    """

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        if width < 4:
            raise InputError(f"network width must be >= 4, got {width}")
        w = (width, 2 * width, 4 * width, 6 * width)
        self.down = nn.ModuleList([_block(3, w[0]), _block(w[0], w[1]), _block(w[1], w[2]), _block(w[2], w[3])])
        self.up = nn.ModuleList([_block(w[3] + w[2], w[2]), _block(w[2] + w[1], w[1]), _block(w[1] + w[0], w[0])])
        self.heads = nn.ModuleDict({"coarse_segm": nn.Conv2d(w[0], N_COARSE, 1),
                                    **{k: nn.Conv2d(w[0], N_FINE, 1) for k in ("fine_segm", "u", "v")}})

    def forward(self, x: torch.Tensor) -> ChartOutput:
        """x: (B, 3, H, W) float normalised images (:func:`normalise_images`), H and W divisible by 8."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % 8 or x.shape[3] % 8:
            raise InputError(f"ChartNet input must be (B, 3, H, W) with H, W divisible by 8, got {tuple(x.shape)}")
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        out = {k: head(x) for k, head in self.heads.items()}
        if x.shape[-2:] != (HEATMAP, HEATMAP):
            out = {k: F.interpolate(t, size=(HEATMAP, HEATMAP), mode="bilinear", align_corners=False)
                   for k, t in out.items()}
        return ChartOutput(**out)
