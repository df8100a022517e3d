import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tree_bytes
from keypoint_fixture import make_keypoints
from pipeline.core.config import TrainParams, as_dict, load_params_dict
from pipeline.core.errors import UserError
from pipeline.core.io import StageOutputs
from pipeline.geometry.lbo import eigenbasis, save_basis
from pipeline.keypoints.store import instances_fingerprint, open_keypoints
from pipeline.template.file import load_template
from pipeline.train import loop
from pipeline.train.checkpoint import load_checkpoint, reconstruct
from pipeline.train.loop import TrainingDiverged, build_objective, lr_at, make_optimizer, normalised_truth, train
from pipeline.train.model import normalise


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {"hidden": 64, "bottleneck": 32, "blocks": 1, "lbo_basis": 16, "parts": 5}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs(template, tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    template.save(d / "template.npz")
    eb = eigenbasis(template.vertices.astype(np.float64), template.faces, 16)
    save_basis(d / "lbo.npz", eb, template.hash)
    make_keypoints(d / "kp.zarr", template, n=48, seed=0, chunk=8)
    return d


def _params(model=None, train_=None, loss=None):
    return load_params_dict({"common": {"device": "cpu"}, "model": {**TINY, **(model or {})}, "loss": loss or {},
                             "train": {"batch_size": 12, "epochs": 2, "log_every": 1, **(train_ or {})}})


def _run(inputs, out, params, live=None):
    return train(params, inputs / "kp.zarr", inputs / "template.npz", inputs / "lbo.npz", out, live)


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_lr_schedule():
    cfg = TrainParams(lr=0.003, lr_decay_at=0.8, lr_decay=0.1)
    assert lr_at(0, 100, cfg) == 1.0 and lr_at(79, 100, cfg) == 1.0
    assert lr_at(80, 100, cfg) == pytest.approx(0.1)


@pytest.mark.parametrize("kind", ["dp3d", "c3dpo", "no_parts"])
def test_optimizer_groups_never_decay_the_template_side(inputs, kind):
    p = _params(model={"type": kind, "blendshapes": 2 if kind == "dp3d" else 0},
                train_={"optimizer": "adamw", "weight_decay": 0.01, "part_lr": 0.02})
    tmpl = load_template(inputs / "template.npz")
    objective, _ = build_objective(p, tmpl.vertices, tmpl.faces, tmpl.up, tmpl.forward,
                                   np.load(inputs / "lbo.npz")["evecs"])
    opt = make_optimizer(objective, p.train)
    assert isinstance(opt, torch.optim.AdamW)
    name_of = {id(v): k for k, v in objective.named_parameters()}
    groups = {g["name"]: {name_of[id(q)] for q in g["params"]} for g in opt.param_groups}
    decayed = groups["decay"]
    template_side = {"dp3d": {"model.logits", "model.rest", "model.blend"}, "c3dpo": {"model.mean_shape",
                     "model.shape_basis"}, "no_parts": {"model.shape_basis"}}[kind]
    assert not decayed & template_side
    params = dict(objective.named_parameters())
    assert decayed and all(n.endswith("weight") and params[n].ndim == 2 for n in decayed)  # Linear weights only
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups}["decay"] == 0.01
    for g in opt.param_groups:
        if g["name"] != "decay":
            assert g["weight_decay"] == 0.0
    if kind == "dp3d":
        assert groups["parts"] == {"model.logits", "model.rest"}
        assert {g["name"]: g["lr"] for g in opt.param_groups}["parts"] == 0.02
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(objective.parameters()))


def test_oracle_refused_without_ground_truth(inputs, tmp_path):
    """The 3D diagnostic needs synthetic truth: a store without gt/ is refused with the fix."""
    dst = tmp_path / "nogt.zarr"
    shutil.copytree(inputs / "kp.zarr", dst)
    shutil.rmtree(dst / "gt")
    p = _params(loss={"oracle_3d": 1.0}, train_={"epochs": 1})
    with pytest.raises(ValueError, match="oracle_3d"):
        train(p, dst, inputs / "template.npz", inputs / "lbo.npz", tmp_path / "m.pt")


def test_oracle_and_augmentation_train_on_ground_truth(inputs, tmp_path):
    """With synthetic truth the 3D loss is computed (and logged) and training runs, rotated or not."""
    p = _params(loss={"oracle_3d": 1.0}, train_={"inplane_augment": True, "epochs": 2})
    res = _run(inputs, tmp_path / "m.pt", p)
    assert res.metrics["oracle_3d"] > 0 and 0 < res.metrics["share_oracle_3d"] < 1


def test_confidence_weighs_the_reprojection_only_when_asked(inputs, tmp_path):
    """loss.confidence on a store whose confidences are all 1 trains to the weights of loss.confidence off (the
    default); on the fixture's varied confidences (0.2..1) it trains otherwise."""
    import shutil

    import zarr

    ones = shutil.copytree(inputs / "kp.zarr", tmp_path / "ones.zarr")
    root = zarr.open_group(str(ones), mode="a")
    root["confidence"][:] = root["visible"][:].astype(np.float16)
    off = _run(inputs, tmp_path / "off.pt", _params())
    same = train(_params(loss={"confidence": True}), ones, inputs / "template.npz", inputs / "lbo.npz",
                 tmp_path / "ones.pt")
    w_off, w_same = _weights(off.objective), _weights(same.objective)
    assert all(torch.equal(w_off[k], w_same[k]) for k in w_off)
    weighted = _run(inputs, tmp_path / "on.pt", _params(loss={"confidence": True}))
    assert weighted.metrics["reprojection"] != off.metrics["reprojection"]


def test_normalised_truth_matches_the_keypoints(inputs):
    """The true vertices, put in the normalised frame, project onto the normalised keypoints."""
    import zarr

    root = zarr.open_group(inputs / "kp.zarr", mode="r")
    xy, vis = torch.as_tensor(root["xy"][:8]), torch.as_tensor(root["visible"][:8])
    px = torch.as_tensor(root["gt/pixels"][:8])
    norm = normalise(xy, vis)
    truth = normalised_truth(torch.as_tensor(root["gt/vertices"][:8]), torch.as_tensor(root["gt/camera"][:8]),
                             norm.centre, norm.scale)
    want = (px - norm.centre[:, None]) / norm.scale[:, None, None]
    torch.testing.assert_close(truth[..., :2], want, atol=1e-4, rtol=0)


def test_deterministic_checkpoint_and_prediction_api(inputs, tmp_path):
    a = _run(inputs, tmp_path / "a.pt", _params(), tmp_path / "live")
    b = _run(inputs, tmp_path / "b.pt", _params())
    wa, wb = _weights(a.objective), _weights(b.objective)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "live" / "metrics.json").is_file()
    assert any((tmp_path / "live" / "plots" / "metrics").rglob("reprojection.tsv"))
    model, info = load_checkpoint(tmp_path / "a.pt", "cpu")
    assert info["step"] == a.step > 0 and info["template_hash"] and info["params"]["model"]["hidden"] == 64
    store = inputs / "kp.zarr"  # the store it was trained on (what the evaluation compares with its own)
    assert info["data"] == {"keypoints": str(store), "instances": instances_fingerprint(open_keypoints(store))}
    xy = np.random.default_rng(0).uniform(100, 300, (2, model.n_vertices, 2)).astype(np.float32)
    vis = np.ones((2, model.n_vertices), bool)
    out = reconstruct(model, xy, vis)
    torch.testing.assert_close(out, reconstruct(a.objective.model, xy, vis))
    assert model.segmentation().shape == (model.n_vertices, 5)


def test_resume_continues_to_the_same_weights(inputs, tmp_path):
    straight = _run(inputs, tmp_path / "s.pt", _params(train_={"epochs": 4}), tmp_path / "s_live")
    _run(inputs, tmp_path / "r.pt", _params(train_={"epochs": 2}), tmp_path / "r_live")
    resumed = _run(inputs, tmp_path / "r.pt", _params(train_={"epochs": 4, "resume": True}), tmp_path / "r_live")
    assert resumed.step == straight.step > 0
    ws, wr = _weights(straight.objective), _weights(resumed.objective)
    assert all(torch.allclose(ws[k].float(), wr[k].float(), atol=1e-6) for k in ws)
    # a finished model trained further: its curves go on from the finished ones
    assert tree_bytes(tmp_path / "r_live") == tree_bytes(tmp_path / "s_live")
    with pytest.raises(ValueError, match="model.parts"):
        _run(inputs, tmp_path / "r.pt", _params(model={"parts": 3}, train_={"epochs": 5, "resume": True}))


def _killed_after(step, monkeypatch):
    """Makes training stop dead once it has logged ``step`` (as a SIGKILL would: no clean-up runs)."""
    real = loop._log_losses

    def log_then_die(state, live, bar):
        real(state, live, bar)
        if state.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_log_losses", log_then_die)
    return real


def test_a_killed_run_resumes_to_the_weights_and_curves_of_an_uninterrupted_one(inputs, tmp_path, monkeypatch):
    p = {"epochs": 3, "checkpoint_every": 2}
    straight = _run(inputs, tmp_path / "s.pt", _params(train_=p), tmp_path / "s_live")
    assert straight.step == 6
    real = _killed_after(5, monkeypatch)  # the curves hold step 5, the checkpoint step 4
    with pytest.raises(KeyboardInterrupt):
        _run(inputs, tmp_path / "r.pt", _params(train_=p), tmp_path / "r_live")
    assert torch.load(tmp_path / ".r.pt.partial", weights_only=True)["step"] == 4
    assert (tmp_path / ".r_live.partial" / "plots/metrics/train/loss.tsv").read_text().splitlines()[-1][:2] == "5\t"
    monkeypatch.setattr(loop, "_log_losses", real)
    resumed = _run(inputs, tmp_path / "r.pt", _params(train_={**p, "resume": True}), tmp_path / "r_live")
    ws, wr = _weights(straight.objective), _weights(resumed.objective)
    assert all(torch.equal(ws[k], wr[k]) for k in ws)
    a, b = tree_bytes(tmp_path / "s_live"), tree_bytes(tmp_path / "r_live")
    assert a.keys() == b.keys() and any(k.endswith("loss.tsv") for k in a)
    for name in a:  # row by row: no step logged twice
        assert b[name].decode().splitlines() == a[name].decode().splitlines(), name


def _stage(inputs, ws, params, keypoints=None):
    """Runs the train stage's script in ``ws`` (models/model.pt, metrics/train)."""
    from stages.train import main

    (ws / "params.yaml").write_text(yaml.safe_dump(as_dict(params)))
    main(["--params", str(ws / "params.yaml"), "--keypoints", str(keypoints or inputs / "kp.zarr"),
          "--template", str(inputs / "template.npz"), "--lbo", str(inputs / "lbo.npz"),
          "--out", str(ws / "models" / "model.pt"), "--live", str(ws / "metrics" / "train")])


def test_a_failed_or_killed_run_keeps_the_finished_model_until_a_new_one_is(inputs, tmp_path, monkeypatch):
    model, curves = tmp_path / "models" / "model.pt", tmp_path / "metrics" / "train"
    _stage(inputs, tmp_path, _params(train_={"epochs": 1}))
    before, before_curves = model.read_bytes(), tree_bytes(curves)
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(inputs / "kp.zarr", damaged)
    (damaged / "zarr.json").write_text("{")
    with pytest.raises(UserError, match="zarr.json"):
        _stage(inputs, tmp_path, _params(train_={"epochs": 1}), damaged)
    assert model.read_bytes() == before and tree_bytes(curves) == before_curves

    other = _params(train_={"epochs": 2, "seed": 1, "checkpoint_every": 2})
    real = _killed_after(3, monkeypatch)
    abort = StageOutputs.abort
    monkeypatch.setattr(StageOutputs, "abort", lambda self: None)  # a SIGKILL runs no clean-up
    with pytest.raises(KeyboardInterrupt):
        _stage(inputs, tmp_path, other)
    assert model.read_bytes() == before and (tmp_path / "models" / ".model.pt.partial").is_file()
    monkeypatch.setattr(loop, "_log_losses", real)
    monkeypatch.setattr(StageOutputs, "abort", abort)

    seen, save = [], loop.save_checkpoint

    def checking_save(*args, **kwargs):
        seen.append(model.read_bytes() == before and tree_bytes(curves) == before_curves)
        save(*args, **kwargs)

    monkeypatch.setattr(loop, "save_checkpoint", checking_save)
    _stage(inputs, tmp_path, other)  # afresh (train.resume: false): the old model stays until this one is done
    assert len(seen) >= 2 and all(seen)
    assert model.read_bytes() != before and torch.load(model, weights_only=True)["params"]["train"]["seed"] == 1
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.pt"]
    assert sorted(p.name for p in curves.parent.iterdir()) == ["train"]


def test_exploding_loss_stops_and_keeps_last_good_checkpoint(inputs, tmp_path):
    p = _params(train_={"optimizer": "sgd", "lr": 10.0, "momentum": 0.9, "epochs": 20, "checkpoint_every": 1,
                        "explode_factor": 5.0})
    with pytest.raises(TrainingDiverged, match="last good checkpoint") as e:
        _run(inputs, tmp_path / "m.pt", p)
    assert not (tmp_path / "m.pt").exists()  # the output's name only holds a finished model
    ck = torch.load(tmp_path / ".m.pt.partial", weights_only=True)
    assert 0 < ck["step"] < 40 and f"step {ck['step']}) is kept at {tmp_path / '.m.pt.partial'}" in str(e.value)
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dp3d", "no_parts", "c3dpo"])
def test_reprojection_error_halves(inputs, tmp_path, kind):
    p = _params(model={"type": kind, "hidden": 128, "bottleneck": 64}, train_={"epochs": 70, "lr": 3e-3})
    _run(inputs, tmp_path / "m.pt", p, tmp_path / "live")
    import csv

    rows = list(csv.DictReader(open(next((tmp_path / "live").rglob("reprojection.tsv"))), delimiter="\t"))
    curve = [float(row["reprojection"]) for row in rows]
    assert np.mean(curve[-10:]) < 0.5 * np.mean(curve[:5]), curve[::20]


@pytest.mark.slow
def test_ddp_two_processes_stay_in_sync(inputs, tmp_path):
    params = as_dict(_params(train_={"epochs": 2}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--nproc_per_node=2", "--standalone",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "params.yaml"), str(inputs / "kp.zarr"),
           str(inputs / "template.npz"), str(inputs / "lbo.npz"), str(tmp_path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    differ = [k for k in w0 if not torch.allclose(w0[k].float(), w1[k].float(), atol=1e-6)]
    assert not differ, differ
    alone = _run(inputs, tmp_path / "x.pt", _params(train_={"epochs": 2}))
    assert torch.load(tmp_path / "model.pt", weights_only=True)["step"] == alone.step
    start = _weights(_run(inputs, tmp_path / "y.pt", _params(train_={"epochs": 1, "lr": 1e-9})).objective)
    assert any(not torch.allclose(w0[k].float(), start[k].float()) for k in w0)  # it did train


def test_stage_script_writes_checkpoint_and_curves(inputs, tmp_path):
    from stages.train import main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(as_dict(_params(train_={"epochs": 1}))))
    main(["--params", str(tmp_path / "params.yaml"), "--keypoints", str(inputs / "kp.zarr"),
          "--template", str(inputs / "template.npz"), "--lbo", str(inputs / "lbo.npz"),
          "--out", str(tmp_path / "models" / "model.pt"), "--live", str(tmp_path / "metrics" / "train")])
    assert (tmp_path / "models" / "model.pt").is_file()
    assert (tmp_path / "metrics" / "train" / "metrics.json").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here; CI is CPU-only)")
def test_cuda_training_and_cpu_loading(inputs, tmp_path):
    p = load_params_dict({**as_dict(_params(train_={"epochs": 1})), "common": {"device": "cuda"}})
    r = _run(inputs, tmp_path / "m.pt", p)
    assert next(r.objective.parameters()).is_cuda
    model, _ = load_checkpoint(tmp_path / "m.pt", "cpu")
    xy = np.zeros((1, model.n_vertices, 2), np.float32)
    assert torch.isfinite(reconstruct(model, xy, np.ones((1, model.n_vertices), bool))).all()
