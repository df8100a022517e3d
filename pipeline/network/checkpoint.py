"""The read side of ``models/network.pt`` (stage ``network``): the correspondence network's checkpoint, and
running it on crops.

:func:`save_network` / :func:`load_network` write and read the checkpoint (``torch.save`` of a dict loadable with
``weights_only=True``: ``model`` state dict, ``width``, ``input_size``, ``template_hash``, ``params`` (plain dicts),
``step``, ``metrics``, ``optimizer`` (its state, to resume; None when not kept)), checking that it was trained for
the template in use; :func:`predict_charts` runs the network (:class:`~pipeline.network.model.ChartNet`) on crops and
:func:`predict_crops` turns its output into DensePose crops with Detectron2's converters
(:func:`pipeline.densepose.convert.chart_output_to_crops`). Size letters: ``B`` boxes of a batch, ``S`` crop side
(legend: :mod:`pipeline`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.errors import InputError
from pipeline.core.io import atomic_path
from pipeline.densepose.convert import ChartCrops, chart_output_to_crops
from pipeline.network.model import HEATMAP, N_COARSE, N_FINE, ChartNet, ChartOutput, standardise, unit_images

__all__ = ["ChartNet", "predict_charts", "predict_crops", "save_network", "read_network", "load_network"]


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
