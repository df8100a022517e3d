import numpy as np
import torch

from pipeline.train.model import denormalise, normalise


def test_round_trip_and_unit_rms():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (3, 50, 2)).astype(np.float32)
    vis = rng.random((3, 50)) < 0.6
    n = normalise(xy, vis)
    assert isinstance(n.xy, np.ndarray)
    assert np.all(n.xy[~vis] == 0)
    rms = np.sqrt((n.xy**2).sum(-1).sum(1) / vis.sum(1))
    np.testing.assert_allclose(rms, 1.0, rtol=1e-5)
    np.testing.assert_allclose(n.xy[vis].reshape(-1, 2).mean(0), 0, atol=1e-5)
    back = denormalise(n.xy, n.centre, n.scale)
    np.testing.assert_allclose(back[vis], xy[vis], rtol=1e-5, atol=1e-3)
    # depth is scaled like x and y, not shifted
    p3 = np.concatenate([n.xy, np.ones((3, 50, 1), np.float32)], -1)
    np.testing.assert_allclose(denormalise(p3, n.centre, n.scale)[..., 2], np.repeat(n.scale[:, None], 50, 1))


def test_torch_matches_numpy():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(2, 10, 2)).astype(np.float32)
    vis = np.ones((2, 10), bool)
    a = normalise(xy, vis)
    b = normalise(torch.from_numpy(xy), torch.from_numpy(vis))
    np.testing.assert_allclose(a.xy, b.xy.numpy(), rtol=1e-6)
