"""Shared fixtures: the default template is built once per test session. The test processes compute with the
stages' CPU kernels (pinned before numpy loads, as ``stages/__init__.py`` does), so an in-process result is a
stage's, and both share one cache of Anny's model data (pipeline/core/body_model.py)."""

from __future__ import annotations

import os
import sys

from pipeline.core.dispatch import pin_cpu_dispatch

pin_cpu_dispatch()  # before numpy, torch and the rest load (DP3D_CPU_DISPATCH=native: the machine's own)


def share_cores(environ=os.environ) -> int | None:
    """Under pytest-xdist, each worker's OpenMP, MKL and OpenBLAS pools get an equal share of the cores (at least
    one thread), unless the caller set them; returns the share (None: one process, the libraries' defaults).
    Without it two workers on two cores ran four torch threads, whose OpenMP spin-waits made a small
    convolutional network train 4x slower than on one thread (measured: 1.2 against 0.31 s a step). Stages the
    tests start set their own count (``common.threads``)."""
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return None
    share = max(1, len(os.sched_getaffinity(0)) // workers)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        environ.setdefault(var, str(share))
    return int(environ["OMP_NUM_THREADS"])


SHARE = share_cores()  # before torch and numpy start their pools

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402


@pytest.fixture(autouse=True)
def _share_of_the_cores_again():
    """A test that ran a stage in this process (its ``fix_threads(common.threads)``) gives the worker back its
    share of the cores for the next test."""
    yield
    if SHARE is not None and "torch" in sys.modules and (
            sys.modules["torch"].get_num_threads() != SHARE or os.environ.get("OMP_NUM_THREADS") != str(SHARE)):
        from pipeline.core.stage import fix_threads

        fix_threads(SHARE)


@pytest.fixture(scope="session")
def template():
    """The default Anny template (1229 vertices), built in memory."""
    from pipeline.template.build import anny_template

    return anny_template("notoes_collapse10pc", cse_dim=16)


@pytest.fixture(scope="session")
def icosphere():
    """(vertices, faces) of a unit icosphere with 2562 vertices."""
    m = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one torch thread avoids OpenMP oversubscription when the machine is shared."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (a Zarr store) by relative path: compare two stores byte for byte."""
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(Path(root).rglob("*")) if f.is_file()}


# The longest files first, so that they start at once on the two workers instead of late on one: xdist hands out
# whole files (`make test`: --dist loadfile --no-loadscope-reorder, in collection order; its own reorder puts the
# files with the most tests first, which started the one-test DVC workflow, the longest file, last). Then the other
# files with a slow test, then the rest, each file's tests in their own order.
FIRST = ("tests/test_stage_outputs.py", "tests/test_workflow.py", "tests/test_stages.py")


def pytest_collection_modifyitems(config, items):
    slow_files = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:
        path = item.nodeid.split("::")[0]
        return (0, FIRST.index(path)) if path in FIRST else (1 if path in slow_files else 2, 0)

    items.sort(key=rank)  # stable
