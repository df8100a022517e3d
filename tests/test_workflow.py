"""The experiment workflow users run every day, end to end in a temporary copy of the repository
with tiny params: `dvc repro`, a second `dvc repro` doing nothing, `dvc exp run -S ...` rerunning only
what depends on the change, `dvc metrics diff`, a queued sweep tabulated with the run before it, and the switch to the correspondence
network."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "synthetic": {"train_bodies": 12, "test_bodies": 4, "views": 2, "batch": 8},
    # 150 steps: the least that sees the person (densepose.source network runs it end to end below)
    "network": {"train_bodies": 4, "test_bodies": 1, "views": 2, "crop": 32, "width": 4, "steps": 150,
                "batch_size": 4, "lr": 0.03, "log_every": 10, "test_instances": 2},
    "cluster": {"workers": 1},
    "iuv": {"previews": 2},
    "model": {"hidden": 128, "bottleneck": 32, "blocks": 1, "parts": 3, "lbo_basis": 8},
    "train": {"epochs": 2, "batch_size": 8, "checkpoint_every": 50, "log_every": 1},
    "eval": {"s2s_instances": 2, "grid": 2, "meshes": 1, "uv_maps": 1, "uv_resolution": 16, "refine_steps": 5},
    "lbo": {"k": 16},
}


def _run(repo: Path, *args: str) -> str:
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    exe = str(bin_dir / args[0]) if (bin_dir / args[0]).exists() else args[0]
    res = subprocess.run([exe, *args[1:]], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dst = tmp_path_factory.mktemp("workflow") / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith("metrics/"):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    (dst / "dvc.lock").unlink(missing_ok=True)
    (dst / "sources" / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(dst, "git", "init", "-q")
    _run(dst, "git", "add", "-A")
    _run(dst, "git", "commit", "-qm", "tiny")
    return dst


@pytest.mark.slow
def test_repro_then_experiments(repo):
    out = _run(repo, "dvc", "repro")
    for stage in ("template", "lbo", "densepose", "iuv", "keypoints", "train", "evaluate"):
        assert f"Running stage '{stage}'" in out, stage
    assert "sources/dvc.yaml" not in out  # the synthetic source trains no correspondence network
    metrics = json.loads((repo / "metrics" / "eval.json").read_text())
    assert metrics["mpjpe_mm"] > 0 and metrics["test_instances"] > 0
    out = _run(repo, "dvc", "repro", "sources/dvc.yaml")  # the network alone, to measure it
    assert "Running stage 'sources/dvc.yaml:images'" in out and "Running stage 'sources/dvc.yaml:network'" in out
    assert json.loads((repo / "metrics" / "correspondence.json").read_text())["network"]["instances"] == 2
    assert "Running stage" not in _run(repo, "dvc", "repro")  # nothing changed: nothing runs

    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "baseline")
    out = _run(repo, "dvc", "exp", "run", "-S", "model.parts=5", "-n", "parts5")
    ran = {s for s in ("template", "lbo", "densepose", "iuv", "keypoints", "train", "evaluate")
           if f"Running stage '{s}'" in out}
    assert ran == {"train", "evaluate"}, out
    diff = _run(repo, "dvc", "metrics", "diff", "--json")
    changed = json.loads(diff)
    assert "mpjpe_mm" in changed.get("metrics/eval.json", {}), diff

    # a queued sweep of one run (each run costs about 40 s here; a second would test nothing more)
    _run(repo, "dvc", "exp", "run", "--queue", "-S", "model.parts=2", "-n", "parts2")
    _run(repo, "dvc", "queue", "start", "-j", "1")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:  # `dvc queue start` returns at once; wait for the sweep
        status = _run(repo, "dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Failed" not in status, status + _run(repo, "dvc", "queue", "logs", "parts2")
    shown = json.loads(_run(repo, "dvc", "exp", "show", "--json"))
    table = subprocess.run([sys.executable, str(repo / "scripts" / "tabulate_experiments.py"), "-",
                            "--params", "model.parts", "--metrics", "mpjpe_mm"],
                           input=json.dumps(shown), capture_output=True, text=True, cwd=repo)
    assert table.returncode == 0, table.stderr
    assert "parts2" in table.stdout and "parts5" in table.stdout, table.stdout

    # the README's switch to the correspondence network: from rendered images to evaluate
    # (the tiny 150-step network sees little: most of its instances show under 10 % of the surface, the
    # default keypoints.min_visible_area, which would leave no test instance; the stages are what is tested)
    out = _run(repo, "dvc", "exp", "run", "-S", "densepose.source=network", "-S", "keypoints.min_visible_area=0.01",
               "-n", "from-images")
    ran = {s for s in ("sources/dvc.yaml:images", "sources/dvc.yaml:network", "densepose", "iuv", "keypoints",
                       "train", "evaluate") if f"Running stage '{s}'" in out}
    assert ran == {"densepose", "iuv", "keypoints", "train", "evaluate"}, out  # the network made above is reused
    shown = json.dumps(json.loads(_run(repo, "dvc", "exp", "show", "--json")))
    assert "from-images" in shown and "mpjpe_mm" in shown
