"""The paper's experiments as DVC experiments: ``python scripts/paper_experiments.py --help``. The code, and
the experiments to edit, are the package ``experiments/`` (its ``__init__`` documents the commands)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/paper_experiments.py` from anywhere
    sys.path.insert(0, str(ROOT))

from experiments.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
