"""One CPU kernel dispatch for every x86 machine (pipeline.core.dispatch): a stage's bytes do not depend on which
kernels the processor would have picked."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.dispatch import PINNED, has_avx2, is_pinned, pin_cpu_dispatch, pinned_environment
from pipeline.core.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512f\n"


def test_the_pinned_values_replace_what_differs():
    assert pinned_environment({}, avx2=True) == PINNED
    env = {**PINNED, "ATEN_CPU_CAPABILITY": "avx512", "OPENBLAS_CORETYPE": "SkylakeX"}
    assert pinned_environment(env, avx2=True) == {"ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell"}
    assert pinned_environment(PINNED, avx2=True) == {} and is_pinned(PINNED) and not is_pinned({})


def test_native_and_machines_without_avx2_keep_their_own():
    assert pinned_environment({"DP3D_CPU_DISPATCH": "native"}, avx2=True) == {}
    assert pinned_environment({}, avx2=False) == {}
    with pytest.raises(InputError, match="DP3D_CPU_DISPATCH = 'fast': allowed 'pinned'"):
        pinned_environment({"DP3D_CPU_DISPATCH": "fast"}, avx2=True)


def test_avx2_read_from_the_processor_flags():
    assert has_avx2(CPUINFO, "x86_64")
    assert not has_avx2(CPUINFO.replace(" avx2", ""), "x86_64")
    assert not has_avx2(CPUINFO, "aarch64")


def test_nothing_pinned_once_a_numerical_library_is_loaded():
    """In this test process numpy is loaded: pinning now would split it (native) from the workers it starts."""
    import numpy  # noqa: F401

    env = {}
    assert pin_cpu_dispatch(env) == {} and env == {}


needs_avx2 = pytest.mark.skipif(not has_avx2(), reason="the pinned dispatch needs an x86-64 processor with AVX2")


@needs_avx2
def test_a_stage_process_starts_pinned_and_its_children_inherit_it():
    code = ("import stages, os, subprocess, sys\n"
            "print(os.environ['OPENBLAS_CORETYPE'], os.environ['ATEN_CPU_CAPABILITY'])\n"
            "import torch\nprint(torch.backends.cpu.get_cpu_capability())\n"
            "subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"NPY_DISABLE_CPU_FEATURES\"])'])")
    env = {k: v for k, v in os.environ.items() if k not in PINNED} | {"PYTHONPATH": str(ROOT),
                                                                       "ATEN_CPU_CAPABILITY": "avx512"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["Haswell avx2", "AVX2", PINNED["NPY_DISABLE_CPU_FEATURES"]]


def _stage_bytes(tmp: Path, env_extra: dict[str, str], lbo: bool = True) -> dict[str, str]:
    """sha256 of the template and (``lbo``) lbo stages' outputs, run as DVC runs them (``python -m stages.NAME``)
    with ``env_extra`` standing for another processor's kernel choice."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED and k != "DP3D_CPU_DISPATCH"}
    env |= {"PYTHONPATH": str(ROOT), **env_extra}
    tmp.mkdir()
    cmds = [["stages.template", "--out", "t.npz", "--png", "t.png"],
            ["stages.lbo", "--template", "t.npz", "--out", "l.npz", "--png", "l.png"]][:2 if lbo else 1]
    for cmd in cmds:
        run = subprocess.run([sys.executable, "-m", *cmd, "--params", str(ROOT / "params.yaml")], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    return {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest() for name in ("t.npz", "l.npz")[:len(cmds)]}


@needs_avx2
@pytest.mark.slow
def test_the_geometry_stages_give_the_same_bytes_whatever_kernels_the_machine_would_pick(tmp_path):
    """AVX-512 kernels everywhere (what this kind of machine picks) against the AVX2 ones: the same bytes, pinned;
    with DP3D_CPU_DISPATCH=native two OpenBLAS kernels already change data/template.npz (the test can see it)."""
    avx512 = {"OPENBLAS_CORETYPE": "SkylakeX", "ATEN_CPU_CAPABILITY": "avx512", "NPY_DISABLE_CPU_FEATURES": ""}
    avx2 = {"OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2"}
    assert _stage_bytes(tmp_path / "a", avx512) == _stage_bytes(tmp_path / "b", avx2)
    native = {"DP3D_CPU_DISPATCH": "native"}
    assert (_stage_bytes(tmp_path / "c", native | {"OPENBLAS_CORETYPE": "Prescott"}, lbo=False)["t.npz"]
            != _stage_bytes(tmp_path / "d", native | avx2, lbo=False)["t.npz"])


@needs_avx2
def test_the_test_processes_compute_with_the_stages_kernels():
    """tests/conftest.py pins before numpy loads (pyproject's addopts keep zarr's plugin from loading it first): an
    in-process result is then a stage's, and one cache of Anny's model data serves both."""
    if os.environ.get("DP3D_CPU_DISPATCH") == "native":
        pytest.skip("DP3D_CPU_DISPATCH=native: the machine's own kernels, asked for")
    import torch

    assert is_pinned() and torch.backends.cpu.get_cpu_capability() == "AVX2"
