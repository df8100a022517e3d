"""Atomic, byte-deterministic file output shared by every stage.

A stage never leaves a half-written output that looks complete: everything is written under a
temporary name in the destination's folder, then renamed over it in one step. Outputs are
byte-identical across runs with the same inputs: ``.npz`` archives carry a fixed timestamp and
PNGs carry no time or software stamp.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from pipeline.errors import InputError

__all__ = ["atomic_path", "save_npz", "load_npz", "save_figure", "save_json"]

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` if the block succeeds.

    Works for files and folders (Zarr stores). On an exception the temporary is removed and any
    previous ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written to {path}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes an ``.npz`` archive atomically with byte-identical content for identical arrays.

    ``numpy.savez`` stamps each member with the current time; this writer uses a fixed one.
    Members are stored in the given order, uncompressed (``np.load`` reads them as usual).
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, value in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())


def load_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Reads an ``.npz`` archive into a dict, checking that ``required`` keys are present.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a readable archive, or lacks a required key (both named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npz archive ({e})") from e
    missing = [k for k in required if k not in data]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    return data


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Saves a matplotlib figure as PNG atomically, without time or software metadata."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def save_json(path: str | Path, data: dict) -> None:
    """Writes a metrics JSON atomically, keys sorted, so files diff cleanly across runs."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
