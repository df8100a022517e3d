"""The densepose stage under torchrun when things go wrong: a rank killed mid-stage, more processes than work.

(That 2 processes write the single process's bytes: tests/densepose/test_synthetic.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.densepose.store import open_densepose

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # the stage runs in tmp_path, a user's other folder


def _stage(tmp_path: Path, processes: int, bodies: int) -> tuple[list[str], Path]:
    params = tmp_path / f"params{processes}.yaml"
    params.write_text(yaml.safe_dump({"cluster": {"processes": processes}, "densepose": {"crop": 48},
                                      "synthetic": {"train_bodies": bodies, "test_bodies": 2, "views": 2,
                                                    "batch": 2}}))
    out = tmp_path / "dp.zarr"
    return [sys.executable, "-m", "stages.densepose", "--params", str(params), "--template",
            str(tmp_path / "template.npz"), "--out", str(out), "--png", str(tmp_path / "dp.png"),
            "--metrics", str(tmp_path / "dp.json")], out


def _rank_pids(rank: int) -> list[int]:
    """Processes of stages.densepose started by torchrun as ``rank``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"stages.densepose" in cmd and f"RANK={rank}".encode() in env and b"torch.distributed.run" not in cmd:
            pids.append(int(d.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_rank_killed_mid_stage_leaves_no_store_and_a_rerun_makes_it(tmp_path, template):
    template.save(tmp_path / "template.npz")
    cmd, out = _stage(tmp_path, 2, bodies=40)
    run = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        # the store is being written (rank 0 staged it) once rank 1 has rendered at least one batch
        if list(tmp_path.glob(".dp.zarr.*")) and _rank_pids(1):
            killed = _rank_pids(1)[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    log = run.communicate(timeout=120)[0]
    assert killed is not None, f"rank 1 never seen while the store was written:\n{log[-2000:]}"
    assert run.returncode == 2, log[-3000:]
    assert "under torchrun with 2 processes failed" in log
    assert not _rank_pids(0) and not _rank_pids(1)  # torchrun stopped rank 0 too: no orphan left
    assert not out.exists() and not (tmp_path / "dp.json").exists() and not (tmp_path / "dp.png").exists()

    cmd, out = _stage(tmp_path, 1, bodies=40)
    subprocess.run(cmd, cwd=tmp_path, env=ENV, check=True, capture_output=True)
    assert open_densepose(out, template.hash)["labels"].shape[0] == 84
    assert not list(tmp_path.glob(".dp.*"))  # the killed run's leftovers were swept


@pytest.mark.slow
def test_more_processes_than_batches_is_a_clear_error_and_writes_nothing(tmp_path, template):
    template.save(tmp_path / "template.npz")
    cmd, out = _stage(tmp_path, 3, bodies=2)  # 4 bodies in batches of 2: 2 batches for 3 processes
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "3 processes (cluster.processes or torchrun --nproc_per_node) for 2 batches of synthetic.batch" \
        in res.stderr, res.stderr[-3000:]
    assert not out.exists() and not list(tmp_path.glob(".dp*"))
