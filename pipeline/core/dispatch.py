"""One CPU kernel dispatch for every x86 machine, so that a stage's bytes do not depend on the processor.

Numerical libraries pick their kernels by the processor's instruction set when they load: OpenBLAS (numpy's
and scipy's linear algebra: the template's charts and the LBO basis) picks a SkylakeX, Zen or Haswell kernel,
numpy its AVX-512 or AVX2 loops, torch its AVX-512 or AVX2 ATen kernels, MKL and oneDNN theirs, and Warp
compiles the renderer's CPU kernels for the host (``-march=native``). Each choice sums in its own order, so two
processors of one kind of machine give different last bits (``data/template.npz`` differs with OpenBLAS's
kernel alone) and every later output follows. Same-machine reruns were always identical.

:func:`pin_cpu_dispatch` sets the libraries' own switches to the x86-64-v3 level (AVX2 + FMA: every x86
server and desktop since 2015) before any of them loads; ``stages/__init__.py`` calls it first thing, so every
stage process, and the torchrun and Dask processes it starts, computes with the same kernels on any x86 machine
with AVX2. ``DP3D_CPU_DISPATCH=native`` leaves the machine's own choice (faster on AVX-512, bytes no longer
shared). Not covered: processors without AVX2 and other architectures (ARM, Apple): their bytes differ
(docs/reliability.md, "One lock for every machine").
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import MutableMapping

__all__ = ["PINNED", "WARP_MARCH", "LOADED_TOO_EARLY", "pinned_environment", "pin_cpu_dispatch", "is_pinned",
           "has_avx2", "start_warp"]

# each library's own switch, to the x86-64-v3 (AVX2) level
PINNED = {
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's OpenBLAS kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's own SIMD loops above AVX2
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's vectorised ATen kernels
    "MKL_CBWR": "AVX2",  # torch's MKL (matmul, LAPACK): Intel's conditional numerical reproducibility
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # torch's oneDNN (the network's convolutions)
}
# Warp's CPU kernels (Anny's skinning, the synthetic renderer's ray casts) in place of -march=native (its
# compiler takes clang cc1 flags)
WARP_MARCH = "-target-cpu x86-64-v3"

# modules whose kernels are chosen when they load: once one is loaded, pinning would split this process (native)
# from the processes it starts (pinned)
LOADED_TOO_EARLY = ("numpy", "scipy", "torch", "warp", "cv2")


def has_avx2(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether this is an x86-64 processor with AVX2 and FMA (Linux: ``/proc/cpuinfo``'s flags; elsewhere
    unknown, so False)."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return False
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    return {"avx2", "fma"} <= set(flags)


def pinned_environment(environ: dict[str, str], avx2: bool) -> dict[str, str]:
    """The variables to set in ``environ`` to pin the dispatch (empty: leave it): nothing with
    ``DP3D_CPU_DISPATCH=native`` or without AVX2; else every :data:`PINNED` value that differs."""
    mode = environ.get("DP3D_CPU_DISPATCH", "pinned")
    if mode not in ("pinned", "native"):
        from pipeline.core.errors import InputError

        raise InputError(f"DP3D_CPU_DISPATCH = {mode!r}: allowed 'pinned' (the default) or 'native'")
    if mode == "native" or not avx2:
        return {}
    return {k: v for k, v in PINNED.items() if environ.get(k) != v}


def pin_cpu_dispatch(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Pins the kernel dispatch of this process and the ones it starts (:data:`PINNED`); returns what it set.
    Does nothing once a numerical library is loaded (a test importing a stage, say): the libraries would keep
    their kernels while the processes they start took the pinned ones."""
    environ = os.environ if environ is None else environ
    if any(name in sys.modules for name in LOADED_TOO_EARLY):
        return {}
    changes = pinned_environment(dict(environ), has_avx2())
    environ.update(changes)
    return changes


def is_pinned(environ: dict[str, str] | None = None) -> bool:
    """Whether this process runs with the pinned dispatch (every :data:`PINNED` value set)."""
    environ = os.environ if environ is None else environ
    return all(environ.get(k) == v for k, v in PINNED.items())


# what NVIDIA Warp's C library prints when a machine has no CUDA driver: a CPU machine is a supported one
_WARP_NO_DRIVER = "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver"


def start_warp():
    """NVIDIA Warp (Anny's skinning, the synthetic renderer's ray casts) initialised without its greeting and,
    on a machine without a CUDA driver, without the driver warning its C library writes to stderr (which a
    newcomer takes for an error); anything else the initialisation writes passes through. With the pinned CPU
    dispatch (:func:`pin_cpu_dispatch`) its CPU kernels are compiled for x86-64-v3, not the host. Returns
    ``warp``. Call it before ``import anny`` (Anny initialises Warp when imported)."""
    import tempfile

    import warp as wp
    import warp._src.context as context

    wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)
    if is_pinned() and "-march=native" in (wp.config.cpu_compiler_flags or ""):
        wp.config.cpu_compiler_flags = wp.config.cpu_compiler_flags.replace("-march=native", WARP_MARCH)
    if context.runtime is not None:
        return wp
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            wp.init()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    rest = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith(_WARP_NO_DRIVER))
    if rest.strip():
        sys.stderr.write(rest)
    return wp
