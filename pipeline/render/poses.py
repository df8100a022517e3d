"""An anatomical pose sampler for Anny bodies: varied, plausible poses rather than uniform noise.

A pose is a set of joint angles in degrees, three per joint: ``flex`` (sagittal plane: forward
bend of spine/neck/head, arm or thigh forward, elbow/knee bend, ankle plantar flexion), ``abduct``
(coronal plane: limb away from the midline, spine/neck/head bent to the body's left) and ``twist``
(about the vertical axis). Angles are relative to Anny's rest pose (an A-pose: arms ~45° down from
horizontal) and turn into rotations about the *world-aligned rest axes* of the body (X left,
Y back, Z up), which is exactly Anny's default ``local-ref`` pose parameterisation; the right side
mirrors the left.

:data:`JOINT_LIMITS` are the documented ranges (degrees, relative to the rest A-pose) every sampled
angle is clipped to. A pose is drawn in two steps: a *mode* (walk, reach, sit, bend) sets a
coherent whole-body configuration with a few random amplitudes (stride phase, reach height, seat
depth, bend depth), then independent Gaussian noise of ``noise × (range width)`` per angle adds
variety; clipping keeps every joint within its limits. The pelvis (Anny's root bone) tilts the
trunk over the legs: its angles are added to the hips' so that the legs keep their orientation.

Size letters: ``G`` bodies, ``O`` all Anny bones; the 16 sampled joints (:data:`JOINTS`) are written as
the number 16 (legend: :mod:`pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import InputError

__all__ = ["JOINTS", "JOINT_LIMITS", "POSE_MODES", "JointPoses", "sample_poses", "pose_rotations",
           "anny_pose_parameters"]

# Sampled joints: name -> (Anny bones sharing the angles equally, side). Side "L"/"R" mirrors.
JOINTS: dict[str, tuple[tuple[str, ...], str]] = {
    "pelvis": (("root",), "C"),
    "spine": (("spine04", "spine03", "spine02"), "C"),
    "neck": (("neck01", "neck02"), "C"),
    "head": (("head",), "C"),
    "shoulder.L": (("upperarm01.L",), "L"), "shoulder.R": (("upperarm01.R",), "R"),
    "elbow.L": (("lowerarm01.L",), "L"), "elbow.R": (("lowerarm01.R",), "R"),
    "wrist.L": (("wrist.L",), "L"), "wrist.R": (("wrist.R",), "R"),
    "hip.L": (("upperleg01.L",), "L"), "hip.R": (("upperleg01.R",), "R"),
    "knee.L": (("lowerleg01.L",), "L"), "knee.R": (("lowerleg01.R",), "R"),
    "ankle.L": (("foot.L",), "L"), "ankle.R": (("foot.R",), "R"),
}

# Limits (degrees, relative to the rest A-pose) per joint kind: (flex, abduct, twist) each (lo, hi).
# Pelvis: the trunk's tilt over the legs (forward, sideways) at the root; the sampler adds it to the
# hips' angles so that the legs keep their orientation (a forward bend tilts the trunk, not the legs).
# Spine/neck/head: flex = forward bend, abduct = lateral bend, twist = axial rotation.
# Shoulder: flex = arm forward (up to overhead), abduct = arm out sideways (from the A-pose's ~45°,
# so -35 is arm along the body and 120 overhead), twist = horizontal swing. Elbow and knee are
# hinges (flex only). Wrist: flex/extension and radial/ulnar deviation. Hip: flex = thigh forward,
# abduct = leg out, twist = rotation. Ankle: flex = plantar flexion (+) / dorsiflexion (-), abduct
# = inversion/eversion.
JOINT_LIMITS: dict[str, tuple[tuple[float, float], ...]] = {
    "pelvis": ((-15.0, 70.0), (-10.0, 10.0), (0.0, 0.0)),
    "spine": ((-25.0, 80.0), (-30.0, 30.0), (-40.0, 40.0)),
    "neck": ((-40.0, 50.0), (-30.0, 30.0), (-50.0, 50.0)),
    "head": ((-25.0, 25.0), (-15.0, 15.0), (-25.0, 25.0)),
    "shoulder": ((-45.0, 170.0), (-35.0, 120.0), (-60.0, 60.0)),
    "elbow": ((0.0, 145.0), (0.0, 0.0), (0.0, 0.0)),
    "wrist": ((-70.0, 70.0), (-20.0, 30.0), (0.0, 0.0)),
    "hip": ((-20.0, 120.0), (-20.0, 45.0), (-35.0, 35.0)),
    "knee": ((0.0, 140.0), (0.0, 0.0), (0.0, 0.0)),
    "ankle": ((-20.0, 45.0), (-20.0, 20.0), (0.0, 0.0)),
}

# World-axis sign of (flex, abduct, twist) for the left/central side; the right side flips the
# abduct and twist signs (mirror through the sagittal plane X = 0).
_SIGNS = {
    "pelvis": (1, 1, 1), "spine": (1, 1, 1), "neck": (1, 1, 1), "head": (1, 1, 1),
    "shoulder": (-1, -1, 1), "elbow": (-1, 1, 1), "wrist": (-1, 1, 1),
    "hip": (-1, -1, 1), "knee": (1, 1, 1), "ankle": (1, 1, 1),
}

POSE_MODES = ("walk", "reach", "sit", "bend")
_NAMES = tuple(JOINTS)


def _kind(name: str) -> str:
    return name.split(".")[0]


_PELVIS = _NAMES.index("pelvis")
_HIPS = (_NAMES.index("hip.L"), _NAMES.index("hip.R"))
_LO = np.array([[lim[0] for lim in JOINT_LIMITS[_kind(n)]] for n in _NAMES])  # (16, 3)
_HI = np.array([[lim[1] for lim in JOINT_LIMITS[_kind(n)]] for n in _NAMES])


@dataclass(frozen=True)
class JointPoses:
    """Sampled poses. ``angles``: (G, 16, 3) float64 degrees (flex, abduct, twist) per joint of
    :data:`JOINTS`; ``mode``: (G,) int index into :data:`POSE_MODES`."""

    angles: np.ndarray
    mode: np.ndarray


def _mode_means(mode: str, rng: np.random.Generator, amount: float) -> np.ndarray:
    """(16, 3) the mean angles of one body in ``mode`` (amplitudes drawn from ``rng``)."""
    a = np.zeros((len(_NAMES), 3))
    j = {n: i for i, n in enumerate(_NAMES)}

    def put(name, flex=0.0, abduct=0.0, twist=0.0):
        a[j[name]] = (flex, abduct, twist)

    if mode == "walk":
        phase, stride = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0)
        s = np.sin(phase)
        for side, sgn in (("L", 1.0), ("R", -1.0)):
            put(f"hip.{side}", flex=30 * stride * sgn * s)
            # the swinging (forward-moving) leg bends its knee most
            put(f"knee.{side}", flex=5 + 45 * stride * max(0.0, np.cos(phase + (0 if sgn > 0 else np.pi))))
            put(f"shoulder.{side}", flex=-25 * stride * sgn * s, abduct=-25)
            put(f"elbow.{side}", flex=rng.uniform(10, 40))
            put(f"ankle.{side}", flex=10 * stride * sgn * s)
        put("spine", flex=rng.uniform(0, 10), twist=-8 * stride * s)
    elif mode == "reach":
        sides = [("L", "R", "both")[rng.integers(3)]]
        sides = ["L", "R"] if sides[0] == "both" else sides
        for side in ("L", "R"):
            if side in sides:
                put(f"shoulder.{side}", flex=rng.uniform(40, 165), abduct=rng.uniform(-20, 80),
                    twist=rng.uniform(-30, 30))
                put(f"elbow.{side}", flex=rng.uniform(0, 50))
                put(f"wrist.{side}", flex=rng.uniform(-30, 30))
            else:
                put(f"shoulder.{side}", flex=rng.uniform(-10, 30), abduct=rng.uniform(-30, 0))
                put(f"elbow.{side}", flex=rng.uniform(0, 60))
        lean = 1.0 if sides == ["L"] else (-1.0 if sides == ["R"] else 0.0)
        put("spine", flex=rng.uniform(-10, 25), abduct=-lean * rng.uniform(0, 20), twist=rng.uniform(-20, 20))
        put("neck", flex=rng.uniform(-30, 0))
        for side in ("L", "R"):
            put(f"hip.{side}", flex=rng.uniform(-5, 15), abduct=rng.uniform(0, 10))
            put(f"knee.{side}", flex=rng.uniform(0, 20))
    elif mode == "sit":
        hip, knee = rng.uniform(65, 100), rng.uniform(60, 110)
        for side in ("L", "R"):
            put(f"hip.{side}", flex=hip + rng.uniform(-10, 10), abduct=rng.uniform(0, 15))
            put(f"knee.{side}", flex=knee + rng.uniform(-15, 15))
            put(f"ankle.{side}", flex=rng.uniform(-10, 20))
            put(f"shoulder.{side}", flex=rng.uniform(10, 45), abduct=rng.uniform(-30, -5))
            put(f"elbow.{side}", flex=rng.uniform(30, 100))
        put("spine", flex=rng.uniform(0, 30), twist=rng.uniform(-15, 15))
    elif mode == "bend":
        spine, tilt = rng.uniform(15, 60), rng.uniform(15, 60)
        put("pelvis", flex=tilt)  # the trunk tilts forward over standing legs
        put("spine", flex=spine, abduct=rng.uniform(-10, 10), twist=rng.uniform(-15, 15))
        put("neck", flex=-rng.uniform(10, 35))  # look up, toward where one is going
        for side in ("L", "R"):
            put(f"hip.{side}", flex=rng.uniform(-5, 10), abduct=rng.uniform(0, 10))
            put(f"knee.{side}", flex=rng.uniform(0, 35))
            # arms hang roughly along gravity: forward by about the trunk's inclination
            put(f"shoulder.{side}", flex=0.8 * (spine + tilt) + rng.uniform(-20, 20), abduct=rng.uniform(-30, 0))
            put(f"elbow.{side}", flex=rng.uniform(0, 40))
    else:  # pragma: no cover - guarded by POSE_MODES
        raise InputError(f"unknown pose mode {mode!r}; known: {', '.join(POSE_MODES)}")
    return a * amount


def sample_poses(rngs: list[np.random.Generator], mode_weights: np.ndarray, noise: float,
                 amount: float = 1.0) -> JointPoses:
    """Draws one pose per generator (one generator per body, so the draw does not depend on batching).

    Args:
        rngs: G generators. mode_weights: (4,) relative frequencies of :data:`POSE_MODES`.
        noise: std of the per-angle Gaussian noise, as a fraction of the joint's range width.
        amount: scale of the mode's configuration (0: rest pose plus noise).
    """
    w = np.asarray(mode_weights, float)
    if w.shape != (len(POSE_MODES),) or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"mode_weights must be {len(POSE_MODES)} non-negative numbers with a positive sum, got {w}")
    if noise < 0 or amount < 0:
        raise InputError(f"noise and amount must be >= 0, got {noise}, {amount}")
    p = w / w.sum()
    angles, modes = [], []
    for rng in rngs:
        m = int(rng.choice(len(POSE_MODES), p=p))
        mean = _mode_means(POSE_MODES[m], rng, amount)
        a = np.clip(mean + rng.normal(size=mean.shape) * noise * (_HI - _LO), _LO, _HI)
        # the pelvis tilts the trunk over the legs: the hips take the tilt so the legs keep their pose
        pelvis = a[_PELVIS]
        a[_HIPS[0], :2] += pelvis[:2]
        a[_HIPS[1], :2] += pelvis[:2] * (1, -1)
        angles.append(np.clip(a, _LO, _HI))
        modes.append(m)
    return JointPoses(np.array(angles).reshape(len(rngs), len(_NAMES), 3), np.array(modes, dtype=np.int64))


def _rot(axis: int, deg: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations by ``deg`` degrees about world axis ``axis``."""
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    r = np.zeros(t.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[..., axis, axis] = 1
    r[..., i, i], r[..., j, j], r[..., i, j], r[..., j, i] = c, c, -s, s
    return r


def pose_rotations(angles: np.ndarray) -> np.ndarray:
    """(G, 16, 3, 3) world-aligned rotations of the sampled joints: twist · abduct · flex.

    Args:
        angles: (G, 16, 3) degrees (flex, abduct, twist) as :class:`JointPoses`.
    """
    signs = np.array([_SIGNS[_kind(n)] for n in _NAMES], float)  # (16, 3)
    right = np.array([JOINTS[n][1] == "R" for n in _NAMES])
    signs[right, 1:] *= -1
    a = angles * signs
    return _rot(2, a[..., 2]) @ _rot(1, a[..., 1]) @ _rot(0, a[..., 0])


def anny_pose_parameters(angles: np.ndarray, bone_labels: list[str]) -> np.ndarray:
    """(G, O, 4, 4) float32 Anny ``local-ref`` pose parameters; unsampled bones and the root stay identity.

    A joint spread over several bones (spine, neck) gives each bone an equal share of its angles.
    """
    b = len(angles)
    out = np.tile(np.eye(4, dtype=np.float64), (b, len(bone_labels), 1, 1))
    index = {n: i for i, n in enumerate(bone_labels)}
    shares = np.array([len(JOINTS[n][0]) for n in _NAMES], float)
    rots = pose_rotations(np.asarray(angles, float) / shares[None, :, None])  # (G, 16, 3, 3)
    for k, name in enumerate(_NAMES):
        bones = JOINTS[name][0]
        missing = [x for x in bones if x not in index]
        if missing:
            raise InputError(f"the body model has no bone(s) {missing} for joint {name!r}")
        for bone in bones:
            out[:, index[bone], :3, :3] = rots[:, k]
    return out.astype(np.float32)
