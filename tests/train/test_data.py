import shutil

import numpy as np
import pytest
import torch
import zarr

from keypoint_fixture import make_keypoints
from pipeline.core.store import StoreError
from pipeline.train.data import KeypointStream


@pytest.fixture(scope="module")
def store(template, tmp_path_factory):
    return make_keypoints(tmp_path_factory.mktemp("kp") / "kp.zarr", template, n=40, seed=0, chunk=8)


def test_epoch_covers_split_once_and_is_seeded(store):
    s = KeypointStream(store, batch_size=4, chunks_in_memory=2, seed=3)
    rows = np.concatenate([b.rows.numpy() for b in s.epoch(0)])
    assert len(rows) == s.steps_per_epoch * 4 == s.n_split // 4 * 4
    assert len(set(rows)) == len(rows) and np.all(s.mask[rows])
    again = np.concatenate([b.rows.numpy() for b in s.epoch(0)])
    np.testing.assert_array_equal(rows, again)
    other = np.concatenate([b.rows.numpy() for b in s.epoch(1)])
    assert not np.array_equal(rows, other)
    skipped = np.concatenate([b.rows.numpy() for b in s.epoch(0, skip=2)])
    np.testing.assert_array_equal(skipped, rows[8:])


def test_ranks_take_disjoint_halves(store):
    full = KeypointStream(store, batch_size=4, seed=0)
    a = KeypointStream(store, batch_size=4, seed=0, rank=0, world=2)
    b = KeypointStream(store, batch_size=4, seed=0, rank=1, world=2)
    for fb, ab, bb in zip(full.epoch(0), a.epoch(0), b.epoch(0)):
        np.testing.assert_array_equal(fb.rows.numpy(), np.r_[ab.rows.numpy(), bb.rows.numpy()])
        assert ab.xy.shape == (2, full.n_vertices, 2)


def test_confidence_comes_with_the_batches_only_when_asked(store):
    from pipeline.keypoints.store import open_keypoints

    plain = next(KeypointStream(store, batch_size=4, seed=3).epoch(0))
    assert plain.confidence is None
    stored = open_keypoints(store)["confidence"][:]
    assert len(np.unique(stored)) > 10  # the fixture's confidences vary
    for batch in KeypointStream(store, batch_size=4, seed=3, confidence=True).epoch(0):
        assert batch.confidence.dtype == torch.float16 and batch.confidence.shape == batch.visible.shape
        np.testing.assert_array_equal(batch.confidence.numpy(), stored[batch.rows.numpy()])


def test_nan_keypoints_are_a_store_error_naming_the_instance(store, tmp_path):
    """Not a NaN loss a few steps later (with the advice to lower train.lr): the store, array and instance."""
    bad = shutil.copytree(store, tmp_path / "kp.zarr")
    zarr.open_group(str(bad), mode="a")["xy"][21, 5] = [np.nan, 1.0]
    s = KeypointStream(bad, batch_size=4, chunks_in_memory=2, seed=3)
    with pytest.raises(StoreError, match=rf"{bad}: array 'xy' holds NaN or Inf at instance 21.*dvc repro -f keypoints"):
        for _ in s.epoch(0):
            pass
