"""``python -m experiments ...``: the same command as ``python scripts/paper_experiments.py ...``."""

import sys

from experiments.cli import main

sys.exit(main())
