import dataclasses
import math

import numpy as np
import pytest
import roma
import torch
import trimesh

from pipeline.core.config import LossParams, ModelParams
from pipeline.core.errors import InputError
from pipeline.geometry.lbo import eigenbasis, unit_rms
from pipeline.template.file import canonical_template
from pipeline.train.losses import (ROBUST_NORMS, ArapOperator, TrainingObjective, annealed_scale, arap_loss,
                                   arap_rotations, arap_weights, best_rotations, canonicalisation_loss, entropy_loss,
                                   facing_gate, facing_loss, limb_vertices, make_psi, mirror_map, oracle_loss,
                                   pseudo_huber, reprojection_loss, robust_norm, self_visibility, smooth_min)
from pipeline.train.model import vertex_normals
from pipeline.train.part_init import build_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def arap_op(template):
    x = torch.as_tensor(template.vertices)
    return x, ArapOperator(x, arap_weights(template.vertices, template.faces))


def test_pseudo_huber_is_quadratic_then_linear():
    r = torch.tensor([1e-4, 10.0], dtype=torch.float64)
    rho = pseudo_huber(r**2, eps=0.01)
    assert rho[0] == pytest.approx(0.5 * 1e-8 / 0.01, rel=1e-3)
    assert rho[1] == pytest.approx(10.0 - 0.01, rel=1e-3)


def test_reprojection_ignores_invisible_and_heteroscedastic_form():
    xy = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [100.0, 0.0]]])
    vis = torch.tensor([[True, True, False]])
    plain = reprojection_loss(pred, xy, vis, eps=1e-6)
    assert plain.item() == pytest.approx(0.5, rel=1e-4)
    b = torch.full((1, 3), 2.0)
    het = reprojection_loss(pred, xy, vis, eps=1e-6, uncertainty=b, b_min=0.1)
    assert het.item() == pytest.approx(math.log(2.0) + 0.25, rel=1e-4)
    # a scale driven towards 0 is floored at b_min in both terms: bounded below, no gradient pulling it further
    # (with log(b) unfloored the loss fell without bound and training diverged, issue 26)
    tiny = torch.full((1, 3), 1e-30, requires_grad=True)
    floored = reprojection_loss(pred, xy, vis, eps=1e-6, uncertainty=tiny, b_min=0.1)
    assert floored.item() == pytest.approx(math.log(0.1) + 0.5 / 0.1, rel=1e-4)  # mean of log b + rho / b
    floored.backward()
    assert torch.isfinite(tiny.grad).all() and (tiny.grad == 0).all()


def test_reprojection_weights_all_one_change_nothing_and_zero_ignores_an_outlier():
    torch.manual_seed(0)
    pred, xy = torch.randn(4, 50, 2), torch.randn(4, 50, 2)
    vis = torch.rand(4, 50) < 0.7
    plain = reprojection_loss(pred, xy, vis, eps=0.01)
    assert torch.equal(reprojection_loss(pred, xy, vis, eps=0.01, weight=torch.ones(4, 50, dtype=torch.float16)), plain)
    clean = reprojection_loss(pred, pred.clone(), vis, eps=0.01)
    assert clean.item() == 0
    gross = pred.clone()
    k = int(vis[0].nonzero()[0])
    gross[0, k] += 100.0  # one gross outlier among the visible keypoints
    assert reprojection_loss(pred, gross, vis, eps=0.01).item() > 1.0 / vis.sum().item()
    w = torch.ones(4, 50)
    w[0, k] = 0
    assert reprojection_loss(pred, gross, vis, eps=0.01, weight=w).item() == 0  # ignored
    # a weighted mean: Σ w ρ / Σ w over the visible keypoints, the invisible ones weighing nothing
    w = torch.rand(4, 50)
    rho = pseudo_huber(((pred - xy) ** 2).sum(-1), 0.01)
    expected = (rho * w * vis).sum() / (w * vis).sum()
    torch.testing.assert_close(reprojection_loss(pred, xy, vis, eps=0.01, weight=w), expected)
    assert reprojection_loss(pred, xy, torch.zeros_like(vis), eps=0.01, weight=w).item() == 0  # nothing visible


def test_horn_rotations_match_svd():
    torch.manual_seed(0)
    rot = roma.random_rotmat(500)
    cov = rot @ (torch.eye(3) + 0.3 * torch.randn(500, 3, 3))  # near-rotations, as in ARAP
    torch.testing.assert_close(best_rotations(cov, "horn"), best_rotations(cov, "svd"), atol=1e-4, rtol=0)
    assert torch.all(torch.det(best_rotations(-cov, "svd")) > 0)  # reflection-corrected
    with pytest.raises(ValueError, match="horn or svd"):
        best_rotations(cov, "qr")


def _arap_naive(x, y, w):
    """Loop reference: Σ over directed edges c |(Y_i − Y_k) − R_i(X_i − X_k)|² / Σ_dir c, R by SVD."""
    n = len(x)
    nbrs = [[] for _ in range(n)]
    for (i, k), c in zip(w.edges, w.weights):
        nbrs[i].append((k, c))
        nbrs[k].append((i, c))
    total, norm = 0.0, 0.0
    for i in range(n):
        p = sum(c * np.outer(y[i] - y[k], x[i] - x[k]) for k, c in nbrs[i])
        u, _, vt = np.linalg.svd(p)
        r = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
        for k, c in nbrs[i]:
            total += c * np.sum((y[i] - y[k] - r @ (x[i] - x[k])) ** 2)
            norm += c * np.sum((x[i] - x[k]) ** 2)
    return total / norm


def test_arap_matches_naive_loop():
    m = trimesh.creation.icosphere(subdivisions=1)
    x = np.asarray(m.vertices, np.float64)
    w = arap_weights(x, np.asarray(m.faces))
    y = x + 0.1 * np.random.default_rng(0).normal(size=x.shape)
    op = ArapOperator(torch.as_tensor(x, dtype=torch.float32), w)
    got = arap_loss(op, torch.as_tensor(y[None], dtype=torch.float32), "svd").item()
    assert got == pytest.approx(_arap_naive(x, y, w), rel=1e-3)


def test_arap_with_kept_rotations_bounds_the_best_from_above():
    """The best rotations given back (arap_rotations) reproduce the loss; rotations kept from another shape give more
    (ARAP's local/global alternation, as test-time refinement keeps them for a few steps)."""
    m = trimesh.creation.icosphere(subdivisions=1)
    x = np.asarray(m.vertices, np.float64)
    op = ArapOperator(torch.as_tensor(x, dtype=torch.float32), arap_weights(x, np.asarray(m.faces)))
    rng = np.random.default_rng(0)
    y, z = (torch.as_tensor((x + 0.1 * rng.normal(size=x.shape))[None], dtype=torch.float32) for _ in range(2))
    best = arap_loss(op, y)
    assert arap_loss(op, y, rotations=arap_rotations(op, y)).item() == pytest.approx(best.item(), rel=1e-6)
    assert arap_loss(op, y, rotations=arap_rotations(op, z)).item() > best.item() + 1e-3


def test_arap_zero_for_rigid_motion_positive_for_bent_limb(template, arap_op):
    x, op = arap_op
    torch.manual_seed(0)
    y = x @ roma.random_rotmat(2).transpose(-1, -2) + torch.randn(2, 1, 3)
    assert arap_loss(op, y).abs().item() < 1e-4  # float32 cancellation floor of the expanded energy
    arm = torch.as_tensor(np.isin(template.vertex_part, (16, 18, 20, 22)))  # one arm
    pivot = x[arm].mean(0)
    bend = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.8, 0.0]))
    bent = x.clone()
    bent[arm] = (x[arm] - pivot) @ bend.T + pivot
    bent_loss = arap_loss(op, bent[None]).item()
    assert bent_loss > 1e-3
    more = x.clone()
    more[arm] = (x[arm] - pivot) @ roma.rotvec_to_rotmat(torch.tensor([0.0, 1.6, 0.0])).T + pivot
    assert arap_loss(op, more[None]).item() > bent_loss  # grows with the distortion


def test_arap_is_relative_and_scale_free(template, arap_op):
    """Relative energy: a uniform scaling by s gives (s - 1)^2, whatever the template's units."""
    x, op = arap_op
    for s in (0.9, 1.2):
        assert arap_loss(op, (s * x)[None]).item() == pytest.approx((s - 1) ** 2, rel=1e-3)
    big = ArapOperator(10 * x, arap_weights(10 * x.numpy(), template.faces))
    assert arap_loss(big, (12 * x)[None]).item() == pytest.approx(0.04, rel=1e-3)


def test_entropy_bounds():
    w = torch.softmax(torch.randn(100, 7) * 3, dim=1)
    e = entropy_loss(w).item()
    assert 0.0 <= e <= 1.0
    assert entropy_loss(torch.full((5, 7), 1 / 7)).item() == pytest.approx(1.0, rel=1e-5)
    assert entropy_loss(torch.eye(7)).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_loss(torch.ones(5, 1)).item() == 0.0


def test_entropy_gradient_sharpens_soft_parts():
    logits = torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.0, 0.9]], requires_grad=True)
    w = torch.softmax(logits, 1)
    entropy_loss(w).backward()
    with torch.no_grad():
        after = torch.softmax(logits - 0.5 * logits.grad, 1)
    assert (after.max(1).values > w.max(1).values).all()  # a descent step makes each vertex's best part surer
    assert entropy_loss(after).item() < entropy_loss(w).item()


def test_vertex_normals_face_outward(template):
    canon, _ = canonical_template(template.vertices, template.up, template.forward)
    n = vertex_normals(torch.as_tensor(canon)[None], torch.as_tensor(template.faces, dtype=torch.long))[0]
    assert n[template.vertex_part == 2, 2].mean() < -0.5  # torso front faces the camera (-z)
    assert n[template.vertex_part == 1, 2].mean() > 0.5  # torso back faces away
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(len(n)), atol=1e-5, rtol=0)


def test_facing_zero_from_the_front_positive_turned_around(template):
    """The model's posed normals: the template seen from the front faces the camera (loss 0); turned
    around by the camera (its depth twin among rotations) the same visible vertices face away."""
    eb = eigenbasis(template.vertices.astype(np.float64), template.faces, 16)
    torch.manual_seed(0)
    model = build_model(ModelParams(hidden=32, bottleneck=16, blocks=1, parts=4, lbo_basis=16),
                        template.vertices, template.up, template.forward, unit_rms(eb.evecs))
    faces = torch.as_tensor(template.faces, dtype=torch.long)
    model.set_rest_normals(vertex_normals(model.template[None], faces)[0])
    with torch.no_grad():
        for p in (model.latent_head, model.camera_head):
            p.weight.zero_(), p.bias.zero_()
        out = model.eval()(torch.zeros(1, model.n_vertices, 2), torch.ones(1, model.n_vertices, dtype=torch.bool))
        visible = (out.normals[..., 2] < 0).float()  # what a camera in front sees (back-face culling)
        w = model.segmentation()
        assert facing_loss(out.normals, visible, w).item() == 0.0
        model.camera_head.bias[:3] = torch.tensor([0.0, math.pi, 0.0])  # the camera turns the body around
        turned = model(torch.zeros(1, model.n_vertices, 2), torch.ones(1, model.n_vertices, dtype=torch.bool))
    assert facing_loss(turned.normals, visible, w).item() > 0.5


def test_facing_sees_one_turned_part_and_ignores_silhouette_vertices():
    """Per part: a part whose visible side faces away costs, a few away-facing visible vertices of a part
    that faces the camera (a silhouette) cost nothing."""
    n = torch.tensor([[0.0, 0.0, -1.0]]).repeat(1, 10, 1)  # 10 vertices facing the camera
    n[0, 8:] = torch.tensor([0.6, 0.0, 0.8])  # two silhouette vertices of part 1 facing away a little
    parts = torch.zeros(10, 2)
    parts[:5, 0], parts[5:, 1] = 1.0, 1.0
    evidence = torch.ones(1, 10)
    assert facing_loss(n, evidence, parts).item() == 0.0
    n[0, :5, 2] = 1.0  # part 0 turned around
    assert facing_loss(n, evidence, parts).item() == pytest.approx(0.5, abs=1e-6)


def test_facing_gate_keeps_the_keypoints_the_model_explains_and_drops_a_mirror_patch():
    """loss.facing_gate: a part named only by keypoints the model cannot place (a left/right mirror patch naming
    the far leg's vertices where the near leg is seen) no longer has to face the camera; keypoints the model
    explains keep their full weight."""
    pred = torch.zeros(1, 10, 2)
    xy = pred.clone()
    xy[0, 5:] = torch.tensor([0.8, 0.0])  # part 1's keypoints seen 0.8 away from where the model puts them
    gate = facing_gate(pred, xy, 0.2)
    assert torch.allclose(gate[0, :5], torch.ones(5)) and gate[0, 5:].max().item() < 1e-6
    assert facing_gate(pred, pred + 0.2, 0.2)[0, 0].item() == pytest.approx(math.exp(-2.0))  # r² = 2 g²
    n = torch.tensor([[0.0, 0.0, -1.0]]).repeat(1, 10, 1)
    n[0, 5:, 2] = 1.0  # part 1 turned away: its vertices are hidden, only the mirror patch named them
    parts = torch.zeros(10, 2)
    parts[:5, 0], parts[5:, 1] = 1.0, 1.0
    evidence = torch.ones(1, 10)
    assert facing_loss(n, evidence, parts).item() == pytest.approx(0.5, abs=1e-6)  # ungated: the far leg must turn
    assert facing_loss(n, evidence * gate, parts).item() == pytest.approx(0.0, abs=1e-5)


def _small_model_and_keypoints(template, model_type: str = "dp3d"):
    """A small seeded model of ``template`` and two instances of random keypoints, 70 % visible."""
    eb = eigenbasis(template.vertices.astype(np.float64), template.faces, 16)
    torch.manual_seed(0)
    model = build_model(ModelParams(type=model_type, hidden=32, bottleneck=16, blocks=1, parts=4, lbo_basis=16),
                        template.vertices, template.up, template.forward, unit_rms(eb.evecs))
    xy = 0.5 * torch.randn(2, model.n_vertices, 2)
    return model, xy, torch.rand(2, model.n_vertices) > 0.3


def test_the_objective_gates_the_facing_evidence_only_when_asked(template):
    """loss.facing_gate 0 (the default) leaves the facing term as it was; > 0 changes it."""
    model, xy, vis = _small_model_and_keypoints(template)

    def facing(**kw):
        cfg = LossParams(canonicalisation=0.0, arap=0.0, entropy=0.0, facing=1.0, **kw)
        return TrainingObjective(model, cfg, None, template.faces)(xy, vis)[1]["facing"]

    plain, gated = facing(), facing(facing_gate=0.05)
    assert facing(facing_gate=0.0).item() == plain.item() and gated.item() != plain.item()


def test_self_visibility_flags_the_vertices_a_prediction_turns_away():
    """loss.self_visibility: a vertex whose mesh normal faces the camera (z <= 0, z away from it) keeps its keypoint;
    the same triangle turned around (a hidden far side) drops it."""
    tri = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    faces = torch.tensor([[0, 2, 1]])  # normal (0, 0, -1): towards the camera
    assert self_visibility(tri[None], faces).tolist() == [[1.0, 1.0, 1.0]]
    assert self_visibility(tri[None], faces.flip(1)).tolist() == [[0.0, 0.0, 0.0]]
    tilted = tri.clone()
    tilted[1, 2] = 2.0  # turned away less (normal z = 1 / √5 = 0.45): kept at z_max 0.5, dropped at 0.3
    flipped = faces.flip(1)
    assert self_visibility(tilted[None], flipped, 0.5).tolist() == [[1.0, 1.0, 1.0]]
    assert self_visibility(tilted[None], flipped, 0.3).tolist() == [[0.0, 0.0, 0.0]]


def test_the_objective_drops_turned_away_keypoints_only_when_asked_and_after_its_start(template):
    """loss.self_visibility 0 (the default) leaves the loss as it was; > 0 changes the re-projection and facing
    terms, and only once training has passed its share of the steps."""
    model, xy, vis = _small_model_and_keypoints(template)

    def terms(progress=1.0, **kw):
        cfg = LossParams(canonicalisation=0.0, arap=0.0, entropy=0.0, facing=1.0, **kw)
        objective = TrainingObjective(model, cfg, None, template.faces)
        objective.progress = progress
        return objective(xy, vis)[1]

    plain, gated, early = terms(), terms(self_visibility=0.5), terms(0.4, self_visibility=0.5)
    for name in ("reprojection", "facing"):
        assert gated[name].item() != plain[name].item() and early[name].item() == plain[name].item()
    with pytest.raises(InputError, match="self_visibility"):
        TrainingObjective(model, LossParams(arap=0.0, facing=0.0, self_visibility=0.5), None, None)
    baseline = _small_model_and_keypoints(template, "no_parts")[0]
    cfg = LossParams(canonicalisation=0.0, arap=0.0, self_visibility=0.5)  # dp3d only, as the facing term
    assert TrainingObjective(baseline, cfg, None, template.faces).faces is None


def test_mesh_normals_reward_depth_stretch_posed_normals_do_not(template):
    """Why the facing term uses rotated rest normals: mesh normals of a depth-stretched shape turn to the
    image plane, so their hinge falls by stretching; a reflection (winding reversed) even keeps n_z."""
    canon, _ = canonical_template(template.vertices, template.up, template.forward)
    x = torch.as_tensor(canon)[None]
    faces = torch.as_tensor(template.faces, dtype=torch.long)
    rot = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.6, 0.0]))
    x = x @ rot.T  # a three-quarter view: some visible normals point slightly away
    def hinge(shape):  # the per-vertex hinge on mesh normals, the rejected form
        return torch.relu(vertex_normals(shape, faces)[..., 2]).mean().item()

    plain = hinge(x)
    assert hinge(x * torch.tensor([1.0, 1.0, 3.0])) < 0.8 * plain
    assert hinge(x * torch.tensor([1.0, 1.0, -1.0])) == pytest.approx(plain, abs=1e-6)


def test_oracle_loss_ignores_depth_offset():
    torch.manual_seed(0)
    y = torch.randn(2, 30, 3)
    assert oracle_loss(y + torch.tensor([0.0, 0.0, 5.0]), y, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    assert oracle_loss(y * torch.tensor([1.0, 1.0, -1.0]), y, 0.01).item() > 0.1


def test_canonicalisation_samples_several_rotations(template):
    eb = eigenbasis(template.vertices.astype(np.float64), template.faces, 16)
    torch.manual_seed(0)
    model = build_model(ModelParams(hidden=32, bottleneck=16, blocks=1, parts=4, lbo_basis=16),
                        template.vertices, template.up, template.forward, unit_rms(eb.evecs))
    psi = make_psi(model).eval()
    shape = model.template.expand(3, -1, -1)
    rot = roma.random_rotmat(12)
    four = canonicalisation_loss(model, psi, shape, 0.01, rotations=rot, samples=4)
    each = [canonicalisation_loss(model, psi, shape, 0.01, rotations=rot[3 * i:3 * i + 3]) for i in range(4)]
    assert four.item() == pytest.approx(float(torch.stack(each).mean()), rel=1e-5)


def test_canonicalisation_falls_as_psi_trains(template):
    eb = eigenbasis(template.vertices.astype(np.float64), template.faces, 16)
    torch.manual_seed(0)
    model = build_model(ModelParams(hidden=64, bottleneck=32, blocks=1, parts=4, lbo_basis=16),
                        template.vertices, template.up, template.forward, unit_rms(eb.evecs))
    psi = make_psi(model)
    opt = torch.optim.Adam(psi.parameters(), lr=3e-3)
    shape = model.template.expand(16, -1, -1)  # a canonical shape, seen under random rotations
    losses = []
    for _ in range(80):
        loss = canonicalisation_loss(model, psi, shape, eps=LossParams().huber_eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


# --- robust re-projection (issue 26): heavier tails, annealing, mirror-aware ---------------------------------

@pytest.mark.parametrize("kind", ROBUST_NORMS)
def test_each_robust_norm_is_zero_at_the_truth_and_alike_near_it(kind):
    r = torch.tensor([0.0, 1e-4], dtype=torch.float64, requires_grad=True)
    rho = robust_norm(r**2, 0.1, kind)
    assert rho[0].item() == 0.0 and rho[1].item() == pytest.approx(0.5 * 1e-8 / 0.1, rel=1e-3)  # r²/2c
    (g,) = torch.autograd.grad(rho.sum(), r)
    assert g[0] == 0.0


def test_a_gross_outlier_pulls_less_the_heavier_the_tail():
    """The pull (dρ/dr) of a keypoint 10 units off (a left/right swap across the body): constant for the
    pseudo-Huber, ~c/r for Cauchy, ~c³/r³ for Geman–McClure, whose cost is bounded by c/2."""
    c = 0.1
    pull = {}
    for kind in ROBUST_NORMS:
        r = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
        rho = robust_norm(r**2, c, kind)
        pull[kind] = torch.autograd.grad(rho, r)[0].item()
        if kind == "geman_mcclure":
            assert rho.item() < c / 2 and robust_norm(torch.tensor(1e12), c, kind).item() == pytest.approx(c / 2)
    assert pull["pseudo_huber"] == pytest.approx(1.0, rel=1e-3)
    assert pull["cauchy"] == pytest.approx(c / 10.0, rel=1e-3)
    assert pull["geman_mcclure"] == pytest.approx(c**3 / 10.0**3, rel=1e-2)
    with pytest.raises(InputError, match="loss.robust = 'l1'"):
        robust_norm(torch.tensor(1.0), c, "l1")


def test_the_scale_anneals_from_wide_to_narrow():
    assert annealed_scale(0.0, 0.01, 1.0, 0.5) == pytest.approx(1.0)
    assert annealed_scale(0.25, 0.01, 1.0, 0.5) == pytest.approx(0.1)  # geometric: halfway in log
    assert annealed_scale(0.5, 0.01, 1.0, 0.5) == annealed_scale(0.9, 0.01, 1.0, 0.5) == 0.01
    assert annealed_scale(0.0, 0.01) == 0.01  # no start: no annealing


def test_the_mirror_map_pairs_left_and_right(template):
    m = mirror_map(template.vertices)
    assert (m[m] == np.arange(len(m))).mean() > 0.99  # an involution on the symmetric template
    x = template.vertices[:, 0]
    left = x < x.mean() - 0.05
    assert (x[m[left]] > x.mean()).all()  # a vertex well left of the midline mirrors to the right


def test_the_limbs_mirror_map_keeps_torso_and_head(template):
    """loss.mirror_parts: limbs: torso and head vertices are their own mirror (a body mirrored whole, which faces
    the other way, then costs its torso's residual); limb vertices still swap left for right."""
    limbs = limb_vertices(template.vertex_part)
    assert limbs.any() and not limbs.all()
    full, kept = mirror_map(template.vertices), mirror_map(template.vertices, ~limbs)
    np.testing.assert_array_equal(kept[~limbs], np.flatnonzero(~limbs))
    assert limbs[kept[limbs & (kept != np.arange(len(kept)))]].all()  # a limb never maps onto the torso or head
    moved = limbs & ~(~limbs)[full]  # limb vertices whose mirror is a limb vertex keep it
    np.testing.assert_array_equal(kept[moved], full[moved])
    assert moved.mean() > 0.5 * limbs.mean()
    # a whole body mirrored: with all vertices free it costs nothing, with limbs only its torso and head cost
    pred = torch.as_tensor(template.vertices[None, :, :2], dtype=torch.float64)
    xy = pred[:, full]  # every keypoint named by its mirror: the body seen mirrored
    vis = torch.ones(1, len(full), dtype=torch.bool)
    free = reprojection_loss(pred, xy, vis, 0.01, mirror=torch.as_tensor(full))
    anchored = reprojection_loss(pred, xy, vis, 0.01, mirror=torch.as_tensor(kept))
    assert free.item() < 1e-3 < anchored.item()


def test_mirror_aware_residual_is_the_plain_one_unless_the_mirror_explains_better():
    """Vertex 0 and its mirror 1: a keypoint at vertex 0's projection costs what it costs plainly (the mirror is
    far); a keypoint at vertex 1's (a left/right swap) costs ~0 instead of the full residual."""
    pred = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.5, 0.5]]], dtype=torch.float64)
    mirror = torch.tensor([1, 0, 2])
    vis = torch.ones(1, 3, dtype=torch.bool)
    eps = 0.01
    for xy0 in ([0.0, 0.0], [0.02, 0.01]):  # at or near its own vertex
        xy = pred.clone()
        xy[0, 0] = torch.tensor(xy0)
        plain = reprojection_loss(pred, xy, vis, eps, norm="geman_mcclure")
        assert reprojection_loss(pred, xy, vis, eps, norm="geman_mcclure", mirror=mirror).item() == \
            pytest.approx(plain.item(), abs=1e-12)
    swapped = pred.clone()
    swapped[0, 0] = pred[0, 1]
    assert reprojection_loss(pred, swapped, vis, eps, mirror=mirror).item() < 1e-12
    assert reprojection_loss(pred, swapped, vis, eps).item() == pytest.approx(eps * (math.sqrt(1 + 1 / eps**2) - 1) / 3)
    assert smooth_min(torch.tensor(0.3), torch.tensor(0.3), 0.01).item() == pytest.approx(0.3)


def test_the_objective_anneals_and_mirrors_when_asked(template):
    eb = eigenbasis(template.vertices.astype(np.float64), template.faces, 16)
    model = build_model(ModelParams(hidden=32, bottleneck=16, blocks=1, parts=4, lbo_basis=16),
                        template.vertices, template.up, template.forward, unit_rms(eb.evecs))
    cfg = LossParams(canonicalisation=0.0, arap=0.0, entropy=0.0, facing=0.0, robust="cauchy", robust_scale=0.1,
                     robust_scale_start=1.0, robust_anneal=0.5, mirror=True)
    objective = TrainingObjective(model, cfg, None, template.faces)
    objective.progress = 0.0
    assert objective.reprojection_scale() == pytest.approx(1.0)
    objective.progress = 0.75
    assert objective.reprojection_scale() == pytest.approx(0.1)
    assert objective.mirror is not None and len(objective.mirror) == len(template.vertices)
    xy, vis = torch.randn(2, len(template.vertices), 2), torch.ones(2, len(template.vertices), dtype=torch.bool)
    loss, terms = objective(xy, vis)
    assert torch.isfinite(loss) and "reprojection" in terms
    limbs = dataclasses.replace(cfg, mirror_parts="limbs")
    with pytest.raises(InputError, match="vertex parts"):
        TrainingObjective(model, limbs, None, template.faces)
    anchored = TrainingObjective(model, limbs, None, template.faces, template.vertex_part)
    assert (anchored.mirror.numpy()[~limb_vertices(template.vertex_part)] ==
            np.flatnonzero(~limb_vertices(template.vertex_part))).all()
