"""Test-time refinement (eval.refine_*): each instance's prediction moved to fit its own keypoints, from the
network's, with the training loss's terms and an anchor on the network's latent."""

import dataclasses

import numpy as np
import pytest
import torch

from keypoint_fixture import training_inputs
from pipeline.core.config import EvalParams, load_params_dict
from pipeline.keypoints.store import open_keypoints
from pipeline.train.checkpoint import load_checkpoint, reconstruct
from pipeline.train.loop import train
from pipeline.train.model import normalise
from pipeline.train.refine import Refiner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"hidden": 64, "bottleneck": 32, "blocks": 1, "lbo_basis": 16, "parts": 5}


@pytest.fixture(scope="module")
def trained(template, tmp_path_factory):
    """A tiny model trained 2 epochs on fixture keypoints, the keypoints of 8 instances and the loss params."""
    d = training_inputs(tmp_path_factory.mktemp("refine"), template)
    params = load_params_dict({"common": {"device": "cpu"}, "model": TINY,
                               "train": {"batch_size": 12, "epochs": 2, "log_every": 1}})
    train(params, d / "kp.zarr", d / "template.npz", d / "lbo.npz", d / "model.pt", None)
    model, info = load_checkpoint(d / "model.pt")
    root = open_keypoints(d / "kp.zarr")
    xy, visible = root["xy"][:8], root["visible"][:8].astype(bool)
    return model, xy, visible, load_params_dict(info["params"]).loss


def _refiner(template, trained, **cfg):
    model, _, _, loss = trained
    return Refiner(model, loss, dataclasses.replace(EvalParams(), **cfg), template.faces, template.vertex_part)


def _residual(points, xy, visible):
    """Mean image distance (pixels) of the visible keypoints from their vertices' projections."""
    return float(np.linalg.norm(points[..., :2] - xy, axis=-1)[visible].mean())


def test_no_steps_is_the_network_prediction(template, trained):
    model, xy, visible, _ = trained
    plain = reconstruct(model, xy, visible)
    assert torch.equal(reconstruct(model, xy, visible, refine=_refiner(template, trained, refine_steps=0)), plain)


def test_refinement_fits_the_keypoints_and_leaves_the_model_as_it_was(template, trained):
    model, xy, visible, _ = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    plain = reconstruct(model, xy, visible).numpy()
    refined = reconstruct(model, xy, visible, refine=_refiner(template, trained, refine_steps=60)).numpy()
    assert _residual(refined, xy, visible) < 0.8 * _residual(plain, xy, visible)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert [p.requires_grad for p in model.parameters()] == grads


def test_a_strong_anchor_keeps_the_network_latent(template, trained):
    model, xy, visible, _ = trained
    norm = normalise(torch.as_tensor(xy), torch.as_tensor(visible))
    vis = torch.as_tensor(visible)
    with torch.no_grad():
        start = model(norm.xy, vis)
    loose = _refiner(template, trained, refine_steps=30, refine_anchor=0.0)(norm.xy, vis, start)
    held = _refiner(template, trained, refine_steps=30, refine_anchor=1e6)(norm.xy, vis, start)
    assert float((held.latent - start.latent).abs().max()) < 0.05 * float((loose.latent - start.latent).abs().max())


def test_instances_are_refined_each_for_itself(template, trained):
    """Every term is per instance: refining a batch gives what refining its halves apart gives."""
    model, xy, visible, _ = trained
    refine = _refiner(template, trained, refine_steps=20)
    whole = reconstruct(model, xy, visible, refine=refine, batch_size=8)
    halves = reconstruct(model, xy, visible, refine=refine, batch_size=4)
    assert torch.allclose(whole, halves, atol=1e-4)
