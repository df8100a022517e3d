"""Spreading a stage's per-chunk work over processes and machines, with Dask.

:func:`map_chunks` runs ``fn(*shared, *task)`` for every task and yields the results **in task order**,
whatever the number of workers, so a store written from them does not depend on it:

- ``workers`` <= 1 and no ``scheduler``: in the stage's own process (Dask is not imported);
- otherwise, without ``scheduler``: a ``dask.distributed.LocalCluster`` of single-threaded worker
  processes (at most one a task), started for the stage and closed after it;
- with ``scheduler`` (``cluster.scheduler``, e.g. ``tcp://10.0.0.5:8786``): that running cluster. Its
  workers must import this package (the same code) and read the stage's input paths (a shared file
  system); the results come back to the stage, which alone writes the output store.

The Dask dashboard's address is logged (``dashboard_link``: progress, memory, task stream) and a tqdm bar
counts finished chunks. At most ``2 x workers`` tasks are in flight, so memory stays bounded. ``shared``
arguments (lookup tables, templates) are sent to every worker once (``scatter(broadcast=True)``). A task
whose worker dies is run again elsewhere by Dask (``distributed.scheduler.allowed-failures``); when it
fails for good, or a task raises, the exception reaches the stage, whose output is then not published
(:func:`pipeline.core.io.stage_outputs`). An unreachable scheduler is an :class:`InputError` naming it.
A local cluster keeps its scratch space (Dask's ``dask-scratch-space``: lock files, spilled data) in a
temporary folder of the run, removed with the cluster (Dask leaves its lock files in the system's
temporary folder otherwise).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from pipeline.core.errors import InputError
from pipeline.core.stage import progress as progress_bar

log = logging.getLogger(__name__)

__all__ = ["map_chunks", "CONNECT_TIMEOUT_S"]

CONNECT_TIMEOUT_S = 10.0  # seconds to wait for a scheduler to answer
_ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def _connect(scheduler: str, workers: int, n_tasks: int):
    """(client, cluster or None, worker count) of a running scheduler or of a new local cluster."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as e:
            raise InputError(f"cluster.scheduler {scheduler!r}: no Dask scheduler answers there "
                             f"({type(e).__name__}: {e}); start one (dask scheduler) or leave it empty "
                             "for local processes") from e
        n = len(client.scheduler_info().get("workers", {}))
        if n == 0:
            client.close()
            raise InputError(f"cluster.scheduler {scheduler!r}: the scheduler has no worker")
        return client, None, n
    n = max(1, min(workers, n_tasks))
    logging.getLogger("distributed").setLevel(logging.WARNING)  # the stage logs the dashboard itself
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.WARNING, env=_ONE_THREAD)
    return Client(cluster), cluster, n


@contextlib.contextmanager
def _environ_kept() -> Iterator[None]:
    """Restores this process's environment when the block ends: Dask's nannies put their workers' variables
    (``distributed.nanny.pre-spawn-environ``: MALLOC_TRIM_THRESHOLD_, PYTHONHASHSEED, ...) into
    ``os.environ`` before spawning them and leave them there, where every process started later would inherit
    them (measured: a later ``dvc repro`` from the same process ran at half speed with glibc's trim threshold)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _scratch_space() -> Iterator[str]:
    """A temporary folder (``dp3d-dask-*`` in the system's temporary folder) as Dask's ``temporary-directory``
    for the block, removed at its end: a local cluster's scheduler, nannies and workers keep their
    ``dask-scratch-space`` (``global.lock``, ``purge.lock``, worker folders, spilled data) there, not in
    ``/tmp/dask-scratch-space``, where Dask leaves the lock files behind. Yields the folder."""
    import dask

    with tempfile.TemporaryDirectory(prefix="dp3d-dask-", ignore_cleanup_errors=True) as tmp, \
            dask.config.set({"temporary-directory": tmp}):
        yield tmp


def map_chunks(fn: Callable[..., Any], tasks: Iterable[tuple], workers: int = 1, scheduler: str = "",
               shared: tuple = (), desc: str = "chunks", progress: bool = True) -> Iterator[Any]:
    """Yields ``fn(*shared, *task)`` for each of ``tasks``, in their order (module docstring).

    Args:
        fn: a module-level function (workers import it by name). tasks: argument tuples, one a chunk.
        workers: local worker processes (ignored with ``scheduler``). scheduler: a Dask scheduler address.
        shared: leading arguments common to every task, sent once. desc: the bar's and the log's label.
    Raises:
        InputError: ``scheduler`` unreachable or without workers.
    """
    tasks = list(tasks)
    bar = progress_bar(total=len(tasks), desc=desc, unit="chunk", enabled=progress)
    try:
        if not scheduler and (workers <= 1 or len(tasks) <= 1):
            for t in tasks:
                yield fn(*shared, *t)
                bar.update(1)
            return
        # over the cluster's life: a nanny restarting a worker sets the variables again, and writes its scratch space
        with _environ_kept(), (_scratch_space() if not scheduler else contextlib.nullcontext()):
            client, cluster, n = _connect(scheduler, workers, len(tasks))
            try:
                log.info("%s: %d chunks on %d Dask workers (%s); dashboard %s", desc, len(tasks), n,
                         scheduler or f"local processes of pid {os.getpid()}", client.dashboard_link)
                common = client.scatter(list(shared), broadcast=True) if shared else []
                queue = iter(tasks)
                pending = deque(client.submit(fn, *common, *t, pure=False) for t in islice(queue, 2 * n))
                while pending:
                    result = pending.popleft().result()
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.append(client.submit(fn, *common, *nxt, pure=False))
                    bar.update(1)
                    yield result
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
    finally:
        bar.close()
