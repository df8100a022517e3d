import json

import numpy as np
import pytest
import zarr
from conftest import tree_bytes

from pipeline.core.store import StoreError, StoreWriter, open_store, write_store
from pipeline.densepose.store import SCHEMA, densepose_specs, open_densepose


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
    with pytest.raises(StoreError, match=r"holds \['chart'\] output, not 'cse'; .*synthetic.cse: true"):
        open_densepose(tmp_path / "d.zarr", kind="cse")
    with pytest.raises(StoreError, match="missing array 'gt/iuv'"):
        open_store(tmp_path / "d.zarr", required=("box", "gt/iuv"))
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


def test_every_shard_is_written_and_every_chunk_checksummed(tmp_path):
    """A shard of fill values is written too, so a missing shard file is a deleted one."""
    write_store(tmp_path / "s.zarr", {"a": np.zeros(100, np.uint8)}, {}, chunk=10, chunks_per_shard=2)
    assert sorted(p.name for p in (tmp_path / "s.zarr" / "a" / "c").iterdir()) == ["0", "1", "2", "3", "4"]
    meta = json.loads((tmp_path / "s.zarr" / "a" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]] == ["bytes", "blosc", "crc32c"]
    (tmp_path / "s.zarr" / "a" / "c" / "3").unlink()
    with pytest.raises(StoreError, match=r"a/c/3 \(instances 60..79\) is missing"):
        open_store(tmp_path / "s.zarr")


def test_stores_of_the_older_writer_still_open(tmp_path):
    """Stores written before every shard was (no CRC32C on chunks) omit shards of fill values: not an error."""
    g = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    g.create_array("a", shape=(40,), dtype="uint8", chunks=(4,), shards=(8,), fill_value=0)[:] = 0
    assert not (tmp_path / "old.zarr" / "a" / "c").exists()
    assert open_store(tmp_path / "old.zarr")["a"][:].sum() == 0


def test_reads_keep_zarr_semantics(tmp_path):
    a = np.arange(60, dtype=np.float32).reshape(20, 3)
    write_store(tmp_path / "s.zarr", {"a": a, "gt/b": np.arange(20, dtype=np.int32)}, {"schema": "t/1"}, chunk=4)
    g = open_store(tmp_path / "s.zarr", finite=("a",))
    x = g["a"]
    assert np.array_equal(x[:], a) and np.array_equal(x[3], a[3]) and np.array_equal(x[-1], a[-1])
    assert np.array_equal(x[2:9:3], a[2:9:3]) and np.array_equal(x[5:7, 1], a[5:7, 1])
    assert np.array_equal(x.oindex[[1, 7, 19]], a[[1, 7, 19]])
    assert np.array_equal(x.oindex[[0, 2], [2]], a[[0, 2]][:, [2]])
    assert np.array_equal(x.get_orthogonal_selection(np.array([4, 5])), a[4:6])
    assert np.array_equal(np.asarray(x), a) and len(x) == 20 and x.shape == (20, 3) and x.chunks == (4, 3)
    assert np.array_equal(g["gt"]["b"][:], np.arange(20)) and np.array_equal(g["gt/b"][5:6], [5])
    assert "gt/b" in g and "b" in g["gt"] and "c" not in g and g.attrs["schema"] == "t/1"
    with pytest.raises(IndexError):  # a wrong selection stays the caller's error
        x[25]
