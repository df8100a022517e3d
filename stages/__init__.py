"""The stage scripts (``python -m stages.NAME``), one per DVC stage. Importing this package pins the CPU kernel
dispatch before any numerical library loads, so that every stage computes the same bytes on any x86 machine
with AVX2 (:mod:`pipeline.core.dispatch`)."""

from pipeline.core.dispatch import pin_cpu_dispatch

pin_cpu_dispatch()
