"""map_chunks: results in task order whatever runs them (the stage's process, a local Dask cluster, a running
scheduler), shared arguments sent once, task errors and unreachable schedulers reported."""

import operator
import os
import time

import pytest

from pipeline.core import cluster
from pipeline.core.cluster import map_chunks
from pipeline.core.errors import InputError

TASKS = [(k,) for k in range(7)]


def test_in_process_and_on_local_workers_give_the_same_ordered_results():
    before = dict(os.environ)
    alone = list(map_chunks(operator.mul, TASKS, workers=1, shared=(3,), progress=False))
    spread = list(map_chunks(operator.mul, TASKS, workers=2, shared=(3,), progress=False))
    many = list(map_chunks(operator.mul, TASKS, workers=50, shared=(3,), progress=False))  # more workers than tasks
    assert alone == spread == many == [3 * k for k in range(7)]
    # Dask's nannies set their workers' variables (MALLOC_TRIM_THRESHOLD_, ...) in this process: put back
    assert dict(os.environ) == before


def test_the_environment_is_put_back_when_the_stage_stops_reading_early():
    before = dict(os.environ)
    chunks = map_chunks(operator.mul, TASKS, workers=2, shared=(3,), progress=False)
    assert next(chunks) == 0
    chunks.close()  # the consumer failed or stopped: the cluster closes and the environment is restored
    assert dict(os.environ) == before


def test_a_running_scheduler_is_used_when_given():
    from dask.distributed import LocalCluster

    with cluster._environ_kept(), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as running:
        out = list(map_chunks(operator.sub, [(10, k) for k in range(5)], scheduler=running.scheduler_address,
                              progress=False))
    assert out == [10 - k for k in range(5)]


def test_a_failing_task_reaches_the_caller():
    with pytest.raises(ZeroDivisionError):
        list(map_chunks(operator.truediv, [(1, 1), (1, 0), (1, 2)], workers=2, progress=False))
    with pytest.raises(ZeroDivisionError):
        list(map_chunks(operator.truediv, [(1, 1), (1, 0)], workers=1, progress=False))


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 2.0)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"cluster.scheduler 'tcp://127.0.0.1:9': no Dask scheduler"):
        list(map_chunks(operator.mul, TASKS, scheduler="tcp://127.0.0.1:9", progress=False))
    assert time.perf_counter() - t0 < 30


def test_a_local_cluster_keeps_its_scratch_space_in_a_folder_of_its_own_removed_after(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the run's temporary folder goes
    chunks = map_chunks(operator.mul, TASKS, workers=2, shared=(3,), progress=False)
    assert next(chunks) == 0
    scratch = [p.relative_to(tmp_path) for p in tmp_path.glob("dp3d-dask-*/dask-scratch-space/*")]
    names = {p.name for p in scratch}
    workers = [n for n in names if n.startswith("worker-") and not n.endswith(".dirlock")]
    assert {"global.lock", "purge.lock"} <= names and len(workers) == 2, scratch  # the scheduler's too
    assert list(chunks) == [3 * k for k in range(1, 7)]
    assert list(tmp_path.iterdir()) == []  # nothing left, lock files included
