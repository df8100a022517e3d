"""Anny's body model, the same bytes in every process that builds it.

Anny builds its model data once (157 s on one thread of a 2-core box) and caches it in ``~/.cache/anny``; later
processes load that cache. The compact blendshape basis it builds differs from build to build with the CPU
kernels and the thread count of the building process (measured: up to 5.1 in ``blendshapes``, 0.017 in
``phenotype_blendshape_projection``; the rest pose, and so ``data/template.npz``, differs in its last bits). So
whichever process built the cache first on a machine decided every later template, rendering and lock there: the
`template` stage on a machine without that cache wrote another ``data/template.npz`` than the committed lock's, which
had come from a cache a test had built (unpinned, one torch thread).

:func:`anny_model` builds the data with one thread, under a file lock, into this project's own cache, one folder
per CPU dispatch (:mod:`pipeline.core.dispatch`: ``pinned``, the stages' own, is the same on every AVX2 machine;
``native`` is the machine's, e.g. a test process's). Whoever builds it first, a folder holds the same bytes.
"""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.core.dispatch import is_pinned, start_warp

__all__ = ["anny_model", "anny_cache_dir", "one_thread"]


def anny_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """This project's cache of Anny's model data for the CPU dispatch of this process:
    ``$XDG_CACHE_HOME/densepose3d/anny/<pinned | native-<machine>>`` (``~/.cache`` without XDG_CACHE_HOME)."""
    environ = os.environ if environ is None else environ
    root = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    mode = "pinned" if is_pinned(environ) else f"native-{platform.machine().lower() or 'unknown'}"
    return root / "densepose3d" / "anny" / mode


@contextmanager
def one_thread() -> Iterator[None]:
    """torch, BLAS and OpenMP on one thread inside the block; the caller's thread counts after it."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def anny_model(topology: str):
    """``anny.Anny(topology=topology)``, its model data built (or loaded) as the module docstring says."""
    from filelock import FileLock

    start_warp()  # before anny, which initialises Warp when imported
    try:
        import anny
        from anny import paths
    except ImportError as e:  # pragma: no cover - anny is a pinned requirement
        raise ImportError("template.source: anny needs the 'anny' package (pip install -r requirements.txt)") from e
    cache = anny_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    before = paths.get_anny_cache_path()
    paths.set_anny_cache_path(cache)
    try:
        # one builder at a time: Anny writes its cache files in place, a second process could read one half-written
        with FileLock(str(cache / ".build.lock")), one_thread():
            return anny.Anny(topology=topology)
    finally:
        paths.set_anny_cache_path(before)
