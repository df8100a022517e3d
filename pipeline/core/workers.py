"""Process pools whose workers die with their stage.

A stage killed with ``SIGKILL`` cannot shut its pool down; Python's pool workers would then block on
their task queue forever, re-parented to PID 1 and holding their memory (and, through them, the
resource tracker). :func:`worker_pool` asks Linux to kill each worker when its parent dies
(``PR_SET_PDEATHSIG``); elsewhere the workers behave as Python's usual pool workers.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys

__all__ = ["worker_pool"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Pool initializer: ``SIGKILL`` this worker when its parent process ends."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def worker_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A ``spawn`` process pool of ``workers`` processes that end when the calling process ends."""
    return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_die_with_parent, initargs=(os.getpid(),))
