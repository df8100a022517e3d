"""The anatomical pose sampler: limits, modes, mirroring and the Anny rotation conventions."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.render.poses import (JOINTS, JOINT_LIMITS, POSE_MODES, anny_pose_parameters, pose_rotations,
                                   sample_poses)

NAMES = tuple(JOINTS)


def _draw(n=200, weights=(1, 1, 1, 1), noise=0.1, seed=0):
    return sample_poses([np.random.default_rng([seed, i]) for i in range(n)], np.array(weights, float), noise)


def test_angles_stay_within_documented_limits():
    poses = _draw(noise=1.0)  # large noise: clipping must hold every angle inside its range
    for k, name in enumerate(NAMES):
        lims = np.array(JOINT_LIMITS[name.split(".")[0]])
        assert (poses.angles[:, k] >= lims[:, 0] - 1e-9).all() and (poses.angles[:, k] <= lims[:, 1] + 1e-9).all(), name


def test_modes_give_their_configuration():
    k = {n: i for i, n in enumerate(NAMES)}
    for m, mode in enumerate(POSE_MODES):
        w = np.zeros(4)
        w[m] = 1
        a = _draw(100, w, noise=0.0).angles
        hips = a[:, [k["hip.L"], k["hip.R"]], 0]
        if mode == "sit":
            assert (hips > 50).all() and (a[:, [k["knee.L"], k["knee.R"]], 0] > 40).all()
        elif mode == "bend":  # the trunk tilts forward over the legs: the hips take the pelvis tilt
            assert (a[:, k["spine"], 0] + a[:, k["pelvis"], 0] >= 30).all()
            assert (a[:, k["hip.L"], 0] - a[:, k["pelvis"], 0] <= 10 + 1e-9).all()
        elif mode == "walk":  # legs swing in opposition (up to clipping at the extension limit)
            assert (hips[:, 0] * hips[:, 1] <= 0).all()
            assert np.corrcoef(hips[:, 0], hips[:, 1])[0, 1] < -0.95
            assert np.abs(hips).max() > 15
        elif mode == "reach":  # at least one arm raised forward
            assert (a[:, [k["shoulder.L"], k["shoulder.R"]], 0].max(axis=1) >= 40).all()


def test_draw_is_deterministic_and_varied():
    a, b = _draw(50), _draw(50)
    assert np.array_equal(a.angles, b.angles) and np.array_equal(a.mode, b.mode)
    assert set(a.mode.tolist()) == {0, 1, 2, 3}
    assert a.angles.std(axis=0).max() > 10


def test_right_side_mirrors_left():
    angles = np.zeros((1, len(NAMES), 3))
    k = {n: i for i, n in enumerate(NAMES)}
    angles[0, k["shoulder.L"]] = angles[0, k["shoulder.R"]] = (30.0, 20.0, 10.0)
    rot = pose_rotations(angles)[0]
    mirror = np.diag([-1.0, 1.0, 1.0])  # the sagittal plane X = 0
    assert np.allclose(rot[k["shoulder.R"]], mirror @ rot[k["shoulder.L"]] @ mirror)
    assert np.allclose(rot[k["head"]], np.eye(3))


def test_bad_weights_are_errors():
    with pytest.raises(ValueError, match="mode_weights"):
        _draw(2, (0, 0, 0, 0))


def test_anny_conventions_flex_moves_limbs_forward():
    """Hip flexion brings the foot forward (-Y, the body faces -Y); knee flexion takes it back;
    shoulder flexion raises the wrist forward; spine flexion moves the head forward."""
    import torch

    from pipeline.core.body_model import anny_model

    model = anny_model("notoes_collapse10pc")
    labels = list(model.bone_labels)
    idx = {n: i for i, n in enumerate(labels)}
    k = {n: i for i, n in enumerate(NAMES)}

    def heads(joint=None, angle=(0.0, 0.0, 0.0)):
        a = np.zeros((1, len(NAMES), 3))
        if joint:
            a[0, k[joint]] = angle
        with torch.no_grad():
            out = model(pose_parameters=torch.from_numpy(anny_pose_parameters(a, labels)))
        return out["bone_poses"][0, :, :3, 3].numpy()

    rest = heads()
    assert np.allclose(anny_pose_parameters(np.zeros((1, len(NAMES), 3)), labels), np.eye(4))
    assert heads("hip.L", (60, 0, 0))[idx["foot.L"], 1] < rest[idx["foot.L"], 1] - 0.2
    assert heads("knee.L", (60, 0, 0))[idx["foot.L"], 1] > rest[idx["foot.L"], 1] + 0.1
    assert heads("shoulder.L", (90, 0, 0))[idx["wrist.L"], 1] < rest[idx["wrist.L"], 1] - 0.1
    assert heads("shoulder.R", (90, 0, 0))[idx["wrist.R"], 1] < rest[idx["wrist.R"], 1] - 0.1
    assert heads("hip.L", (0, 30, 0))[idx["foot.L"], 0] > rest[idx["foot.L"], 0] + 0.1  # abduction: outward (+X left)
    assert heads("hip.R", (0, 30, 0))[idx["foot.R"], 0] < rest[idx["foot.R"], 0] - 0.1
    assert heads("spine", (45, 0, 0))[idx["head"], 1] < rest[idx["head"], 1] - 0.1
    # the pelvis tilts the whole body about the root; with the hips compensating, the feet stay put
    a = np.zeros((1, len(NAMES), 3))
    a[0, k["pelvis"]] = a[0, k["hip.L"]] = a[0, k["hip.R"]] = (40, 0, 0)
    with torch.no_grad():
        out = model(pose_parameters=torch.from_numpy(anny_pose_parameters(a, labels)))["bone_poses"][0, :, :3, 3].numpy()
    assert out[idx["head"], 1] < rest[idx["head"], 1] - 0.2
    foot_dir = out[idx["foot.L"]] - out[idx["upperleg01.L"]]
    rest_dir = rest[idx["foot.L"]] - rest[idx["upperleg01.L"]]
    assert np.allclose(foot_dir, rest_dir, atol=1e-3)  # the legs keep their orientation
