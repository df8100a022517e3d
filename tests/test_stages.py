"""Stage scripts end to end: outputs, bad input, and the DVC pipeline in a copy of the repository."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.config import ParamsError
from pipeline.core.io import load_npz
from stages import lbo as lbo_stage
from stages import template as template_stage

ROOT = Path(__file__).resolve().parents[1]


def run_template(tmp_path, params="params.yaml"):
    out, png = tmp_path / "template.npz", tmp_path / "template_parts.png"
    template_stage.main(["--params", str(params), "--out", str(out), "--png", str(png)])
    return out, png


def test_template_and_lbo_stages_write_their_outputs(tmp_path):
    out, png = run_template(tmp_path, ROOT / "params.yaml")
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    lbo_out = tmp_path / "lbo.npz"
    lbo_stage.main(["--params", str(ROOT / "params.yaml"), "--template", str(out), "--out", str(lbo_out),
                    "--png", str(tmp_path / "lbo.png")])
    z = load_npz(lbo_out, required=("evals", "evecs", "mass", "template_hash"))
    assert z["evecs"].shape == (1229, 64) and np.all(np.diff(z["evals"]) >= -1e-9)
    assert np.sum(np.abs(z["evals"]) < 1e-6 * z["evals"][-1]) == 1
    # a second run gives byte-identical outputs
    out2 = tmp_path / "again"
    out2.mkdir()
    o2, p2 = run_template(out2, ROOT / "params.yaml")
    assert o2.read_bytes() == out.read_bytes() and p2.read_bytes() == png.read_bytes()


def test_bad_params_write_nothing(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("template: {cse_dim: 0}\n")
    with pytest.raises(ParamsError, match="template.cse_dim"):
        run_template(tmp_path, params)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_lbo_k_above_vertex_count_writes_nothing(tmp_path):
    out, _ = run_template(tmp_path, ROOT / "params.yaml")
    params = tmp_path / "p.yaml"
    params.write_text("lbo: {k: 2000}\n")
    with pytest.raises(ValueError, match=r"lbo.k = 2000 must be in \[1, 1228\]"):
        lbo_stage.main(["--params", str(params), "--template", str(out), "--out", str(tmp_path / "lbo.npz"),
                        "--png", str(tmp_path / "lbo.png")])
    assert not (tmp_path / "lbo.npz").exists() and not (tmp_path / "lbo.png").exists()


def test_smpl_source_with_missing_files_names_them(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(f"template: {{source: smpl, smpl_model: {tmp_path / 'SMPL_NEUTRAL.pkl'}}}\n")
    with pytest.raises(FileNotFoundError, match="SMPL_NEUTRAL.pkl"):
        run_template(tmp_path, params)
    assert not (tmp_path / "template.npz").exists()


def _repo_copy(tmp_path: Path) -> Path:
    """A fresh clone of this repository's last commit (no data, no cache, no uncommitted change)."""
    dst = tmp_path / "repo"
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dst)], check=True)
    return dst


def _dvc(repo: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1")
    res = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, f"dvc {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


def _out_hashes(lock: dict, stages=None) -> dict[str, str]:
    """Output path -> md5 of every stage (or of ``stages``) in a dvc.lock."""
    return {o["path"]: o["md5"] for name, stage in lock["stages"].items() if stages is None or name in stages
            for o in stage.get("outs", [])}


def _fresh_clone_repro(tmp_path: Path, *targets: str, stages=None) -> tuple[Path, dict[str, str], dict[str, str]]:
    """`dvc repro [targets]` in a fresh clone: the clone, and the output hashes of ``stages`` (None: all) in the
    committed lock and in the clone's after the run, each stage of which it asserts ran; asserts the clone is clean
    after it."""
    import yaml

    repo = _repo_copy(tmp_path)
    committed = yaml.safe_load(subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True,
                                              text=True, check=True).stdout)
    out = _dvc(repo, "repro", *targets)
    ran = {name for name in committed["stages"] if f"Running stage '{name}'" in out}
    assert ran == set(stages or committed["stages"]), f"dvc repro ran {sorted(ran)}"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True,
                           check=True).stdout
    assert not dirty, f"the clone is not clean after dvc repro:\n{dirty}"
    return repo, _out_hashes(committed, stages), _out_hashes(yaml.safe_load((repo / "dvc.lock").read_text()), stages)


def _assert_same_bytes(committed: dict[str, str], made: dict[str, str]) -> None:
    assert made.keys() == committed.keys()
    differ = {p: (committed[p], made[p]) for p in made if made[p] != committed[p]}
    assert not differ, f"outputs whose bytes differ from the committed dvc.lock: {differ}"


DATA_STAGES = ("template", "lbo", "densepose", "iuv", "keypoints")


@pytest.mark.slow
def test_fresh_clone_reproduces_the_data_stages_of_the_committed_lock(tmp_path):
    """`dvc repro` of the data stages in a fresh clone (no data, no cache) makes every output's bytes exactly those
    recorded in the dvc.lock committed in git (`git show HEAD:dvc.lock`, not the working tree's) and leaves the
    clone clean; train and evaluate then differ from the lock only by their missing outputs: their code, params and
    inputs are the lock's. About 3 minutes alone; the whole lock from scratch (train and evaluate add about 8) is
    `make check-lock`, outside the suite's 15 minutes."""
    import json

    import yaml

    repo, committed, made = _fresh_clone_repro(tmp_path, "keypoints", "lbo", stages=DATA_STAGES)
    _assert_same_bytes(committed, made)
    status = json.loads(_dvc(repo, "status", "--json", "train", "evaluate"))
    assert set(status) == {"train", "evaluate"}, status
    missing = {"deleted", "not in cache"}  # a cache: false output, a cached one
    trained = set(_out_hashes(yaml.safe_load((repo / "dvc.lock").read_text()), {"train"}))
    for stage, changes in status.items():
        outs = [c["changed outs"] for c in changes if "changed outs" in c]
        deps = [c["changed deps"] for c in changes if "changed deps" in c]
        assert outs and all(set(o.values()) <= missing for o in outs) and len(outs) + len(deps) == len(changes) \
            and all(d == {p: "deleted" for p in d} and set(d) <= trained for d in deps), \
            f"{stage} differs from the committed lock by more than its missing outputs: {changes}"

    # a second repro has nothing to do; changing lbo.k reruns lbo only
    assert "Running stage" not in _dvc(repo, "repro", "keypoints", "lbo")
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace("k: 64 ", "k: 32 "))
    out = _dvc(repo, "repro", "lbo")
    assert "Running stage 'lbo'" in out and "Running stage 'template'" not in out
    assert load_npz(repo / "data" / "lbo.npz")["evals"].shape == (32,)


@pytest.mark.lock
def test_fresh_clone_reproduces_every_hash_of_the_committed_lock(tmp_path):
    """`dvc repro` in a fresh clone (no data, no cache) makes every output's bytes exactly those recorded in the
    dvc.lock committed in git and leaves the clone clean: the default pipeline, about 10 minutes on two cores
    (`make check-lock`; not in `make test`, whose 15 minutes it would take alone)."""
    _, committed, made = _fresh_clone_repro(tmp_path)
    _assert_same_bytes(committed, made)
