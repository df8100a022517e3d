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

This module is the network's read side: :func:`save_network` / :func:`load_network` write and read its
checkpoint (``torch.save`` of a dict loadable with ``weights_only=True``: ``model`` state dict, ``width``,
``input_size``, ``template_hash``, ``params`` (plain dicts), ``step``, ``metrics``, ``optimizer`` (its state,
to resume; None when not kept)), checking that it was trained for the template in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import InputError
from pipeline.core.io import atomic_path
from pipeline.densepose.convert import ChartCrops, chart_output_to_crops

__all__ = ["HEATMAP", "N_FINE", "N_COARSE", "ChartOutput", "ChartNet", "unit_images", "standardise",
           "normalise_images", "predict_charts", "predict_crops", "save_network", "read_network", "load_network"]

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


def predict_charts(net: ChartNet, rgb: np.ndarray, input_size: int, device: str | torch.device = "cpu",
                   batch_size: int = 64) -> ChartOutput:
    """The network's chart-head output for crops ``rgb`` (B, S, S, 3) uint8 sRGB, resampled (bilinear, with
    anti-aliasing) to ``input_size`` when S differs; four (B, C, 112, 112) float32 tensors on the CPU."""
    outs = []
    with torch.no_grad():
        for a in range(0, len(rgb), batch_size):
            x = unit_images(torch.from_numpy(np.ascontiguousarray(rgb[a:a + batch_size]))).to(device)
            if x.shape[-1] != input_size or x.shape[-2] != input_size:
                x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False,
                                  antialias=True).clamp(0, 1)
            outs.append([t.float().cpu() for t in net(standardise(x))])
    if not outs:
        return ChartOutput(*(torch.zeros((0, c, HEATMAP, HEATMAP)) for c in (N_COARSE, N_FINE, N_FINE, N_FINE)))
    return ChartOutput(*(torch.cat(ts) for ts in zip(*outs)))


def predict_crops(net: ChartNet, rgb: np.ndarray, input_size: int, crop: int, device: str | torch.device = "cpu",
                  batch_size: int = 64) -> ChartCrops:
    """The network's labels (B, S, S) uint8 and U, V (B, 2, S, S) float32 on the S = ``crop`` grid of each box, for
    crops ``rgb`` (B, H, W, 3) uint8: :func:`predict_charts` through Detectron2's converters."""
    out = predict_charts(net, rgb, input_size, device, batch_size)
    return chart_output_to_crops(out.fine_segm, out.coarse_segm, out.u, out.v, crop)


def save_network(path: str | Path, net: ChartNet, input_size: int, template_hash: str, params: dict, step: int,
                 metrics: dict, optimizer: dict | None = None) -> None:
    """Writes the network's checkpoint atomically (module docstring); ``optimizer``: its state dict, to resume."""
    ck = {"model": net.state_dict(), "width": net.width, "input_size": input_size, "template_hash": template_hash,
          "params": params, "step": step, "metrics": metrics, "optimizer": optimizer}
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


def read_network(path: str | Path, template_hash: str | None = None, device: str | torch.device = "cpu") -> dict:
    """The checkpoint's entries (module docstring), tensors on ``device``.

    Raises:
        InputError: not such a checkpoint, or one trained for another template than ``template_hash``.
    """
    try:
        ck = torch.load(Path(path), map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated file, another format, a refused object
        raise InputError(f"{path}: not a correspondence network checkpoint ({type(e).__name__}: {e}); "
                         "retrain it") from e
    if not isinstance(ck, dict) or not {"model", "width", "input_size", "template_hash"} <= set(ck):
        what = sorted(ck) if isinstance(ck, dict) else type(ck).__name__
        raise InputError(f"{path}: not a correspondence network checkpoint (holds {what})")
    if template_hash is not None and ck["template_hash"] != template_hash:
        raise InputError(f"{path}: trained for template {ck['template_hash']!r}, the template is {template_hash!r}; "
                         "retrain the network for this template (dvc repro network)")
    return ck


def load_network(path: str | Path, template_hash: str | None = None,
                 device: str | torch.device = "cpu") -> tuple[ChartNet, dict]:
    """The trained network in eval mode on ``device`` and the checkpoint's other entries (:func:`read_network`)."""
    ck = read_network(path, template_hash, device)
    net = ChartNet(int(ck["width"]))
    try:
        net.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise InputError(f"{path}: its weights do not fit a ChartNet of width {ck['width']} ({e}); retrain it") from e
    return net.to(device).eval(), {k: v for k, v in ck.items() if k != "model"}
