"""What every stage script shares: how it runs, logs, shows progress, reports errors, fixes its thread
count and picks its torch device.

A stage script (``stages/NAME.py``) defines ``main(argv)`` and ends with
``sys.exit(cli(main))``. :func:`cli` sets up logging and runs ``main``; a :class:`UserError` (or an
operating-system error: missing file, full disk) is printed as one line, ``error: ...``, and the
process exits with status 2. Any other exception is a bug and keeps its traceback (status 1).
``DP3D_DEBUG=1`` shows the traceback of user errors too.

:func:`fix_threads` makes the numerics independent of the machine: torch's intra-op pool, the BLAS
and OpenMP pools (through ``threadpoolctl``) and OpenCV use the number of threads the params give,
not the number of cores, because parallel reductions sum in an order that depends on it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from pipeline.core.errors import InputError, UserError, describe_os_error

__all__ = ["cli", "fix_threads", "GEOMETRY_THREADS", "setup_logging", "progress", "resolve_device", "process_group",
           "mean_over_processes", "average_batchnorm"]

# the geometry stages (template, lbo) always use one thread: their outputs are then the same on
# every machine whatever its params, and they take seconds
GEOMETRY_THREADS = 1

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def fix_threads(n: int) -> None:
    """Makes torch, BLAS, OpenMP and OpenCV use ``n`` threads in this process and in processes it starts."""
    for name in _THREAD_VARIABLES:  # read by a library when it loads, here or in a spawned worker
        os.environ[name] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # the pools already loaded; libraries loaded later read the variables
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)


def cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Runs a stage's ``main``; returns the exit status (0 done, 2 user error, 1 bug)."""
    setup_logging()
    debug = os.environ.get("DP3D_DEBUG", "") not in ("", "0")
    try:
        main(argv)
        return 0
    except (UserError, OSError) as e:
        if debug:
            raise
        message = str(e) if isinstance(e, UserError) else describe_os_error(e)
    except KeyboardInterrupt:
        print("interrupted; the stage's outputs were removed", file=sys.stderr)
        return 130
    print(f"error: {message}", file=sys.stderr)
    print("(DP3D_DEBUG=1 shows where it happened)", file=sys.stderr)
    return 2


def setup_logging(level: str | None = None) -> None:
    """Plain ``logging`` to stderr; ``DP3D_LOG=DEBUG`` turns on details."""
    logging.basicConfig(level=(level or os.environ.get("DP3D_LOG", "INFO")).upper(),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("matplotlib", "PIL", "warp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress(iterable=None, *, desc: str, unit: str, total: int | None = None, initial: int = 0,
             enabled: bool = True, leave: bool = False):
    """A ``tqdm`` bar on stderr, drawn only on a terminal (and when ``enabled``); ``TQDM_DISABLE=1`` hides it."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, disable=None if enabled else True,
                leave=leave, dynamic_ncols=True)


def resolve_device(name: str) -> str:
    """The torch device a stage runs on: ``auto`` -> ``cuda`` when a GPU is present, else ``cpu``;
    ``cuda`` without a GPU is an error."""
    import torch  # not at import: the geometry stages never load torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("common.device = cuda, but torch sees no CUDA device: set common.device to auto or cpu")
    if name not in ("cpu", "cuda"):
        raise InputError(f"common.device = {name!r}: allowed auto, cpu or cuda")
    return name


def process_group(name: str) -> tuple[str, int, int, int]:
    """This process's torch device (``common.device`` ``name``) and its (rank, world size, local rank).

    Alone: ``(device, 0, 1, 0)``. Under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes the GPU of
    its local rank and joins the process group (nccl on CUDA, gloo on CPU). On CPU, torch's
    deterministic algorithms are switched on.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(name)
    if world > 1:
        if device == "cuda":
            torch.cuda.set_device(local_rank)
            device = f"cuda:{local_rank}"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return device, rank, world, local_rank


def mean_over_processes(value, world: int) -> float:
    """A tensor's value averaged over the ``torchrun`` processes (alone: its own value)."""
    import torch.distributed as dist

    value = value.detach().clone()
    if world > 1:
        dist.all_reduce(value)
        value /= world
    return float(value)


def average_batchnorm(module, world: int) -> None:
    """Averages ``module``'s BatchNorm running statistics over the ``torchrun`` processes: each process
    updated them on its own slices of the batches."""
    import torch.distributed as dist

    for name, buf in module.named_buffers():
        if "running_" in name:
            dist.all_reduce(buf)
            buf /= world
