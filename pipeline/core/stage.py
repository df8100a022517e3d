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

__all__ = ["cli", "fix_threads", "GEOMETRY_THREADS", "setup_logging", "progress", "LineProgress", "PROGRESS_SECONDS",
           "resolve_device", "process_group", "mean_over_processes", "average_batchnorm"]

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
        print(f"interrupted; the stage's outputs were removed ({_restore_hint(main)})", file=sys.stderr)
        return 130
    print(f"error: {message}", file=sys.stderr)
    print(f"(the stage wrote no output; {_restore_hint(main)}; DP3D_DEBUG=1 shows where it happened)", file=sys.stderr)
    return 2


def _restore_hint(main: Callable) -> str:
    """How to get back the outputs of the stage whose ``main`` failed: ``dvc checkout <stage>``."""
    spec = getattr(sys.modules.get(main.__module__), "__spec__", None)  # "stages.train" also under python -m
    module = spec.name if spec is not None else main.__module__
    target = f" {module.removeprefix('stages.')}" if module.startswith("stages.") else ""
    return f"`dvc checkout{target}` restores the previous outputs from the DVC cache"


def setup_logging(level: str | None = None) -> None:
    """Plain ``logging`` to stderr; ``DP3D_LOG=DEBUG`` turns on details."""
    logging.basicConfig(level=(level or os.environ.get("DP3D_LOG", "INFO")).upper(),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("matplotlib", "PIL", "warp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# seconds between two progress lines when stderr is not a terminal (DVC, CI, a log file)
PROGRESS_SECONDS = 30.0


def progress(iterable=None, *, desc: str, unit: str, total: int | None = None, initial: int = 0,
             enabled: bool = True, leave: bool = False):
    """Progress of a long loop on stderr: a ``tqdm`` bar on a terminal; elsewhere (``dvc repro``, CI, a log file)
    a plain line at least every :data:`PROGRESS_SECONDS` (``DP3D_PROGRESS_SECONDS`` overrides it) with the count,
    the rate and the time left. Nothing when not ``enabled`` (e.g. a non-writer rank) or with ``TQDM_DISABLE=1``."""
    quiet = not enabled or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    if not quiet and not sys.stderr.isatty():
        seconds = float(os.environ.get("DP3D_PROGRESS_SECONDS", PROGRESS_SECONDS))
        return LineProgress(iterable, desc=desc, unit=unit, total=total, initial=initial, every=seconds)
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, disable=True if quiet else None,
                leave=leave, dynamic_ncols=True)


def _duration(seconds: float) -> str:
    """``"1 h 02 min"``, ``"3 min 05 s"`` or ``"12 s"``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


class LineProgress:
    """The part of ``tqdm``'s interface the stages use (``update``, ``set_postfix``, ``close``, iteration, ``with``),
    written as a log line every ``every`` seconds: ``train: 120/400 step (30 %), 2.1 step/s, 2 min 13 s left,
    loss=0.1234``; a last line when it closes, if it wrote any before and the count moved since."""

    def __init__(self, iterable=None, *, desc: str, unit: str, total: int | None = None, initial: int = 0,
                 every: float = PROGRESS_SECONDS, clock: Callable[[], float] | None = None):
        import time

        self.iterable, self.desc, self.unit, self.total = iterable, desc, unit, total
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self.total = len(iterable)
        self.n = self.start_n = initial
        self.every, self.clock = every, clock or time.monotonic
        self.start = self.last = self.clock()
        self.postfix, self.closed, self.written_n = "", False, None  # written_n: the count last written
        self.log = logging.getLogger("progress")

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self._write(now)

    def line(self, now: float) -> str:
        """The progress line at time ``now``."""
        done = self.n - self.start_n
        rate = done / max(now - self.start, 1e-9)
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f} %)"
        parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.3g} s/{self.unit}")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        elif self.n >= (self.total or float("inf")):
            parts.append(f"done in {_duration(now - self.start)}")
        return ", ".join(parts + ([self.postfix] if self.postfix else []))

    def _write(self, now: float) -> None:
        self.written_n = self.n
        self.log.info("%s", self.line(now))

    def close(self) -> None:
        if not self.closed and self.written_n not in (None, self.n):
            self._write(self.clock())
        self.closed = True


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
