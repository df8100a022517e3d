"""Sharing a stage's work among the processes ``torchrun`` starts, with one writer.

Under ``torchrun --nproc_per_node=P`` a stage runs as P processes (ranks) of one process group. The
``densepose`` stage splits its work into numbered tasks (batches of bodies, images), and
:func:`ordered_map` runs task ``t`` on rank ``t mod P``: in round ``k`` every rank does task ``k P + rank``,
then rank 0 gathers the round's results and hands them on in task order. Rank 0 alone writes, so the
store is byte-identical to the one a single process writes, whatever P (the same single-writer design
as the Dask stages, :mod:`pipeline.core.cluster`), and rank 0 holds at most one round of results.

A task that fails on any rank stops every rank at the end of its round: rank 0 raises the error
(the stage then removes its outputs and prints it), the others exit quietly with status 2. A rank that
dies outright makes the collective fail on the others (or ``torchrun`` stops them), which leaves no
output either.

:func:`torchrun_when_asked` is how a stage runs itself under ``torchrun`` when ``cluster.processes`` > 1, so that
``dvc exp run -S cluster.processes=8`` is all a user types.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipeline.core.errors import InputError, UserError

__all__ = ["Ranks", "ALONE", "from_environment", "join", "check_share", "ordered_map", "sum_counts", "torchrun_when_asked", "under_torchrun"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the stage's processes: ``rank`` in ``0 .. world - 1``, ``local`` its rank on
    its machine (its GPU)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def writer(self) -> bool:
        """Whether this process writes the stage's outputs (rank 0)."""
        return self.rank == 0

    def leave_unless_writer(self) -> None:
        """On ranks other than 0, whose share of the work is done: leaves the process group and ends the
        process (SystemExit, status 0); rank 0 goes on to write. Alone: returns."""
        if self.writer:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        raise SystemExit(0)


ALONE = Ranks()


def under_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher that sets ``WORLD_SIZE``)."""
    return "WORLD_SIZE" in os.environ


def from_environment() -> Ranks:
    """This process's :class:`Ranks` as its launcher (torchrun) set them in ``RANK``, ``WORLD_SIZE`` and
    ``LOCAL_RANK``; :data:`ALONE` without a launcher."""
    if not under_torchrun():
        return ALONE
    return Ranks(int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def join() -> Ranks:
    """This process's :class:`Ranks`: :data:`ALONE`, or under torchrun its rank after joining the process group
    (gloo: the results travel as pickled CPU objects; with GPUs, each process takes its local rank's)."""
    ranks = from_environment()
    if ranks.world == 1:
        return ranks
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return ranks


def check_share(n_tasks: int, ranks: Ranks, what: str, fix: str) -> None:
    """Refuses more processes than tasks (some would have nothing to do). The same on every rank, so
    every rank raises it before any collective.

    Args:
        n_tasks: the stage's tasks.  what: what a task is, e.g. "batches of synthetic.batch = 32 bodies".
        fix: the params change that makes the work fit.
    """
    if ranks.world > n_tasks:
        raise InputError(f"{ranks.world} processes (cluster.processes or torchrun --nproc_per_node) for "
                         f"{n_tasks} {what}: every process needs at least one; {fix}")


def _failure(e: BaseException) -> BaseException:
    """``e`` as it can travel to rank 0: itself when it pickles, else a RuntimeError with its text."""
    try:
        pickle.dumps(e)
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


def ordered_map(fn: Callable[[int], T], n_tasks: int, ranks: Ranks = ALONE) -> Iterator[tuple[int, T]]:
    """Runs ``fn(t)`` for this rank's tasks; on rank 0 yields ``(t, fn(t))`` for every ``t`` in ``0 .. n_tasks - 1``
    in order (other ranks yield nothing). Every rank must iterate it to the end (it holds collectives).

    Raises:
        on rank 0, the first error of a round's tasks (whichever rank ran it); other ranks exit with status 2
        (SystemExit) once rank 0 has it.
    """
    if ranks.world == 1:
        for t in range(n_tasks):
            yield t, fn(t)
        return
    import torch.distributed as dist

    own = wait = use = 0.0  # rank 0's seconds: its own tasks, gathering a round, its caller's work on them
    for first in range(0, n_tasks, ranks.world):
        t0 = time.perf_counter()
        t = first + ranks.rank
        item: tuple = (t, None, None)
        if t < n_tasks:
            try:
                item = (t, fn(t), None)
            except Exception as e:
                if not isinstance(e, UserError):
                    log.exception("task %d failed on rank %d", t, ranks.rank)
                item = (t, None, _failure(e))
        t1 = time.perf_counter()
        got = [None] * ranks.world if ranks.writer else None
        dist.gather_object(item, got, dst=0)
        failed = [next((e for _, _, e in got if e is not None), None) if ranks.writer else None]
        dist.broadcast_object_list(failed, src=0)
        if failed[0] is not None:
            if ranks.writer:
                raise failed[0]
            raise SystemExit(2)  # rank 0 reports it and removes the outputs
        t2 = time.perf_counter()
        if ranks.writer:
            for t, value, _ in got:
                if t < n_tasks:
                    yield t, value
        own, wait, use = own + t1 - t0, wait + t2 - t1, use + time.perf_counter() - t2
    if ranks.writer:
        log.info("%d tasks on %d processes; rank 0: %.1f s on its own tasks, %.1f s gathering the others' results "
                 "(waiting for them included), %.1f s writing them", n_tasks, ranks.world, own, wait, use)


def sum_counts(counts: dict[str, int], ranks: Ranks = ALONE) -> dict[str, int]:
    """Each key's sum over the ranks (every rank gets it; the same keys on every rank)."""
    if ranks.world == 1:
        return dict(counts)
    import torch.distributed as dist

    every = [None] * ranks.world
    dist.all_gather_object(every, dict(counts))
    return {k: sum(c[k] for c in every) for k in counts}


def torchrun_when_asked(module: str, argv: list[str], processes: int) -> None:
    """Returns at once when ``processes`` is 1 or this process is already a rank (the stage then runs here);
    else runs ``python -m module argv`` as ``processes`` ranks of this machine under ``torchrun``, waits,
    and ends this process with status 0 (SystemExit) when they succeed.

    Raises:
        UserError: when a rank failed (its error is printed above, by rank 0).
    """
    if processes <= 1 or under_torchrun():
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", module, *argv]
    log.info("cluster.processes = %d: %s", processes, " ".join(cmd[1:]))
    root = str(Path(__file__).resolve().parents[2])  # the repository, so that ``-m stages.NAME`` imports anywhere
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    rc = subprocess.run(cmd, env=env).returncode
    if rc != 0:
        raise UserError(f"{module} under torchrun with {processes} processes failed (exit status {rc}); "
                        "the error of the rank that failed is above")
    raise SystemExit(0)
