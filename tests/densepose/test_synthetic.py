"""The synthetic source end to end: exact correspondence, splits, determinism, params errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import tree_bytes
import yaml
import zarr

from pipeline.core.config import CorruptionParams, ParamsError, load_params_dict
from pipeline.densepose.store import SPLIT_TEST, SPLIT_TRAIN, open_densepose
from pipeline.render.bodies import body_model, make_bodies, render_bodies
from pipeline.template.file import MISSING_LABEL

OFF = CorruptionParams(**{f.name: 0 if f.type in ("int", int) else 0.0
                          for f in dataclasses.fields(CorruptionParams)})


def _params(corruption=None, **kw):
    p = load_params_dict({"synthetic": {"train_bodies": 2, "test_bodies": 1, "views": 3, "cse": True, **kw}}).synthetic
    return dataclasses.replace(p, corruption=corruption or p.corruption)


@pytest.fixture(scope="module")
def model(template):
    return body_model(template)


@pytest.fixture(scope="module", params=["orthographic", "perspective"])
def exact_rows(template, model, request):
    p = _params(OFF, views=4, projection=request.param)
    bodies = make_bodies(model, np.arange(3), p, seed=0)
    return render_bodies(bodies, template, p, crop=112, seed=0), p


def _vertex_parts(template) -> list[set]:
    parts = [set() for _ in range(template.n_vertices)]
    for f, part in zip(template.faces, template.face_part):
        for v in f:
            parts[v].add(int(part))
    return parts


def test_exact_vertices_land_on_their_own_parts(template, exact_rows):
    rows, p = exact_rows
    s = 112
    cam, verts, vis, box = rows["gt/camera"], rows["gt/vertices"], rows["gt/visible"], rows["box"]
    if p.projection == "perspective":
        verts = verts / verts[..., 2:3]
    xy = verts[..., :2] * cam[:, None, :1] + cam[:, None, 1:]  # gt/camera: f, cx, cy
    col = np.floor((xy[..., 0] - box[:, None, 0]) / (box[:, None, 2] - box[:, None, 0]) * s).astype(int)
    row = np.floor((xy[..., 1] - box[:, None, 1]) / (box[:, None, 3] - box[:, None, 1]) * s).astype(int)
    assert (col >= 0).all() and (col < s).all() and (row >= 0).all() and (row < s).all()  # the box holds the body
    inst = np.broadcast_to(np.arange(len(cam))[:, None], col.shape)
    # the 3 x 3 pixels around each vertex: a vertex on the silhouette may fall just outside it
    pad = np.pad(rows["gt/iuv"][..., 0], ((0, 0), (1, 1), (1, 1)))
    near = np.stack([pad[inst, row + 1 + dr, col + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], -1)
    centre = near[..., 4]
    assert (centre > 0)[vis].mean() > 0.75  # most visible vertices are well inside the silhouette
    # (thin parts such as fingers can slip between the rays of a 112-pixel crop of a whole body)
    assert (near > 0).any(-1)[vis].mean() > 0.98, (near > 0).any(-1)[vis].mean()
    own = _vertex_parts(template)
    on_own = np.array([bool(set(near[i, k].tolist()) & own[k]) for i, k in zip(*np.nonzero(vis))])
    assert on_own.mean() > 0.98, on_own.mean()
    centre_own = np.array([centre[i, k] in own[k] for i, k in zip(*np.nonzero(vis & (centre > 0)))])
    assert centre_own.mean() > 0.95, centre_own.mean()
    assert 0.3 < vis.mean() < 0.8 and not rows["gt/occluded"].any()


def test_exact_data_equals_the_ground_truth(exact_rows):
    rows, _ = exact_rows
    gt = rows["gt/iuv"]
    assert np.array_equal(rows["labels"], gt[..., 0])
    assert np.array_equal(rows["mask"], gt[..., 0] > 0)
    q = np.floor(np.clip(rows["uv"].astype(np.float32) * 255, 0, 255)).astype(np.uint8)
    fg = rows["mask"]
    # the stored U, V are float16: their quantisation agrees with the exact IUV up to one level
    assert (np.abs(q[:, 0][fg].astype(int) - gt[..., 1][fg]) <= 1).all()
    assert (rows["labels"] != MISSING_LABEL).all() and not np.isnan(rows["uv"]).any()
    assert set(np.unique(gt[..., 0])) == set(range(25))  # every part is seen somewhere
    depth = rows["gt/depth"]
    assert (depth[fg] > 2.0).all() and (depth[~fg] == 0).all()
    # joints are the regressor applied to the camera-frame vertices
    assert rows["gt/joints"].shape == (len(gt), 14, 3)


def test_outputs_do_not_depend_on_batching(template, model):
    p = _params(CorruptionParams(occluder_prob=1.0), views=2)
    whole = render_bodies(make_bodies(model, np.arange(3), p, 0), template, p, crop=32, seed=0)
    parts = [render_bodies(make_bodies(model, np.array([b]), p, 0), template, p, crop=32, seed=0,
                           first_instance=2 * b) for b in range(3)]
    for name, value in whole.items():
        joined = np.concatenate([r[name] for r in parts])
        assert np.array_equal(value, joined, equal_nan=True), name


def test_bad_params_are_clear_errors():
    with pytest.raises(ParamsError, match="synthetic.age_min .* > synthetic.age_max"):
        load_params_dict({"synthetic": {"age_min": 0.9, "age_max": 0.1}})
    with pytest.raises(ParamsError, match="synthetic.train_bodies = -3 is out of range"):
        load_params_dict({"synthetic": {"train_bodies": -3}})
    with pytest.raises(ParamsError, match="synthetic.views = 0 is out of range"):
        load_params_dict({"synthetic": {"views": 0}})
    with pytest.raises(ParamsError, match="synthetic.elevation_min"):
        load_params_dict({"synthetic": {"elevation_min": 50.0, "elevation_max": 10.0}})
    with pytest.raises(ParamsError, match="walk \\+ reach \\+ sit \\+ bend"):
        load_params_dict({"synthetic": {"walk": 0.0, "reach": 0.0, "sit": 0.0, "bend": 0.0}})
    with pytest.raises(ParamsError, match="synthetic.corruption.uv_noise"):
        load_params_dict({"synthetic": {"corruption": {"uv_noise": -0.1}}})
    with pytest.raises(ParamsError, match="densepose.source"):
        load_params_dict({"densepose": {"source": "openpose"}})




@pytest.mark.slow
def test_stage_writes_a_byte_identical_store_twice_and_under_torchrun(tmp_path, template):
    """Once alone, once as 2 gloo processes under torchrun (``cluster.processes: 2``; 3 batches of bodies: the
    second round is uneven): the same bytes."""
    from stages.densepose import main

    tpl = tmp_path / "template.npz"
    template.save(tpl)
    outs = []
    for k in range(2):
        params = tmp_path / f"params{k}.yaml"
        params.write_text(yaml.safe_dump({"cluster": {"processes": k + 1}, "densepose": {"crop": 48},
                                          "synthetic": {"train_bodies": 3, "test_bodies": 2, "views": 3, "batch": 2,
                                                        "cse": True}}))
        out, png = tmp_path / f"dp{k}.zarr", tmp_path / f"dp{k}.png"
        args = ["--params", str(params), "--template", str(tpl), "--out", str(out), "--png", str(png),
                "--metrics", str(tmp_path / f"m{k}.json")]
        if k == 0:
            main(args)
        else:  # the stage runs itself under torchrun, then ends its own process with status 0
            with pytest.raises(SystemExit) as done:
                main(args)
            assert done.value.code == 0
        outs.append((out, png))
    a, b = tree_bytes(outs[0][0]), tree_bytes(outs[1][0])
    assert a.keys() == b.keys() and len(a) > 10
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
    assert outs[0][1].read_bytes() == outs[1][1].read_bytes()
    assert (tmp_path / "m0.json").read_bytes() == (tmp_path / "m1.json").read_bytes()
    assert not list(tmp_path.glob(".dp*"))  # no temporary left behind

    root = open_densepose(outs[0][0], template.hash, kind="chart")
    assert "cse" in root.attrs["kinds"] and root.attrs["source"] == "synthetic"
    n = 15
    assert root["labels"].shape == (n, 48, 48) and root["embedding"].shape == (n, 16, 48, 48)
    split, body = root["split"][:], root["gt/body"][:]
    assert (split[:9] == SPLIT_TRAIN).all() and (split[9:] == SPLIT_TEST).all()
    assert not set(body[split == SPLIT_TRAIN]) & set(body[split == SPLIT_TEST])  # splits disjoint by body
    assert np.array_equal(body, np.repeat(np.arange(5), 3))
    assert len(root.attrs["images"]) == n and np.array_equal(root["image"][:], np.arange(n))
    assert (root["score"][:] == 1).all()
    labels = root["labels"][:]
    assert (labels == MISSING_LABEL).any()  # the default corruption is on
    assert isinstance(zarr.open_group(str(outs[0][0]), mode="r")["gt"]["visible"], zarr.Array)


@pytest.mark.slow
def test_stage_other_sources_fail_clearly_and_write_nothing(tmp_path, template):
    from pipeline.densepose.detectron2 import Detectron2MissingError
    from stages.densepose import main

    tpl = tmp_path / "template.npz"
    template.save(tpl)
    out, metrics = tmp_path / "dp.zarr", tmp_path / "densepose.json"
    args = ["--template", str(tpl), "--out", str(out), "--png", str(tmp_path / "x.png"), "--metrics", str(metrics)]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"densepose": {"source": "precomputed"},
                                      "precomputed": {"dump": str(tmp_path / "results.pkl")}}))
    with pytest.raises(FileNotFoundError, match="results.pkl"):
        main(["--params", str(params), *args])
    (tmp_path / "cfg.yaml").write_text("x: 1\n")
    (tmp_path / "model.pkl").write_bytes(b"0")
    params.write_text(yaml.safe_dump({"densepose": {"source": "detectron2"},
                                      "detectron2": {"config": str(tmp_path / "cfg.yaml"),
                                                     "weights": str(tmp_path / "model.pkl"),
                                                     "images": str(tmp_path)}}))
    try:
        import detectron2  # noqa: F401
    except ImportError:
        with pytest.raises(Detectron2MissingError, match="detectron2"):
            main(["--params", str(params), *args])
    assert not out.exists() and not metrics.exists()


def test_cse_output_only_when_asked(template, model):
    p = dataclasses.replace(_params(), cse=False)
    rows = render_bodies(make_bodies(model, np.arange(1), p, 0), template, p, crop=24, seed=0)
    assert "embedding" not in rows and "mask" not in rows and rows["labels"].shape == (3, 24, 24)
