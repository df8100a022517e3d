"""Zarr v3 stores of per-instance arrays, written atomically and deterministically.

Every per-instance array shares its first axis ``n`` (instances). Arrays are chunked along ``n``
only (``chunk`` instances a chunk), compressed with Blosc/LZ4 and grouped into shards of
``chunk * chunks_per_shard`` instances, so an array is a handful of files (DVC hashes every file of
an output). Every shard is written, even one holding only the fill value, and every chunk carries a
CRC32C checksum (as the shard index does), so a deleted, truncated or damaged file is detected. The
group attributes record the schema name and version, the template's content hash and the params
that made the store.

Writing goes through :class:`StoreWriter`: the store is built under a temporary name next to its
destination and renamed onto it only when :meth:`StoreWriter.close` succeeds, so a killed stage
never leaves a complete-looking half store. Rows are buffered and written a whole shard at a time.

Reading goes through :func:`open_store`, which checks, before any data is read, the schema, the
template, the arrays (present, of the documented dtype and per-instance shape, one length) and that
every shard file exists and is not empty (in stores written before every shard was: only that
none is empty); it returns a :class:`StoreGroup`, a read-only view of the
Zarr group whose arrays (:class:`StoreArray`) keep Zarr's indexing (``a[lo:hi]``, ``a[i]``,
``a.oindex[rows]``, ``a.get_orthogonal_selection(rows)``, ``a.shape``, ``a.chunks``, ...) but turn
a failed read (a damaged shard) into a :class:`StoreError` naming the store, the array, the
instances and the file, and refuse NaN or Inf read from the arrays declared finite. Every such
error says how to remake the store (``dvc repro -f STAGE``).

Every store of the pipeline carries the same per-instance record: the person's box, score, image and
split (:data:`INSTANCE_SPECS`) and, for synthetic data, the ground truth under ``gt/``
(:func:`truth_specs`); the arrays of :data:`FINITE` are never NaN or Inf. Each store's own layout is
documented in the read side of the stage that writes it (``pipeline/<stage>/store.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path

__all__ = ["StoreWriter", "write_store", "open_store", "StoreError", "StoreMissingError", "MissingArrayError",
           "StoreGroup", "StoreArray", "Layout", "INSTANCE_SPECS", "truth_specs", "FINITE", "SPLIT_TRAIN",
           "SPLIT_TEST"]

DEFAULT_CHUNK = 256
DEFAULT_CHUNKS_PER_SHARD = 8


# per-instance shape and dtype of each array a store may hold; a dimension is a size or a symbol
# ("N", "S", ...) that must take the same size in every array of the store
Layout = Mapping[str, tuple[tuple[int | str, ...], str]]

# The record every store holds for each instance: box x0, y0, x1, y1 (image pixels), detection score
# (1 for synthetic), index into the ``images`` attribute, split (SPLIT_TRAIN or SPLIT_TEST).
INSTANCE_SPECS = {"box": ((4,), "float32"), "score": ((), "float32"), "image": ((), "int32"), "split": ((), "uint8")}
SPLIT_TRAIN, SPLIT_TEST = 0, 1
# float arrays never NaN or Inf when written (U, V and embeddings are NaN where missing), in every store
FINITE = ("box", "score", "gt/vertices", "gt/joints", "gt/camera")


def truth_specs(n_vertices: int | str, n_joints: int | str, crop: int | str) -> dict:
    """Per-instance shapes and dtypes of the synthetic ground truth ``gt/...`` (documented with
    ``densepose.zarr``, :mod:`pipeline.densepose.store`): N = ``n_vertices``, J = ``n_joints``, S = ``crop``
    (sizes or symbols)."""
    n, s = n_vertices, crop
    return {"gt/vertices": ((n, 3), "float32"), "gt/visible": ((n,), "bool"), "gt/occluded": ((n,), "bool"),
            "gt/joints": ((n_joints, 3), "float32"), "gt/iuv": ((s, s, 3), "uint8"), "gt/depth": ((s, s), "float32"),
            "gt/camera": ((3,), "float32"), "gt/body": ((), "int32"), "gt/mode": ((), "int8")}


class StoreError(UserError, ValueError):
    """A store is missing, damaged, of another schema, template or layout, or lacks an array."""


class StoreMissingError(StoreError, FileNotFoundError):
    """No store at the path (not written yet, or removed)."""


class MissingArrayError(StoreError, KeyError):
    """A store lacks an array that is read."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _compressors() -> tuple:
    # lz4 with byte shuffle: within a few % of zstd's ratio on these arrays at ~10x its speed, so
    # compression never bounds a stage (measured on the synthetic store: 800 vs 50 MB/s); CRC32C
    # (4 bytes a chunk, GB/s) makes a damaged chunk an error instead of wrong values
    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec()


class StoreWriter:
    """Writes a store of per-instance arrays of known total length ``n``.

    Usage::

        with StoreWriter.create("data/x.zarr", n, {"xy": ((N, 2), "float32")}, attrs) as w:
            for batch in batches:
                w.write(start, {"xy": batch_xy})       # rows start..start+len(batch)

    Rows may be written in any order and batch size; every row of every array must be written
    exactly once (checked at close). Arrays whose name contains "/" go into subgroups (``gt/iuv``).

    When the number of rows is only known at the end (instances dropped on the way), create the
    writer with an upper bound ``n``, add rows with :meth:`append` and the store is cut to the rows
    appended when it closes (an empty result is an error: no empty store is ever written). Without an
    upper bound, :meth:`reserve` grows the arrays as rows come (the chunk stays the one ``n`` gave), and
    :meth:`drop` removes an array that turns out not to belong in the store. The bytes are those of a
    store created with the final length.
    """

    def __init__(self, tmp: Path, n: int, specs: Mapping[str, tuple[tuple[int, ...], str]], attrs: dict,
                 chunk: int, chunks_per_shard: int):
        if n < 1:
            raise StoreError(f"a store needs at least one instance, got n = {n}")
        self.n = n
        self.root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        self.root.attrs.update(attrs)
        chunk = max(1, min(chunk, n))
        shard = chunk * chunks_per_shard
        self.shard = shard
        self.arrays: dict[str, zarr.Array] = {}
        self.buffers: dict[str, dict[int, np.ndarray]] = {}
        self.written: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in specs.items():
            full = (n, *shape)
            self.arrays[name] = self.root.create_array(
                name, shape=full, dtype=dtype, chunks=(chunk, *shape), shards=(shard, *shape),
                compressors=_compressors(), fill_value=0, dimension_names=None,
                config={"write_empty_chunks": True})  # every shard exists: a missing one is an error
            self.buffers[name] = {}
            self.written[name] = np.zeros(n, dtype=bool)
        self.appended: int | None = None

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: str | Path, n: int, specs: Mapping[str, tuple[tuple[int, ...], str]], attrs: dict,
               chunk: int = DEFAULT_CHUNK, chunks_per_shard: int = DEFAULT_CHUNKS_PER_SHARD) -> Iterator["StoreWriter"]:
        """Opens a writer on a temporary store that becomes ``path`` when the block ends cleanly.

        Args:
            n: number of instances. specs: name -> (per-instance shape, dtype).
            attrs: group attributes (JSON-serialisable).
        """
        with atomic_path(path) as tmp:
            w = cls(tmp, n, specs, attrs, chunk, chunks_per_shard)
            yield w
            w.close()

    def write(self, start: int, rows: Mapping[str, np.ndarray]) -> None:
        """Writes ``rows[name][i]`` to instance ``start + i`` of each named array."""
        for name, block in rows.items():
            if name not in self.arrays:
                raise StoreError(f"unknown array {name!r}; declared: {', '.join(self.arrays)}")
            arr = self.arrays[name]
            block = np.asarray(block)
            if block.shape[1:] != arr.shape[1:]:
                raise StoreError(f"array {name!r}: rows of shape {block.shape[1:]}, expected {arr.shape[1:]}")
            stop = start + len(block)
            if start < 0 or stop > self.n:
                raise StoreError(f"array {name!r}: rows {start}..{stop} outside 0..{self.n}")
            if self.written[name][start:stop].any():
                raise StoreError(f"array {name!r}: rows {start}..{stop} written twice")
            self.written[name][start:stop] = True
            buf = self.buffers[name]
            for i in range(start, stop):
                buf[i] = block[i - start]
            self._flush_full(name)

    def append(self, rows: Mapping[str, np.ndarray]) -> None:
        """Writes ``rows`` after the rows appended so far (every array at once)."""
        lengths = {len(np.asarray(v)) for v in rows.values()}
        if len(lengths) != 1 or set(rows) != set(self.arrays):
            raise StoreError(f"append needs equally long rows for every array ({', '.join(self.arrays)})")
        start = self.appended or 0
        self.write(start, rows)
        self.appended = start + lengths.pop()

    def reserve(self, n: int) -> None:
        """Room for at least ``n`` rows: grows every array (and its record of rows written) to ``n`` when shorter."""
        if n <= self.n:
            return
        for name, arr in self.arrays.items():
            arr.resize((n, *arr.shape[1:]))
            self.written[name] = np.concatenate([self.written[name], np.zeros(n - self.n, dtype=bool)])
        self.n = n

    def drop(self, name: str) -> None:
        """Removes array ``name`` and the rows written to it (an array only some of the instances have)."""
        del self.root[name]
        for table in (self.arrays, self.buffers, self.written):
            table.pop(name)

    def _flush_full(self, name: str, final: bool = False) -> None:
        buf = self.buffers[name]
        for s0 in sorted({i // self.shard * self.shard for i in buf}):
            s1 = min(s0 + self.shard, self.n)
            if all(i in buf for i in range(s0, s1)) or final:
                idx = [i for i in range(s0, s1) if i in buf]
                if not idx:
                    continue
                lo, hi = idx[0], idx[-1] + 1
                if len(idx) == hi - lo:
                    self.arrays[name][lo:hi] = np.stack([buf.pop(i) for i in idx])
                else:  # pragma: no cover - only on a failing run, close() then raises
                    for i in idx:
                        self.arrays[name][i] = buf.pop(i)

    def set_attrs(self, **attrs) -> None:
        """Adds group attributes (e.g. counts known only at the end)."""
        self.root.attrs.update(attrs)

    def close(self) -> None:
        if self.appended is not None:
            if self.appended == 0:
                raise StoreError("no instance was written: refusing to write an empty store")
            for name, arr in self.arrays.items():
                self._flush_full(name, final=True)
                arr.resize((self.appended, *arr.shape[1:]))
                self.written[name] = self.written[name][: self.appended]
            self.n = self.appended
        for name in self.arrays:
            self._flush_full(name, final=True)
            missing = np.flatnonzero(~self.written[name])
            if len(missing):
                raise StoreError(f"array {name!r}: {len(missing)} rows never written (first: {missing[0]})")


def write_store(path: str | Path, arrays: Mapping[str, np.ndarray], attrs: dict, **kw) -> None:
    """Writes whole in-memory arrays (all sharing their first axis) as a store."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise StoreError(f"arrays must share their first axis, got lengths {sorted(lengths)}")
    n = lengths.pop()
    specs = {k: (v.shape[1:], v.dtype.str) for k, v in arrays.items()}
    with StoreWriter.create(path, n, specs, attrs, **kw) as w:
        w.write(0, arrays)


# --- reading -------------------------------------------------------------------------------------


class _Origin:
    """Where a store lives and which stage writes it: what every read error names."""

    def __init__(self, path: Path, stage: str | None):
        self.path, self.stage = path, stage

    @property
    def fix(self) -> str:
        cmd = f"dvc repro -f {self.stage}" if self.stage else "dvc repro -f <the stage that writes it>"
        return f"rerun the stage that writes it: `{cmd}`"


def _first_index(selection: Any) -> Any:
    """The index of the first axis (instances) in a Zarr selection."""
    if isinstance(selection, tuple):
        return selection[0] if selection else Ellipsis
    return selection


def _rows(first: Any, n: int) -> np.ndarray | None:
    """The instances (1-D int64) read by first-axis index ``first`` of an array of ``n``, or None if unknown."""
    if first is Ellipsis:
        return np.arange(n)
    if isinstance(first, slice):
        return np.arange(*first.indices(n))
    if isinstance(first, (int, np.integer)) and not isinstance(first, (bool, np.bool_)):
        return np.array([first + n if first < 0 else first], np.int64)
    try:
        idx = np.asarray(first)
    except Exception:  # noqa: BLE001 - not an index Zarr knows either; the read raised already
        return None
    if idx.ndim == 1 and idx.dtype == bool:
        return np.flatnonzero(idx)
    if idx.ndim == 1 and idx.dtype.kind in "iu":
        return np.where(idx < 0, idx + n, idx).astype(np.int64)
    return None


def _instances(rows: np.ndarray | None) -> str:
    """'at instance 5', 'at instances 5, 9, 11, 20, 21 and 2 more (7 in all)', or that they are unknown."""
    if rows is None or len(rows) == 0:
        return "at instances the selection does not tell"
    if len(rows) == 1:
        return f"at instance {rows[0]}"
    shown = ", ".join(str(r) for r in rows[:5])
    return f"at instances {shown}" + (f" and {len(rows) - 5} more ({len(rows)} in all)" if len(rows) > 5 else "")


class _OIndex:
    """``array.oindex[selection]``: orthogonal selection through the checks of :class:`StoreArray`."""

    def __init__(self, array: "StoreArray"):
        self._array = array

    def __getitem__(self, selection: Any) -> np.ndarray:
        return self._array.get_orthogonal_selection(selection)


class StoreArray:
    """A read-only array of a store opened by :func:`open_store`: Zarr's reads, with errors that say what to do.

    ``a[sel]``, ``a.get_basic_selection(sel)``, ``a.get_orthogonal_selection(sel)`` and ``a.oindex[sel]``
    read as Zarr does. A read that fails on a damaged file raises :class:`StoreError` naming the store,
    the array, the instances and the file; with ``finite``, NaN or Inf in what was read raises
    :class:`StoreError` naming the instances (checked on each block read, vectorised). Every other
    attribute (``shape``, ``dtype``, ``chunks``, ``shards``, ``attrs``, ...) is the Zarr array's; reads
    no stage uses (``vindex``, ``blocks``) are Zarr's, unchecked.
    """

    def __init__(self, array: zarr.Array, origin: _Origin, finite: bool = False):
        self._array, self._origin, self.finite = array, origin, finite

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._array, name)

    def __len__(self) -> int:
        return self._array.shape[0]

    def __repr__(self) -> str:
        return f"<StoreArray {self._array.path!r} of {self._origin.path} shape={self.shape} dtype={self.dtype}>"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.asarray(self[...])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, selection: Any) -> Any:
        return self._read(self._array.__getitem__, selection)

    def get_basic_selection(self, selection: Any = Ellipsis, **kw) -> Any:
        return self._read(lambda s: self._array.get_basic_selection(s, **kw), selection)

    def get_orthogonal_selection(self, selection: Any, **kw) -> Any:
        return self._read(lambda s: self._array.get_orthogonal_selection(s, **kw), selection)

    @property
    def oindex(self) -> _OIndex:
        return _OIndex(self)

    def _read(self, read: Callable[[Any], Any], selection: Any) -> Any:
        first = _first_index(selection)
        try:
            out = read(selection)
        except Exception as e:
            damaged = self._damaged(_rows(first, self.shape[0]))
            if not damaged:
                raise  # every shard it touches reads: a wrong selection, the caller's bug
            raise StoreError(f"{self._origin.path}: array {self._array.path!r} cannot be read: {'; '.join(damaged)}. "
                             f"The file is damaged or truncated; {self._origin.fix}") from e
        if self.finite:
            self._check_finite(out, first)
        return out

    def _damaged(self, rows: np.ndarray | None) -> list[str]:
        """One line per shard holding ``rows`` (None: any) that cannot be read: instances, file, error."""
        n = self._array.shape[0] if self._array.ndim else 0
        per = (self._array.shards or self._array.chunks or (1,))[0] if self._array.ndim else 1
        ids = range(-(-n // per)) if rows is None else np.unique(rows[(rows >= 0) & (rows < n)] // per)
        out = []
        for s in (int(i) for i in ids):
            lo, hi = s * per, min((s + 1) * per, n)
            try:
                self._array[lo:hi]
            except Exception as e:  # noqa: BLE001 - any failure of a whole-shard read is damage
                key = self._array.metadata.chunk_key_encoding.encode_chunk_key((s,) + (0,) * (self._array.ndim - 1))
                out.append(f"instances {lo}..{hi - 1} (file {self._origin.path / self._array.path / key}): "
                           f"{str(e).rstrip('.')}")
        return out

    def _check_finite(self, out: Any, first: Any) -> None:
        values = np.asarray(out)
        if values.dtype.kind != "f" or np.isfinite(values).all():
            return
        rows = _rows(first, self._array.shape[0])
        if isinstance(first, (int, np.integer)):
            bad = rows
        elif rows is not None and values.ndim >= 1 and len(rows) == values.shape[0]:
            bad = rows[~np.isfinite(values.reshape(len(rows), -1)).all(axis=1)]
        else:
            bad = None
        raise StoreError(f"{self._origin.path}: array {self._array.path!r} holds NaN or Inf {_instances(bad)}, "
                         f"which the stage never writes: the store is corrupt; {self._origin.fix}")


class StoreGroup:
    """A read-only store opened by :func:`open_store`: the Zarr group, whose arrays are :class:`StoreArray`.

    ``g[name]`` (``name`` may be a path, ``"gt/vertices"``), ``name in g``, ``g.attrs``,
    ``g.array_keys()``, ... behave as Zarr's; a missing array raises :class:`MissingArrayError`
    (a ``KeyError``) naming the store.
    """

    def __init__(self, group: zarr.Group, origin: _Origin, finite: frozenset[str] = frozenset()):
        self._group, self._origin, self._finite = group, origin, finite

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._group, name)

    def __repr__(self) -> str:
        return f"<StoreGroup {self._group.path or '/'} of {self._origin.path}>"

    @property
    def fix(self) -> str:
        """What to do about a damaged store: rerun the stage that writes it."""
        return self._origin.fix

    def __contains__(self, key: str) -> bool:
        return key in self._group

    def __iter__(self) -> Iterator[str]:
        return iter(self._group)

    def __getitem__(self, key: str) -> "StoreArray | StoreGroup":
        try:
            node = self._group[key]
        except KeyError:
            full = f"{self._group.path}/{key}" if self._group.path else key
            raise MissingArrayError(f"{self._origin.path}: no array {full!r} (it holds "
                                    f"{', '.join(sorted(self._group.array_keys())) or 'none'})") from None
        if isinstance(node, zarr.Array):
            return StoreArray(node, self._origin, node.path in self._finite)
        return StoreGroup(node, self._origin, self._finite)


def _open_group(origin: _Origin) -> zarr.Group:
    try:
        return zarr.open_group(str(origin.path), mode="r")
    except Exception as e:  # noqa: BLE001 - unreadable metadata, whatever Zarr makes of it
        raise StoreError(f"{origin.path / 'zarr.json'}: not the metadata of a Zarr store ({type(e).__name__}: "
                         f"{e}); {origin.fix}") from e


def _arrays(root: zarr.Group, origin: _Origin) -> dict[str, zarr.Array]:
    """Every array of the store by path (``gt/vertices``), reading each one's metadata."""
    try:
        return {name: node for name, node in root.members(max_depth=None) if isinstance(node, zarr.Array)}
    except Exception as e:  # noqa: BLE001 - unreadable metadata, whatever Zarr makes of it
        import json

        bad = []
        for f in sorted(origin.path.rglob("zarr.json")):
            try:
                json.loads(f.read_bytes())
            except (ValueError, OSError) as err:
                bad.append(f"{f} ({err})")
        what = "; ".join(bad) if bad else f"{type(e).__name__}: {e}"
        raise StoreError(f"{origin.path}: array metadata that cannot be read: {what}; {origin.fix}") from e


def _symbol_sizes(arrays: Mapping[str, zarr.Array], layout: Layout,
                  known: dict[str, int]) -> dict[str, tuple[int, str]]:
    """The size of each symbol of ``layout`` and where it comes from: ``known`` (the store's attributes),
    else the size most arrays give it."""
    votes: dict[str, list[int]] = {}
    for name, a in sorted(arrays.items()):
        shape = layout.get(name, ((),))[0]
        if a.ndim and len(shape) == a.ndim - 1:
            for size, want in zip(a.shape[1:], shape):
                if isinstance(want, str):
                    votes.setdefault(want, []).append(size)
    sizes = {k: (v, "the store's attributes") for k, v in known.items()}
    for sym, got in votes.items():
        if sym not in sizes:
            size = max(got, key=got.count)
            sizes[sym] = (size, f"{got.count(size)} array(s)")
    return sizes


def _check_layout(arrays: Mapping[str, zarr.Array], origin: _Origin, layout: Layout, known: dict[str, int]) -> None:
    """Raises StoreError listing every array of another length, dtype or per-instance shape than ``layout``.

    Args:
        known: sizes of symbols of ``layout`` (e.g. "S" from the ``crop`` attribute); the others take the
            size most arrays give them.
    """
    problems = []
    lengths = [a.shape[0] for a in arrays.values() if a.ndim]
    n = max(lengths, key=lengths.count) if lengths else 0
    sizes = _symbol_sizes(arrays, layout, known)
    for name, a in sorted(arrays.items()):
        if not a.ndim or a.shape[0] != n:
            problems.append(f"{name!r} has {a.shape[0] if a.ndim else 'no'} instances, the others {n}")
        if name not in layout:
            continue
        shape, dtype = layout[name]
        if np.dtype(a.dtype) != np.dtype(dtype):
            problems.append(f"{name!r} is {np.dtype(a.dtype)}, expected {np.dtype(dtype)}")
        got = tuple(a.shape[1:])
        want = tuple(sizes[d][0] if isinstance(d, str) else d for d in shape)
        if got != want:
            symbols = [d for d in dict.fromkeys(shape) if isinstance(d, str)]
            why = ", ".join(f"{d} = {sizes[d][0]} from {sizes[d][1]}" for d in symbols)
            problems.append(f"{name!r} has instances of shape {got}, expected {shape}" + (f" ({why})" if why else ""))
    if problems:
        raise StoreError(f"{origin.path}: not the layout of this store: {'; '.join(problems)}; {origin.fix}")


def _writes_every_shard(a: zarr.Array) -> bool:
    """Whether :class:`StoreWriter` wrote the array with every shard: then its chunks carry CRC32C (older
    stores omitted shards holding only the fill value, so a missing one meant nothing)."""
    return any(isinstance(c, Crc32cCodec) for codec in a.metadata.codecs for c in getattr(codec, "codecs", ()))


def _check_shards(arrays: Mapping[str, zarr.Array], origin: _Origin) -> None:
    """Raises StoreError listing every shard file that is missing or empty (one stat a file, no read)."""
    problems = []
    for name, a in sorted(arrays.items()):
        if not a.ndim:
            continue
        every = _writes_every_shard(a)
        grid = a.shards or a.chunks
        per = grid[0]
        for coords in itertools.product(*(range(math.ceil(s / c)) for s, c in zip(a.shape, grid))):
            key = a.metadata.chunk_key_encoding.encode_chunk_key(coords)
            try:
                if (origin.path / a.path / key).stat().st_size == 0:
                    problems.append(f"{name}/{key} is empty")
            except FileNotFoundError:
                if every:
                    rows = f"{coords[0] * per}..{min((coords[0] + 1) * per, a.shape[0]) - 1}"
                    problems.append(f"{name}/{key} (instances {rows}) is missing")
    if problems:
        raise StoreError(f"{origin.path}: shard files missing or truncated: {'; '.join(problems)}; {origin.fix}")


def open_store(path: str | Path, schema: str | None = None, required: tuple[str, ...] = (),
               template_hash: str | None = None, *, layout: Layout | None = None, finite: tuple[str, ...] = (),
               stage: str | None = None) -> StoreGroup:
    """Opens a store read-only after checking it (module docstring); reads no array data.

    Args:
        schema: the ``schema`` attribute expected (None: any). required: arrays that must be present.
        template_hash: the ``template_hash`` attribute expected (None: not checked).
        layout: per-instance shape and dtype of the arrays the store may hold (others are not
            checked); the symbol "S" is the ``crop`` attribute when the store has one.
        finite: float arrays (paths) in which NaN or Inf is an error when read.
        stage: the stage that writes the store, named in the fix of every error.
    Raises:
        StoreMissingError (a FileNotFoundError): no store at ``path``.
        StoreError: metadata that cannot be read, another schema or template, missing arrays, arrays of
            another length, dtype or shape, shard files missing or empty (each kind listed in one message).
    """
    origin = _Origin(Path(path), stage)
    path = origin.path
    if not (path / "zarr.json").is_file():
        raise StoreMissingError(f"no Zarr store at {path}: run the stage that writes it "
                                f"(`{f'dvc repro {stage}' if stage else 'dvc repro'}`)")
    root = _open_group(origin)
    attrs = dict(root.attrs)
    if schema is not None and attrs.get("schema") != schema:
        raise StoreError(f"{path}: schema {attrs.get('schema')!r}, expected {schema!r}: another kind of store, "
                         f"or one made by another version; {origin.fix}")
    if template_hash is not None and attrs.get("template_hash") != template_hash:
        raise StoreError(f"{path}: made from template {attrs.get('template_hash')!r}, "
                         f"but the template is {template_hash!r}; rerun the pipeline (dvc repro)")
    arrays = _arrays(root, origin)
    missing = [name for name in required if name not in arrays]
    if missing:
        raise StoreError(f"{path}: missing array{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(m) for m in missing)}; {origin.fix}")
    if layout is not None:
        crop = attrs.get("crop")
        _check_layout(arrays, origin, layout, {"S": crop} if isinstance(crop, int) else {})
    _check_shards(arrays, origin)
    return StoreGroup(root, origin, frozenset(finite))
