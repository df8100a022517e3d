"""Stage ``network`` (pipeline/network/train.py) on a tiny images store (stage ``images``: tests/images/): a training
run that writes its checkpoint, curves and DensePose's measures, and a resumed run equal to an uninterrupted one."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tree_bytes
from pipeline.core.config import load_params_dict
from pipeline.core.errors import InputError
from pipeline.core.io import partial_path
from pipeline.images.write import write_images_store
from pipeline.network import dataset
from pipeline.network.checkpoint import load_network, read_network
from pipeline.network.train import fit_network

ROOT = Path(__file__).resolve().parents[2]
TINY = {"network": {"train_bodies": 3, "test_bodies": 1, "views": 2, "crop": 32, "width": 4, "steps": 6,
                    "batch_size": 4, "checkpoint_every": 2, "log_every": 2},
        "common": {"device": "cpu"}}


def _params(**network):
    return load_params_dict({**TINY, "network": {**TINY["network"], **network}})


@pytest.fixture(scope="module")
def images(template, tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "images.zarr"
    summary = write_images_store(_params(), template, path)
    assert summary.instances == 8 and summary.train == 6 and summary.test == 2
    return path


def test_a_run_writes_its_checkpoint_curves_and_measures(images, template, tmp_path):
    out, live, report = tmp_path / "network.pt", tmp_path / "live", tmp_path / "correspondence.json"
    stamp = tmp_path / "sources" / "network.txt"
    result = fit_network(_params(), images, template_path(template, tmp_path), out, live, report, stamp)
    assert result.step == 6 and out.is_file() and not partial_path(out).exists()
    # what dvc.yaml's densepose stage depends on for densepose.source network: the checkpoint's bytes
    sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    assert json.loads(stamp.read_text()) == {"checkpoint": str(out), "sha256": sha256}
    net, info = load_network(out, template.hash)
    assert net.width == 4 and info["input_size"] == 32 and info["step"] == 6 and info["optimizer"] is not None
    measures = json.loads(report.read_text())
    assert measures["instances"] == 2 and measures["kappa_m"] == 0.255
    for who in ("network", "corruption"):
        assert set(measures[who]) >= {"part_accuracy", "uv_error", "gps", "gps_ap", "gps_ap50", "gps_ap75"}
    assert measures["corruption"]["gps"] > 0.5  # the corruption model is mild
    steps = [int(line.split()[0]) for line in (live / "plots/metrics/train/loss.tsv").read_text().split("\n")[1:]
             if line]
    assert steps == [2, 4, 6] and json.loads((live / "metrics.json").read_text())["step"] == 6


def template_path(template, tmp_path):
    path = tmp_path / "template.npz"
    if not path.exists():
        template.save(path)
    return path


def _dies_at(step, monkeypatch):
    """Makes training stop dead when it reaches ``step`` (as a SIGKILL would: no clean-up runs)."""
    real = dataset.CropBatches.batch

    def batch(self, at):
        if at == step:
            raise KeyboardInterrupt
        return real(self, at)

    monkeypatch.setattr(dataset.CropBatches, "batch", batch)
    return real


def test_a_resumed_run_equals_an_uninterrupted_one(images, template, tmp_path, monkeypatch):
    tpl = template_path(template, tmp_path)
    fit_network(_params(log_every=1), images, tpl, tmp_path / "whole.pt", tmp_path / "whole_live")
    out, live = tmp_path / "network.pt", tmp_path / "live"
    real = _dies_at(5, monkeypatch)  # the curves hold step 5, the checkpoint step 4
    with pytest.raises(KeyboardInterrupt):
        fit_network(_params(log_every=1), images, tpl, out, live)
    assert read_network(partial_path(out))["step"] == 4 and not out.exists()
    monkeypatch.setattr(dataset.CropBatches, "batch", real)
    fit_network(_params(resume=True, log_every=1), images, tpl, out, live)
    a, b = read_network(tmp_path / "whole.pt")["model"], read_network(out)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    curves, again = tree_bytes(tmp_path / "whole_live"), tree_bytes(live)
    assert curves.keys() == again.keys() and "plots/metrics/train/loss.tsv" in curves
    for name in curves:  # row by row: no step logged twice
        assert again[name].decode().splitlines() == curves[name].decode().splitlines(), name
    with pytest.raises(InputError, match="network.width"):
        fit_network(_params(resume=True, width=8), images, tpl, out)
    with pytest.raises(InputError, match="past network.steps"):
        fit_network(_params(resume=True, steps=3), images, tpl, out)


def _stage(images, tpl, ws, **network):
    """Runs the network stage's script in ``ws`` (models/network.pt, metrics/network, ...)."""
    import yaml

    from pipeline.core.config import as_dict
    from stages.network import main

    (ws / "params.yaml").write_text(yaml.safe_dump(as_dict(_params(**network))))
    main(["--params", str(ws / "params.yaml"), "--images", str(images), "--template", str(tpl),
          "--out", str(ws / "models/network.pt"), "--live", str(ws / "metrics/network"),
          "--report", str(ws / "metrics/correspondence.json"), "--stamp", str(ws / "sources/network.txt")])


def test_a_failed_or_killed_run_keeps_the_finished_network_until_a_new_one_is(images, template, tmp_path,
                                                                              monkeypatch):
    from pipeline.core.io import StageOutputs
    from pipeline.network import train as network_train

    tpl, model = template_path(template, tmp_path), tmp_path / "models/network.pt"
    _stage(images, tpl, tmp_path)
    before = model.read_bytes()
    real = _dies_at(3, monkeypatch)
    with pytest.raises(KeyboardInterrupt):  # failed: the stage's clean-up runs
        _stage(images, tpl, tmp_path, seed=1)
    assert model.read_bytes() == before
    monkeypatch.setattr(StageOutputs, "abort", lambda self: None)  # killed: no clean-up runs
    with pytest.raises(KeyboardInterrupt):
        _stage(images, tpl, tmp_path, seed=1)
    assert model.read_bytes() == before and partial_path(model).is_file()
    monkeypatch.undo()

    seen, save = [], network_train.save_network

    def checking_save(*args, **kwargs):
        seen.append(model.read_bytes() == before)
        save(*args, **kwargs)

    monkeypatch.setattr(network_train, "save_network", checking_save)
    _stage(images, tpl, tmp_path, seed=1)  # afresh (network.resume: false): the old network stays until this is done
    assert len(seen) >= 3 and all(seen) and model.read_bytes() != before
    assert read_network(model)["params"]["network"]["seed"] == 1
    assert sorted(p.name for p in model.parent.iterdir()) == ["network.pt"]


@pytest.mark.slow
def test_two_torchrun_processes_train_one_network(images, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--nproc_per_node=2", "--standalone", str(ROOT / "tests" / "ddp_network_worker.py"),
           str(images), str(tmp_path)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    differ = [k for k in r0["model"] if not torch.allclose(r0["model"][k].float(), r1["model"][k].float(), atol=1e-6)]
    assert not differ, differ  # gradients all-reduced, BatchNorm statistics averaged at the end
    assert r0["losses"] == r1["losses"] and len(r0["losses"]) == 2  # the loss averaged over the processes
