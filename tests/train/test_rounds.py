"""Two rounds of training (train.rounds: 2): the keypoints round 1 turns away are hidden in round 2, in
training and at inference alike."""

import numpy as np
import pytest
import torch

from keypoint_fixture import training_inputs
from pipeline.core.config import load_params_dict
from pipeline.keypoints.store import open_keypoints
from pipeline.train.checkpoint import load_checkpoint, reconstruct
from pipeline.train.data import KeypointStream
from pipeline.train.loop import train, turned_in_split
from pipeline.train.rounds import FirstRound, turned_away

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"hidden": 64, "bottleneck": 32, "blocks": 1, "lbo_basis": 16, "parts": 5}


@pytest.fixture(scope="module")
def inputs(template, tmp_path_factory):
    return training_inputs(tmp_path_factory.mktemp("rounds"), template)


def _params(**train_):
    return load_params_dict({"common": {"device": "cpu"}, "model": TINY,
                             "train": {"batch_size": 12, "epochs": 2, "log_every": 1, **train_}})


def _run(inputs, out, params, live=None):
    return train(params, inputs / "kp.zarr", inputs / "template.npz", inputs / "lbo.npz", out, live)


def test_turned_away_reads_the_normal_of_the_vertex_and_only_visible_ones():
    # a square of two triangles in the image plane; winding (0, 1, 2) gives the normal +z (away from the camera)
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]])
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    shown = torch.tensor([[True, True, False, True]])
    assert turned_away(pts, faces, shown, 0.3).tolist() == [[True, True, False, True]]
    assert not turned_away(pts, faces.flip(-1), shown, 0.3).any()  # facing the camera: none
    tilted = pts.clone()
    tilted[0, 1, 2] = tilted[0, 3, 2] = 1.0  # normal (-1, 0, 1)/sqrt(2): z 0.71
    assert turned_away(tilted, faces, shown, 0.7).sum() == 3 and not turned_away(tilted, faces, shown, 0.72).any()


@pytest.fixture(scope="module")
def two_rounds(inputs, tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    result = _run(inputs, d / "model.pt", _params(rounds=2, turned_z=0.0), d / "live")
    return d, result


def test_two_rounds_keep_round_one_in_the_checkpoint_and_leave_no_round_one_file(inputs, two_rounds):
    d, result = two_rounds
    assert sorted(p.name for p in d.iterdir()) == ["live", "model.pt"]  # no .model.pt.round1, no partials
    model, info = load_checkpoint(d / "model.pt")
    first = info["first_round"]
    assert isinstance(first, FirstRound) and first.z_max == 0.0
    assert len(first.faces) == len(np.load(inputs / "template.npz")["faces"])
    ws = result.objective.model.state_dict()
    assert all(torch.equal(ws[k].cpu(), v) for k, v in model.state_dict().items())
    assert any(not torch.equal(v, first.model.state_dict()[k]) for k, v in model.state_dict().items()
               if v.is_floating_point())  # round 2 learnt something else than round 1


def test_round_one_cleans_the_keypoints_before_round_two_reconstructs(inputs, two_rounds):
    d, _ = two_rounds
    model, info = load_checkpoint(d / "model.pt")
    first = info["first_round"]
    z = open_keypoints(inputs / "kp.zarr")
    xy, visible = torch.as_tensor(z["xy"][:]), torch.as_tensor(z["visible"][:].astype(bool))
    turned = first.turned(xy, visible)
    assert 0 < turned.sum() < visible.sum()  # an untrained-ish round 1 turns some away, not all
    assert not (turned & ~visible).any()
    cleaned = reconstruct(model, xy, visible, first_round=first)
    assert torch.equal(cleaned, reconstruct(model, xy, visible & ~turned))
    assert not torch.equal(cleaned, reconstruct(model, xy, visible))
    # the training side: the same flags, for the train split only
    hidden = turned_in_split(first, z, split=0, batch_size=5)
    train_rows = np.asarray(z["split"][:]) == 0
    assert np.array_equal(hidden[train_rows], turned.numpy()[train_rows]) and not hidden[~train_rows].any()


def test_the_stream_yields_hidden_keypoints_as_invisible_with_no_confidence(inputs):
    z = open_keypoints(inputs / "kp.zarr")
    visible = z["visible"][:].astype(bool)
    hidden = np.zeros_like(visible)
    hidden[::2, ::3] = True
    plain = KeypointStream(inputs / "kp.zarr", 12, confidence=True)
    cut = KeypointStream(inputs / "kp.zarr", 12, confidence=True, hidden=hidden)
    for a, b in zip(plain.epoch(0), cut.epoch(0)):
        assert torch.equal(a.rows, b.rows) and torch.equal(a.xy, b.xy) and torch.equal(a.count, b.count)
        h = torch.as_tensor(hidden[a.rows.numpy()])
        assert torch.equal(b.visible, a.visible & ~h)
        assert torch.equal(b.confidence, torch.where(h, torch.zeros_like(a.confidence), a.confidence))
    with pytest.raises(ValueError, match="hidden is"):
        KeypointStream(inputs / "kp.zarr", 12, hidden=hidden[:, :5])


def test_round_two_with_nothing_turned_away_is_round_one_again(inputs, tmp_path):
    """Round 2 trains anew with round 1's seed: with no keypoint turned away (normal z > 1 never holds) it
    repeats round 1 weight for weight, and so does a one-round run."""
    one = _run(inputs, tmp_path / "one.pt", _params())
    two = _run(inputs, tmp_path / "two.pt", _params(rounds=2, turned_z=1.0))
    w1, w2 = one.objective.model.state_dict(), two.objective.model.state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    first = load_checkpoint(tmp_path / "two.pt")[1]["first_round"]
    assert all(torch.equal(w1[k], v) for k, v in first.model.state_dict().items())
    assert load_checkpoint(tmp_path / "one.pt")[1]["first_round"] is None


def test_a_run_killed_in_round_two_resumes_to_the_uninterrupted_weights(inputs, two_rounds, tmp_path, monkeypatch):
    """Killed after round 2's step 3 (its checkpoint at step 2): round 1's finished model stays beside the output
    and is reused, round 2 continues from its checkpoint, and the weights equal an uninterrupted run's."""
    from pipeline.train import loop

    real, calls = loop._log_losses, []

    def log_then_die(state, live, bar):
        real(state, live, bar)
        calls.append(state.step)
        if len(calls) == 4 + 3:  # round 1 logs its 4 steps (2 epochs of 34 // 12), round 2 dies after its step 3
            raise KeyboardInterrupt

    p = {"rounds": 2, "turned_z": 0.0, "checkpoint_every": 2}
    monkeypatch.setattr(loop, "_log_losses", log_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(inputs, tmp_path / "model.pt", _params(**p), tmp_path / "live")
    assert (tmp_path / ".model.pt.round1").is_file() and not (tmp_path / "model.pt").exists()
    assert torch.load(tmp_path / ".model.pt.partial", weights_only=True)["step"] == 2
    monkeypatch.setattr(loop, "_log_losses", real)
    resumed = _run(inputs, tmp_path / "model.pt", _params(**p, resume=True), tmp_path / "live")
    ws, wr = two_rounds[1].objective.model.state_dict(), resumed.objective.model.state_dict()
    assert all(torch.equal(ws[k], wr[k]) for k in ws)
    assert not (tmp_path / ".model.pt.round1").exists()


def test_a_finished_two_round_model_trained_further_keeps_its_round_one(inputs, two_rounds, tmp_path, monkeypatch):
    """train.resume on a finished two-round model with more epochs: round 1 comes from the checkpoint (not retrained,
    so round 2 goes on with the flags it was trained with) and round 2 continues from its last step."""
    import shutil

    from pipeline.train import loop

    d, _ = two_rounds
    shutil.copy(d / "model.pt", tmp_path / "model.pt")
    saved = load_checkpoint(tmp_path / "model.pt")[1]
    rounds = []
    real = loop.train_round
    monkeypatch.setattr(loop, "train_round", lambda *a, **kw: rounds.append(kw.get("desc")) or real(*a, **kw))
    further = _run(inputs, tmp_path / "model.pt", _params(rounds=2, turned_z=0.0, epochs=3, resume=True))
    assert rounds == ["train round 2 of 2"]  # round 1 not trained again
    model, info = load_checkpoint(tmp_path / "model.pt")
    assert info["step"] == 6 and saved["step"] == 4  # 2 steps an epoch (34 train instances // 12)
    first, kept = info["first_round"].model.state_dict(), saved["first_round"].model.state_dict()
    assert all(torch.equal(first[k], kept[k]) for k in kept)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    ws = further.objective.model.state_dict()
    assert all(torch.equal(ws[k].cpu(), v) for k, v in model.state_dict().items())
