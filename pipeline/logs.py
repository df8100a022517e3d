"""Logging set-up shared by the stage scripts."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    """Plain ``logging`` to stderr; ``DP3D_LOG=DEBUG`` turns on details."""
    logging.basicConfig(level=(level or os.environ.get("DP3D_LOG", "INFO")).upper(),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("matplotlib", "PIL", "warp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
