"""Atomic, all-or-nothing, byte-deterministic file output shared by every stage.

A stage never leaves an output that looks complete unless the whole stage succeeded:

* every file or folder is written under a temporary name beside its destination
  (``.NAME.XXXX.tmp``) by :func:`atomic_path`;
* inside :func:`stage_outputs` (every stage script runs in one), a finished output is not renamed
  onto its name but parked as ``.NAME.staged``; when the stage's work ends without error, all
  staged outputs are renamed onto their names together. On an error, the staged outputs and any
  output left by an earlier run (but a kept one, below) are removed;
* a stage killed with ``SIGKILL`` leaves only ``.NAME.*.tmp`` and ``.NAME.staged`` entries (git-ignored);
  the next run of the stage sweeps them before it starts;
* work that may be resumed (training's checkpoint and curves) lives as ``.NAME.partial`` until the
  stage ends. Such a *kept* output of an earlier run (a finished model) stays under its name, through a
  failed or killed run, until the run that replaces it succeeds; its staged copy left by a killed run
  becomes the partial work to resume from.

Outputs are byte-identical across runs with the same inputs: ``.npz`` archives carry a fixed
timestamp and PNGs carry no time or software stamp.
"""

from __future__ import annotations

import contextlib
import errno
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
           "trim_curves", "resume_curves", "save_npz", "load_npz", "save_figure", "save_json"]

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def remove_path(path: Path) -> None:
    """Removes a file, link or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def _writable(output: Path) -> Iterator[None]:
    """Makes a write or removal refused while making ``output`` (permissions, a read-only file system) an
    error naming ``output`` (absolute) and saying which folder is not writable, instead of the file the
    system names (a temporary, or a bare ``zarr.json`` from inside an earlier store being removed)."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        out = Path(os.path.abspath(output))
        if e.errno == errno.EROFS:
            why = f"its folder {out.parent} is on a read-only file system"
        elif not os.access(out.parent, os.W_OK):
            why = f"its folder {out.parent} is not writable"
        else:
            why = f"the earlier {out.name} there cannot be replaced: it or something in it is not writable"
        raise type(e)(e.errno, f"{e.strerror}: cannot write it, {why}", str(out)) from e


def partial_path(path: str | Path) -> Path:
    """Where resumable work towards output ``path`` lives until the stage ends: ``.NAME.partial``."""
    path = Path(path)
    return path.parent / f".{path.name}.partial"


def publish_partial(partial: Path, final: Path) -> None:
    """Moves finished work from its :func:`partial_path` onto its output name (staged inside a stage run)."""
    with atomic_path(final) as tmp:
        os.replace(partial, tmp)


def trim_curves(live_dir: str | Path, step: int) -> None:
    """Drops the rows past ``step`` from the curves of a dvclive folder (``plots/metrics/**/*.tsv``).

    A run resumed from its checkpoint at ``step`` logs the later steps again: what a killed run logged
    after its last checkpoint goes (a row cut short by the kill too), so the curves equal those of an
    uninterrupted run. Each file is rewritten atomically; a file without a ``step`` column is left alone.
    """
    def before(row: str, col: int) -> bool:
        fields = row.rstrip("\n").split("\t")
        return row.endswith("\n") and len(fields) > col and fields[col].isdigit() and int(fields[col]) <= step

    for tsv in sorted((Path(live_dir) / "plots" / "metrics").rglob("*.tsv")):
        lines = tsv.read_text(encoding="utf-8").splitlines(keepends=True)
        header = lines[0].rstrip("\n").split("\t") if lines else []
        if "step" not in header:
            continue
        keep = lines[:1] + [row for row in lines[1:] if before(row, header.index("step"))]
        if keep != lines:
            with atomic_path(tsv) as tmp:
                tmp.write_text("".join(keep), encoding="utf-8")


def resume_curves(partial: Path, final: Path, step: int) -> None:
    """Readies the dvclive folder ``partial`` for a run resumed at ``step``: :func:`trim_curves`, after copying
    the finished curves ``final`` there if no partial ones exist (a finished model trained further; ``final``
    stays until the run ends)."""
    if not partial.exists() and final.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        try:
            shutil.copytree(final, tmp / final.name)
            os.replace(tmp / final.name, partial)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    trim_curves(partial, step)


class StageOutputs:
    """The outputs of one stage run, made visible together when the run ends cleanly.

    Use :func:`stage_outputs`; while it is open, :func:`atomic_path` parks each finished output
    listed here as ``.NAME.staged`` instead of renaming it onto ``NAME``. A *kept* output (``keep``:
    a trained model) of an earlier run stays under its name until this run's replaces it.
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

    def _drop(self, p: Path) -> None:
        """Removes the staged copy of output ``p`` and ``p`` itself; a kept output stays under its name and its
        staged copy becomes its partial work (where to resume from) unless partial work is there already."""
        staged = self.staging(p)
        if p in self.keep and staged.exists() and not partial_path(p).exists():
            os.replace(staged, partial_path(p))
        remove_path(staged)
        if p not in self.keep:
            remove_path(p)

    def sweep(self) -> None:
        """Removes what an earlier (failed or killed) run left: temporaries, staged and final outputs.

        A kept output stays under its name (an earlier run's finished one, until this run's replaces
        it), and its staged copy becomes its partial work (:meth:`_drop`).
        """
        for p in self.paths:
            with _writable(p):
                for leftover in p.parent.glob(f".{glob.escape(p.name)}.*.tmp"):
                    remove_path(leftover)
                self._drop(p)

    def stage(self, path: Path, target: Path) -> None:
        """Parks the finished ``target`` (a temporary) as the staged version of output ``path``."""
        staged = self.staging(path)
        remove_path(staged)
        os.replace(target, staged)
        self.staged[path] = staged

    def commit(self) -> None:
        """Renames every staged output onto its name; every declared output must have been written.

        A file replaces its predecessor in one rename, so a file output is never missing; a folder
        output's predecessor is first moved aside (``.NAME.XXXX.tmp``, swept by the next run).
        """
        missing = [str(p) for p in self.paths if p not in self.staged]
        if missing:
            raise RuntimeError(f"the stage finished without writing {', '.join(missing)}")
        for p in self.paths:
            with _writable(p):
                _replace(self.staged[p], p)
        for p in self.keep:
            remove_path(partial_path(p))

    def abort(self) -> None:
        """Removes every staged output (a kept one's becomes partial work) and any output under its final
        name but a kept one (an earlier run's, still the last finished)."""
        for p in self.paths:
            self._drop(p)


def _replace(src: Path, dst: Path) -> None:
    """Renames ``src`` onto ``dst``: one atomic rename for files; an existing folder is moved aside first."""
    if (dst.is_dir() and not dst.is_symlink()) or (src.is_dir() and dst.exists()):
        aside = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
        try:
            os.replace(dst, aside / dst.name)
            try:
                os.replace(src, dst)
            except BaseException:
                os.replace(aside / dst.name, dst)  # the predecessor stays
                raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(src, dst)


_ACTIVE: list[StageOutputs] = []


@contextlib.contextmanager
def stage_outputs(*paths: str | Path, keep: tuple[str | Path, ...] = ()) -> Iterator[StageOutputs]:
    """Makes ``paths`` the all-or-nothing outputs of the enclosed block (a stage's work).

    On entry, leftovers of earlier runs are swept (their temporaries, staged copies and the outputs
    themselves). The outputs in ``keep`` (a trained model, its curves) are not removed: an earlier
    run's stays under its name until this run's replaces it, and a staged copy left by a killed run
    is moved to :func:`partial_path` for the stage to resume from. On a clean exit every output is
    renamed onto its name and the partial work is removed; on an exception no output of this run is
    left (a kept one keeps its earlier version), and the partial work stays for a later run.
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
    with _writable(path):  # a read-only folder: an error naming the output, not the temporary
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"nothing was written to {path}")
        found = _owner(path)
        with _writable(path):
            if found is not None:
                found[0].stage(found[1], target)
            else:
                _replace(target, path)
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
