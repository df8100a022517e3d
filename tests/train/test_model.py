import numpy as np
import pytest
import roma
import torch

from pipeline.core.config import ModelParams
from pipeline.geometry.lbo import eigenbasis, unit_rms
from pipeline.geometry.mesh import edges
from pipeline.template.file import canonical_template
from pipeline.train.checkpoint import reconstruct
from pipeline.train.model import LiftingModel, XI_DIM
from pipeline.train.part_init import build_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = dict(hidden=32, bottleneck=16, blocks=1)


@pytest.fixture(scope="module")
def basis(template):
    return unit_rms(eigenbasis(template.vertices.astype(np.float64), template.faces, 32).evecs)


def _model(template, basis, **kw):
    torch.manual_seed(0)
    return build_model(ModelParams(**{**SMALL, **kw}), template.vertices, template.up, template.forward, basis)


def test_canonical_template_faces_camera(template):
    canon, scale = canonical_template(template.vertices, template.up, template.forward)
    np.testing.assert_allclose(canon.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.sqrt((canon[:, :2] ** 2).sum(1).mean()), 1.0, rtol=1e-5)
    head = template.vertex_part >= 23
    assert canon[head, 1].mean() < canon[~head, 1].mean()  # head up = image -y
    assert 0.2 < scale < 2.0


@pytest.mark.parametrize("kind", ["dp3d", "no_parts", "c3dpo"])
def test_identity_transforms_reproduce_template(template, basis, kind):
    m = _model(template, basis, type=kind, blendshapes=2 if kind == "dp3d" else 0)
    latent = torch.zeros(2, m.latent_dim)
    if kind == "dp3d":  # G_j = Ḡ_j: posing is the identity whatever the rest transforms
        with torch.no_grad():
            m.rest.copy_(torch.randn_like(m.rest) * 0.3)
        xi = m.rest.detach()[None].repeat(2, 1, 1).flatten(1)
        latent[:, : xi.shape[1]] = xi
    y = m.shape_from_latent(latent).vertices
    torch.testing.assert_close(y, m.template.expand(2, -1, -1), atol=1e-5, rtol=0)


def test_skinning_matches_naive_loop(template, basis):
    m = _model(template, basis, parts=4)
    with torch.no_grad():
        m.rest.copy_(torch.randn_like(m.rest) * 0.2)
    xi = torch.randn(2, 4, XI_DIM) * 0.3
    y = m.shape_from_latent(xi.flatten(1)).vertices
    w, x = m.segmentation().detach(), m.template
    want = torch.zeros_like(y)
    for b in range(2):
        for j in range(4):
            rot, t = roma.rotvec_to_rotmat(xi[b, j, :3]), xi[b, j, 3:]
            rrot, rt = roma.rotvec_to_rotmat(m.rest[j, :3].detach()), m.rest[j, 3:].detach()
            local = (x - rt) @ rrot  # Ḡ⁻¹ X
            want[b] += w[:, j, None] * (local @ rot.T + t)
    torch.testing.assert_close(y.detach(), want, atol=1e-5, rtol=1e-5)


def test_segmentation_sums_to_one_and_is_smooth(template, basis):
    m = _model(template, basis)
    w = m.segmentation().detach().numpy()
    assert w.shape == (template.n_vertices, 10)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)
    e, _ = edges(template.faces)
    neighbour = np.abs(w[e[:, 0]] - w[e[:, 1]]).sum(1).mean()
    shuffled = np.random.default_rng(0).permutation(len(w))
    random_pairs = np.abs(w[e[:, 0]] - w[shuffled[e[:, 1]]]).sum(1).mean()
    assert neighbour < 0.25 * random_pairs
    assert w.max(1).mean() > 0.5  # distinct parts from the start, yet smooth


@pytest.mark.parametrize("kind", ["dp3d", "no_parts", "c3dpo"])
def test_forward_shapes_and_reconstruct_frame(template, basis, kind):
    m = _model(template, basis, type=kind, heteroscedastic=True).eval()
    xy = torch.rand(3, template.n_vertices, 2) * 100 + 50
    vis = torch.rand(3, template.n_vertices) < 0.5
    out = reconstruct(m, xy, vis)
    assert out.shape == (3, template.n_vertices, 3) and out.dtype == torch.float32
    # the model starts near the rest template, so its projection is centred near the keypoints' mean
    centre = (xy * vis[..., None]).sum(1) / vis.sum(1, keepdim=True)
    assert torch.all((out[..., :2].mean(1) - centre).abs() < 20)
    pred = m(torch.zeros(3, template.n_vertices, 2), vis)
    assert pred.uncertainty.shape == (3, template.n_vertices) and torch.all(pred.uncertainty > 0)


def test_unknown_type_is_an_error(template, basis):
    with pytest.raises(ValueError, match="model.type"):
        LiftingModel(ModelParams.__new__(ModelParams), template.vertices, basis) if False else \
            LiftingModel(type("C", (), {**ModelParams().__dict__, "type": "nope"})(), template.vertices, basis)


def _largest_component_share(labels, faces, part):
    """Share of the vertices labelled ``part`` in their largest connected component on the mesh."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    idx = np.flatnonzero(labels == part)
    e = edges(faces)[0]
    keep = np.isin(e, idx).all(1)
    remap = -np.ones(len(labels), np.int64)
    remap[idx] = np.arange(len(idx))
    a = sp.coo_matrix((np.ones(keep.sum()), (remap[e[keep, 0]], remap[e[keep, 1]])), shape=(len(idx),) * 2)
    _, comp = connected_components(a, directed=False)
    return np.bincount(comp).max() / len(idx)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_init_gives_coherent_parts(template, basis, seed):
    """Every one of the 10 parts owns one region of the body from the start, for any seed."""
    from pipeline.geometry.mesh import vertex_areas
    from pipeline.train.part_init import logit_initialiser

    torch.manual_seed(seed)
    m = build_model(ModelParams(**SMALL, parts=10), template.vertices, template.up, template.forward, basis)
    cfg = ModelParams(**SMALL, parts=10)
    m = LiftingModel(cfg, m.template.numpy(), basis,
                     init_logits=logit_initialiser(cfg, vertex_areas(template.vertices, template.faces)))
    labels = m.segmentation().detach().numpy().argmax(1)
    counts = np.bincount(labels, minlength=10)
    assert (counts >= 0.01 * len(labels)).sum() >= 9
    for j in np.flatnonzero(counts):
        assert _largest_component_share(labels, template.faces, j) >= 0.9
    head, hands = template.vertex_part >= 23, np.isin(template.vertex_part, (3, 4))
    assert np.bincount(labels[head]).argmax() not in set(labels[hands])  # head and hands apart


def test_random_init_has_no_part_bias(template, basis):
    torch.manual_seed(0)
    m = _model(template, basis, parts=10, segmentation_init="random")
    assert torch.all(m.logits[0] == 0)  # the constant eigenvector's row: no global head start
    assert m.logits[1:].abs().sum() > 0
