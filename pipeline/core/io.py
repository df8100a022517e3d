"""Atomic, all-or-nothing, byte-deterministic file output shared by every stage.

A stage never leaves an output that looks complete unless the whole stage succeeded:

* every file or folder is written under a temporary name beside its destination
  (``.NAME.XXXX.tmp``) by :func:`atomic_path`;
* inside :func:`stage_outputs` (every stage script runs in one), a finished output is not renamed
  onto its name but parked as ``.NAME.staged``; when the stage's work ends without error, all
  staged outputs are renamed onto their names together. On an error, the staged outputs and any
  output left by an earlier run are removed;
* a stage killed with ``SIGKILL`` leaves only ``.NAME.*.tmp`` and ``.NAME.staged`` entries (git-ignored);
  the next run of the stage sweeps them before it starts;
* work that may be resumed (training's checkpoint and curves) lives as ``.NAME.partial`` until the
  stage ends: a kept output of an earlier run is moved there when the next run starts, not removed.

Outputs are byte-identical across runs with the same inputs: ``.npz`` archives carry a fixed
timestamp and PNGs carry no time or software stamp.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError

__all__ = ["atomic_path", "stage_outputs", "StageOutputs", "written", "partial_path", "publish_partial", "remove_path",
           "save_npz",
           "load_npz", "save_figure", "save_json"]

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def remove_path(path: Path) -> None:
    """Removes a file, link or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def partial_path(path: str | Path) -> Path:
    """Where resumable work towards output ``path`` lives until the stage ends: ``.NAME.partial``."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"


def publish_partial(partial: Path, final: Path) -> None:
    """Moves finished work from its :func:`partial_path` onto its output name (staged inside a stage run)."""
    with atomic_path(final) as tmp:
        os.replace(partial, tmp)


class StageOutputs:
    """The outputs of one stage run, made visible together when the run ends cleanly.

    Use :func:`stage_outputs`; while it is open, :func:`atomic_path` parks each finished output
    listed here as ``.NAME.staged`` instead of renaming it onto ``NAME``.
    """

    def __init__(self, paths: list[Path], keep: list[Path] = ()):
        self.paths = [Path(os.path.abspath(p)) for p in paths]
        self.keep = {Path(os.path.abspath(p)) for p in keep}
        self.staged: dict[Path, Path] = {}

    @staticmethod
    def staging(path: Path) -> Path:
        """Where ``path`` waits for the end of the stage."""
        return path.parent / f".{path.name}.staged"

    def owns(self, path: str | Path) -> Path | None:
        """The declared output ``path`` is (absolute), or None."""
        p = Path(os.path.abspath(path))
        return p if p in self.paths else None

    def sweep(self) -> None:
        """Removes what an earlier (failed or killed) run left: temporaries, staged and final outputs.

        A kept output is moved to its partial name instead (unless a partial one is there already:
        the partial work of a later run started from it).
        """
        for p in self.paths:
            for leftover in p.parent.glob(f".{glob.escape(p.name)}.*.tmp"):
                remove_path(leftover)
            for done in (self.staging(p), p):  # a kept output, complete or staged, is where to resume from
                if p in self.keep and done.exists() and not partial_path(p).exists():
                    os.replace(done, partial_path(p))
                remove_path(done)

    def stage(self, path: Path, target: Path) -> None:
        """Parks the finished ``target`` (a temporary) as the staged version of output ``path``."""
        staged = self.staging(path)
        remove_path(staged)
        os.replace(target, staged)
        self.staged[path] = staged

    def commit(self) -> None:
        """Renames every staged output onto its name; every declared output must have been written."""
        missing = [str(p) for p in self.paths if p not in self.staged]
        if missing:
            raise RuntimeError(f"the stage finished without writing {', '.join(missing)}")
        for p in self.paths:
            remove_path(p)
            os.replace(self.staged[p], p)
        for p in self.keep:
            remove_path(partial_path(p))

    def abort(self) -> None:
        """Removes every staged output (and any output under its final name)."""
        for p in self.paths:
            remove_path(self.staging(p))
            remove_path(p)


_ACTIVE: list[StageOutputs] = []


@contextlib.contextmanager
def stage_outputs(*paths: str | Path, keep: tuple[str | Path, ...] = ()) -> Iterator[StageOutputs]:
    """Makes ``paths`` the all-or-nothing outputs of the enclosed block (a stage's work).

    On entry, leftovers of earlier runs are swept (their temporaries, staged copies and the outputs
    themselves; the outputs in ``keep`` are moved to :func:`partial_path` for the stage to resume
    from). On a clean exit every output is renamed onto its name and the partial work is removed;
    on an exception no output is left, and the partial work stays for a later run.
    """
    outputs = StageOutputs([Path(p) for p in paths], [Path(p) for p in keep])
    outputs.sweep()
    _ACTIVE.append(outputs)
    try:
        yield outputs
        _ACTIVE.pop()
        outputs.commit()
    except BaseException as e:
        if _ACTIVE and _ACTIVE[-1] is outputs:
            _ACTIVE.pop()
        outputs.abort()
        if isinstance(e, OSError) and e.errno is not None and not e.filename:  # e.g. a full disk in a Zarr write
            e.filename = ", ".join(str(p) for p in paths)
        raise


def _owner(path: str | Path) -> tuple[StageOutputs, Path] | None:
    """The innermost open :func:`stage_outputs` that declares ``path``, and ``path`` as it declares it."""
    for outputs in reversed(_ACTIVE):
        p = outputs.owns(path)
        if p is not None:
            return outputs, p
    return None


def written(path: str | Path) -> Path:
    """Where the output ``path`` can be read back now: its staged copy inside :func:`stage_outputs`."""
    found = _owner(path)
    if found is not None and found[1] in found[0].staged:
        return found[0].staged[found[1]]
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` if the block succeeds.

    Works for files and folders (Zarr stores). On an exception the temporary is removed and any
    previous ``path`` is left untouched. Inside :func:`stage_outputs`, an output of the stage is
    parked (staged) instead, and renamed with the others when the stage ends.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written to {path}")
        found = _owner(path)
        if found is not None:
            found[0].stage(found[1], target)
        else:
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
