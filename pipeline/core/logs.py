"""Logging and progress bars, the same in every stage."""

from __future__ import annotations

import logging
import os


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
