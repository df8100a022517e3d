import numpy as np
import pytest
from conftest import tree_bytes

from pipeline.densepose_store import SCHEMA, densepose_specs, open_densepose
from pipeline.store import StoreError, StoreWriter, open_store, write_store


def test_round_trip_in_shards_and_any_write_order(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1000, 3, 2)).astype(np.float32)
    b = rng.integers(0, 255, size=(1000,), dtype=np.uint8)
    with StoreWriter.create(tmp_path / "s.zarr", 1000, {"a": ((3, 2), "float32"), "gt/b": ((), "uint8")},
                            {"schema": "t/1"}, chunk=64, chunks_per_shard=4) as w:
        for start in (512, 0, 256, 768):
            w.write(start, {"a": a[start:start + 256], "gt/b": b[start:start + 256]})
        w.set_attrs(count=3)
    g = open_store(tmp_path / "s.zarr", schema="t/1", required=("a", "gt/b"))
    assert np.array_equal(g["a"][:], a) and np.array_equal(g["gt/b"][:], b) and g.attrs["count"] == 3
    files = [p for p in (tmp_path / "s.zarr").rglob("*") if p.is_file()]
    assert len(files) <= 12  # a handful of shard files, not one per chunk


def test_stores_are_byte_identical(tmp_path):
    a = np.arange(5000, dtype=np.float32).reshape(500, 10)
    for name in ("x.zarr", "y.zarr"):
        write_store(tmp_path / name, {"a": a}, {"schema": "t/1"}, chunk=50)
    assert tree_bytes(tmp_path / "x.zarr") == tree_bytes(tmp_path / "y.zarr")


def test_incomplete_store_is_never_left_behind(tmp_path):
    with pytest.raises(StoreError, match="rows never written"):
        with StoreWriter.create(tmp_path / "s.zarr", 10, {"a": ((), "float32")}, {}) as w:
            w.write(0, {"a": np.zeros(5, np.float32)})
    assert not (tmp_path / "s.zarr").exists() and list(tmp_path.iterdir()) == []


def test_write_errors_name_the_array(tmp_path):
    with pytest.raises(StoreError, match="'a': rows of shape"):
        with StoreWriter.create(tmp_path / "s.zarr", 4, {"a": ((2,), "float32")}, {}) as w:
            w.write(0, {"a": np.zeros((4, 3))})
    with pytest.raises(StoreError, match="at least one instance"):
        write_store(tmp_path / "e.zarr", {"a": np.zeros((0, 2))}, {})


def test_open_checks_schema_arrays_and_template(tmp_path):
    specs = densepose_specs(8, chart=True, cse_dim=None)
    arrays = {k: np.zeros((3, *shape), dtype) for k, (shape, dtype) in specs.items()}
    write_store(tmp_path / "d.zarr", arrays, {"schema": SCHEMA, "kinds": ["chart"], "template_hash": "aaa"})
    assert open_densepose(tmp_path / "d.zarr", template_hash="aaa", kind="chart")["labels"].shape == (3, 8, 8)
    with pytest.raises(StoreError, match="made from template 'aaa'.*'bbb'"):
        open_densepose(tmp_path / "d.zarr", template_hash="bbb")
    with pytest.raises(StoreError, match="missing array 'embedding'"):
        open_densepose(tmp_path / "d.zarr", kind="cse")
    with pytest.raises(FileNotFoundError, match="no Zarr store"):
        open_densepose(tmp_path / "none.zarr")


def test_append_cuts_the_store_to_the_rows_written(tmp_path):
    a = np.arange(700, dtype=np.int32)
    with StoreWriter.create(tmp_path / "s.zarr", 1000, {"a": ((), "int32")}, {}, chunk=64, chunks_per_shard=2) as w:
        for start in range(0, 700, 100):
            w.append({"a": a[start:start + 100]})
    g = open_store(tmp_path / "s.zarr")
    assert g["a"].shape == (700,) and np.array_equal(g["a"][:], a)
    with pytest.raises(StoreError, match="empty store"):
        with StoreWriter.create(tmp_path / "e.zarr", 10, {"a": ((), "int32")}, {}) as w:
            w.append({"a": np.zeros(0, np.int32)})
    assert not (tmp_path / "e.zarr").exists()
