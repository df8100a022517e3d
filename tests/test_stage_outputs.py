"""All-or-nothing stage outputs (pipeline/core/io.py, pipeline/core/stage.py), tested on every stage.

A stage that fails or is killed at any point leaves none of its outputs under their final names (a
trained model and its curves keep their earlier run's version), only git-ignored temporaries beside them
that its next run sweeps; its worker processes die with it; the next run gives the same bytes -- also with one CPU instead of two (``common.threads`` fixes the
numerics, not the machine).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.core.config import as_dict, load_params_dict
from pipeline.core.io import StageOutputs, partial_path, save_json, stage_outputs, written
from tests.conftest import tree_bytes

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "common": {"threads": 2},
    "synthetic": {"train_bodies": 60, "test_bodies": 8, "views": 2, "batch": 16},
    "cluster": {"workers": 2},
    "iuv": {"previews": 2},
    "model": {"hidden": 64, "bottleneck": 16, "blocks": 1, "parts": 3, "lbo_basis": 8},
    "train": {"epochs": 3, "batch_size": 16, "checkpoint_every": 2, "log_every": 1},
    "eval": {"s2s_instances": 2, "grid": 2, "meshes": 1, "uv_maps": 1, "uv_resolution": 16, "refine_steps": 5},
    "lbo": {"k": 16},
}

# stage -> (arguments, outputs), paths relative to the workspace
STAGES = {
    "template": ("--out data/template.npz --png data/template_parts.png",
                 ["data/template.npz", "data/template_parts.png"]),
    "lbo": ("--template data/template.npz --out data/lbo.npz --png data/lbo.png", ["data/lbo.npz", "data/lbo.png"]),
    "densepose": ("--template data/template.npz --out data/densepose.zarr --png data/densepose_contact.png "
                  "--metrics metrics/densepose.json",
                  ["data/densepose.zarr", "data/densepose_contact.png", "metrics/densepose.json"]),
    "iuv": ("--densepose data/densepose.zarr --out data/iuv.zarr --preview data/iuv_preview --metrics metrics/iuv.json "
            "--frames data/iuv_frames", ["data/iuv.zarr", "data/iuv_preview", "metrics/iuv.json", "data/iuv_frames"]),
    "keypoints": ("--iuv data/iuv.zarr --template data/template.npz --out data/keypoints.zarr "
                  "--metrics metrics/keypoints.json", ["data/keypoints.zarr", "metrics/keypoints.json"]),
    "train": ("--keypoints data/keypoints.zarr --template data/template.npz --lbo data/lbo.npz --out models/model.pt "
              "--live metrics/train", ["models/model.pt", "metrics/train"]),
    "evaluate": ("--model models/model.pt --keypoints data/keypoints.zarr --template data/template.npz "
                 "--metrics metrics/eval.json --parts metrics/eval_parts.csv --segmentation metrics/segmentation.csv "
                 "--reports reports --iuv data/iuv.zarr --densepose data/densepose.zarr",
                 ["metrics/eval.json", "metrics/eval_parts.csv", "metrics/segmentation.csv", "reports"]),
}
ORDER = list(STAGES)
# outputs an earlier run's version of which stays under its name until a run replaces it (a finished model)
KEPT = {"models/model.pt", "metrics/train"}
IGNORED = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()
           if line.strip().startswith(".*.")]


def _cmd(stage: str) -> list[str]:
    return [sys.executable, "-m", f"stages.{stage}", "--params", "params.yaml", *STAGES[stage][0].split()]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), DP3D_LOG="WARNING", TQDM_DISABLE="1")


def _run(ws: Path, stage: str, one_cpu: bool = False) -> subprocess.CompletedProcess:
    cmd = (["taskset", "-c", "0"] if one_cpu else []) + _cmd(stage)
    return subprocess.run(cmd, cwd=ws, env=_env(), capture_output=True, text=True, timeout=600)


def _snapshot(ws: Path, stage: str) -> dict[str, bytes]:
    """Every byte of a stage's outputs (files and folders), by path."""
    out = {}
    for rel in STAGES[stage][1]:
        p = ws / rel
        if p.is_dir():
            out.update({f"{rel}/{k}": v for k, v in tree_bytes(p).items()})
        else:
            out[rel] = p.read_bytes()
    return out


def _assert_nothing_published(ws: Path, stage: str, before: dict[str, bytes], what: str) -> None:
    """No output of the stage under its name, but a kept one, byte-identical to ``before`` (its earlier run)."""
    for rel in STAGES[stage][1]:
        if rel in KEPT:
            earlier = {k: v for k, v in before.items() if k == rel or k.startswith(f"{rel}/")}
            p = ws / rel
            now = {f"{rel}/{k}": v for k, v in tree_bytes(p).items()} if p.is_dir() else \
                {rel: p.read_bytes()} if p.exists() else {}
            assert now == earlier, f"{what} {stage} changed the earlier run's {rel}"
        else:
            assert not (ws / rel).exists(), f"{what} {stage} left {rel} under its final name"


def _leftovers(ws: Path, stage: str) -> list[Path]:
    """Entries beside a stage's outputs whose names belong to its work in progress."""
    found = []
    for rel in STAGES[stage][1]:
        p = ws / rel
        found += [q for q in p.parent.iterdir() if q.name.startswith(f".{p.name}.")]
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with tiny params where every stage ran once (subprocesses, as DVC runs them)."""
    ws = tmp_path_factory.mktemp("stages")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    load_params_dict(params)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = {}
    for stage in ORDER:
        res = _run(ws, stage)
        assert res.returncode == 0, f"{stage}:\n{res.stderr[-3000:]}"
        first[stage] = _snapshot(ws, stage)
    return ws, first


def _descendants(pid: int) -> set[int]:
    """PIDs of every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_midway(ws: Path, stage: str) -> set[int]:
    """Starts the stage, SIGKILLs it once it has begun writing an output; returns its children at that time."""
    proc = subprocess.Popen(_cmd(stage), cwd=ws, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: set[int] = set()
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            children |= _descendants(proc.pid)
            if _leftovers(ws, stage):
                if stage == "iuv" and len(children) < 2:  # wait until the pool's workers run
                    time.sleep(0.005)
                    continue
                break
            time.sleep(0.005)
        children |= _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{stage} ended ({proc.returncode}) before it could be killed"
    return children


@pytest.mark.slow
@pytest.mark.parametrize("stage", ORDER)
def test_killed_stage_leaves_no_output_and_reruns_to_the_same_bytes(workspace, stage):
    ws, first = workspace
    children = _kill_midway(ws, stage)
    _assert_nothing_published(ws, stage, first[stage], "killed")
    left = _leftovers(ws, stage)
    assert left, "the kill came too late to test anything"
    for p in left:  # temporaries are git-ignored
        assert any(fnmatch.fnmatch(p.name, pat) for pat in IGNORED), p
    if stage == "iuv":
        assert len(children) >= 2, "the iuv stage ran no pool workers"
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [c for c in children if _alive(c)], f"{stage}: processes outlived the killed stage"

    # the next run sweeps the temporaries and gives the same bytes, here on one CPU instead of two
    one_cpu = shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) > 1
    res = _run(ws, stage, one_cpu=one_cpu)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not _leftovers(ws, stage), _leftovers(ws, stage)
    again = _snapshot(ws, stage)
    assert again.keys() == first[stage].keys()
    differ = [k for k in again if again[k] != first[stage][k]]
    assert not differ, f"{stage} rerun{' on one CPU' if one_cpu else ''} differs in {differ[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ORDER)
def test_failure_after_the_first_output_leaves_none(workspace, stage, monkeypatch, tmp_path):
    """A failure after the stage's first output is complete: that output is not published either."""
    ws, first = workspace
    # fail at the first write that follows a completed output of this stage
    import pipeline.core.io as io_module

    outputs = {os.path.abspath(ws / rel) for rel in STAGES[stage][1]}
    original_stage = io_module.StageOutputs.stage

    def stage_then_fail(self, path, target):
        original_stage(self, path, target)
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(io_module.StageOutputs, "stage", stage_then_fail)
    monkeypatch.chdir(ws)
    module = __import__(f"stages.{stage}", fromlist=["main"])
    with pytest.raises(OSError, match="No space left"):
        module.main(["--params", "params.yaml", *STAGES[stage][0].split()])
    assert outputs
    _assert_nothing_published(ws, stage, first[stage], "failed")
    leftovers = [p for p in _leftovers(ws, stage) if not p.name.endswith(".partial")]
    assert not leftovers, leftovers
    for rel, data in first[stage].items():  # put the outputs back for the other tests
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_bytes(data)


# --- the mechanism itself, without stages --------------------------------------------------------

def test_outputs_appear_together_at_the_end(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "sub" / "b.json"
    with stage_outputs(a, b):
        save_json(a, {"x": 1})
        assert not a.exists() and written(a).is_file()  # staged, readable by the stage itself
        save_json(b, {"y": 2})
    assert a.is_file() and b.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "sub"]


def test_an_error_removes_staged_and_earlier_outputs(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_json(b, {"old": True})  # an earlier run's output
    with pytest.raises(RuntimeError, match="boom"):
        with stage_outputs(a, b):
            save_json(a, {"x": 1})
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_output_is_a_failure(tmp_path):
    with pytest.raises(RuntimeError, match="without writing .*b.json"):
        with stage_outputs(tmp_path / "a.json", tmp_path / "b.json"):
            save_json(tmp_path / "a.json", {})
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_run_are_swept(tmp_path):
    out = tmp_path / "store.zarr"
    for name in (".store.zarr.abc123.tmp", ".store.zarr.staged"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "junk").write_text("x")
    (tmp_path / ".other.zarr.x.tmp").mkdir()  # another output's: not ours to sweep
    with stage_outputs(out):
        from pipeline.core.io import atomic_path

        with atomic_path(out) as tmp:
            tmp.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.zarr.x.tmp", "store.zarr"]


def test_a_kept_output_stays_until_its_successor_is_complete(tmp_path):
    """Training's checkpoint: an earlier run's finished model survives a failed or killed run; the staged copy a
    killed run left becomes the partial work to resume from; a successful run replaces the model in one rename."""
    from pipeline.core.io import atomic_path

    ck, curves = tmp_path / "model.pt", tmp_path / "train"
    ck.write_bytes(b"done")
    curves.mkdir()
    (curves / "loss.tsv").write_text("old")
    with pytest.raises(RuntimeError):
        with stage_outputs(ck, curves, keep=(ck, curves)):
            assert ck.read_bytes() == b"done" and not partial_path(ck).exists()
            with atomic_path(ck) as tmp:
                tmp.write_bytes(b"finished but the stage failed")
            raise RuntimeError("boom")
    assert ck.read_bytes() == b"done" and (curves / "loss.tsv").read_text() == "old"
    assert partial_path(ck).read_bytes() == b"finished but the stage failed"  # for train.resume
    StageOutputs.staging(Path(ck)).write_bytes(b"staged when killed")  # a SIGKILL before the renames
    with pytest.raises(RuntimeError):
        with stage_outputs(ck, keep=(ck,)):
            assert partial_path(ck).read_bytes() == b"finished but the stage failed"  # partial work wins
            raise RuntimeError("killed")
    assert ck.read_bytes() == b"done" and not StageOutputs.staging(ck).exists()
    with stage_outputs(ck, curves, keep=(ck, curves)):
        with atomic_path(ck) as tmp:
            tmp.write_bytes(b"new")
        with atomic_path(curves) as tmp:
            tmp.mkdir()
            (tmp / "loss.tsv").write_text("new")
        assert ck.read_bytes() == b"done"
    assert ck.read_bytes() == b"new" and (curves / "loss.tsv").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "train"]


def test_trim_curves_drops_the_rows_after_the_checkpoint(tmp_path):
    from pipeline.core.io import trim_curves

    tsv = tmp_path / "plots" / "metrics" / "train" / "loss.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tloss\n1\t0.5\n2\t0.4\n3\t0.3\n4\t0.")  # the last row cut short by a kill
    trim_curves(tmp_path, 2)
    assert tsv.read_text() == "step\tloss\n1\t0.5\n2\t0.4\n"
    trim_curves(tmp_path, 0)
    assert tsv.read_text() == "step\tloss\n"


def test_cli_prints_one_line_for_a_user_error(tmp_path):
    (tmp_path / "params.yaml").write_text("lbo: {k: -3}\n")
    res = subprocess.run(_cmd("lbo"), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: ") and "lbo.k = -3 is out of range" in res.stderr
    assert "(the stage wrote no output; `dvc checkout lbo` restores the previous outputs from the DVC cache;" in res.stderr
    debug = subprocess.run(_cmd("lbo"), cwd=tmp_path, env=dict(_env(), DP3D_DEBUG="1"), capture_output=True,
                           text=True, timeout=120)
    assert "Traceback" in debug.stderr


def test_threads_param_is_applied(tmp_path):
    import torch

    from pipeline.core.stage import fix_threads

    n = torch.get_num_threads()
    try:
        fix_threads(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        fix_threads(n)
    assert as_dict(load_params_dict({}))["common"]["threads"] == 2


def test_a_full_disk_names_the_outputs_and_the_fix(tmp_path):
    from pipeline.core.errors import describe_os_error

    out = tmp_path / "x.zarr"
    with pytest.raises(OSError) as e:
        with stage_outputs(out):
            raise OSError(28, "No space left on device")
    message = describe_os_error(e.value)
    assert str(out) in message and "free disk space" in message
    assert describe_os_error(FileNotFoundError(2, "No such file or directory", "data/x.npz")).startswith(
        "data/x.npz: No such file or directory; check the path")


def test_cuda_without_a_gpu_is_a_user_error():
    import torch

    from pipeline.core.stage import resolve_device
    from pipeline.core.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="common.device = cuda.*set common.device to auto or cpu"):
        resolve_device("cuda")


def test_xdist_workers_share_the_cores():
    from tests.conftest import share_cores

    cores = len(os.sched_getaffinity(0))
    env = {"PYTEST_XDIST_WORKER_COUNT": "2", "MKL_NUM_THREADS": "3"}
    assert share_cores(env) == max(1, cores // 2)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == str(max(1, cores // 2))
    assert env["MKL_NUM_THREADS"] == "3"  # the caller's choice stays
    alone = {}
    assert share_cores(alone) is None and alone == {}  # one process: the libraries' own defaults
