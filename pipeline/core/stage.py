"""What every stage script shares: how it runs, reports errors and fixes its thread count.

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

import os
import sys
from collections.abc import Callable

from pipeline.core.errors import UserError, describe_os_error
from pipeline.core.logs import setup_logging

__all__ = ["cli", "fix_threads", "GEOMETRY_THREADS"]

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
