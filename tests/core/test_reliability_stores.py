"""Reliability of the store readers: every damaged, foreign or malformed store is a clear StoreError.

Each error names the store and, where it applies, the array, the instances and the file, and says how
to remake the store (``dvc repro -f STAGE``); no read returns wrong values silently. Stores are tiny
(N = 6 "vertices", shards of 32 instances) so that the file is fast.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.store import MissingArrayError, StoreError, StoreMissingError, open_store, write_store
from pipeline.densepose.store import SCHEMA as DENSEPOSE_SCHEMA, densepose_specs, open_densepose
from pipeline.iuv.repair import RepairOptions
from pipeline.iuv.store import SCHEMA as IUV_SCHEMA, open_iuv
from pipeline.iuv.write import repair_store
from pipeline.keypoints.store import SCHEMA, open_keypoints
from pipeline.train.data import KeypointStream

N, CHUNK, SHARD = 6, 4, 32  # vertices; instances a chunk; a shard (8 chunks)
FIX = "dvc repro -f keypoints"


def keypoint_arrays(n: int = 80, seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a keypoints store of ``n`` instances (layout: pipeline/keypoints/write.py), truth included."""
    rng = np.random.default_rng(seed)
    visible = rng.random((n, N)) < 0.8
    return {
        "xy": np.where(visible[..., None], rng.uniform(0, 200, (n, N, 2)), 0).astype(np.float32),
        "visible": visible, "count": visible.astype(np.uint16), "confidence": visible.astype(np.float16),
        "visible_area": visible.mean(1).astype(np.float32),
        "box": np.tile(np.array([0, 0, 200, 200], np.float32), (n, 1)), "score": np.ones(n, np.float32),
        "image": np.arange(n, dtype=np.int32), "split": (np.arange(n) % 4 == 3).astype(np.uint8),
        "source_index": np.arange(n, dtype=np.int32),
        "gt/vertices": rng.normal(0, 1, (n, N, 3)).astype(np.float32), "gt/visible": visible,
        "gt/camera": np.tile(np.array([100, 100, 100], np.float32), (n, 1)),
        "gt/pixels": rng.uniform(0, 200, (n, N, 2)).astype(np.float32),
    }


def make_store(path: Path, arrays: dict | None = None, **attrs) -> Path:
    """Writes a keypoints store (``arrays`` default: :func:`keypoint_arrays`) of template ``t0``."""
    write_store(path, keypoint_arrays() if arrays is None else arrays,
                {"schema": SCHEMA, "template_hash": "t0", "kind": "chart", **attrs}, chunk=CHUNK)
    return path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("kp") / "keypoints.zarr")


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    """A fresh copy of the pristine store, to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "keypoints.zarr"))


def shard(store: Path, array: str, index: int) -> Path:
    """The ``index``-th shard file of ``array`` (instances ``index * SHARD ..`` of a keypoints store)."""
    files = sorted(p for p in (store / array / "c").rglob("*") if p.is_file())
    return next(p for p in files if p.relative_to(store / array / "c").parts[0] == str(index))


def read_everything(store: Path) -> None:
    """Reads every array as the train and evaluate stages do: the stream's batches, then whole arrays."""
    for _ in KeypointStream(store, batch_size=8, chunks_in_memory=2, truth=True).epoch(0):
        pass
    root = open_keypoints(store)
    for name in keypoint_arrays(1):
        root[name][:]


def assert_names(err: pytest.ExceptionInfo, store: Path, *words: str) -> None:
    msg = str(err.value)
    for w in (str(store), *words):
        assert w in msg, f"{w!r} not in {msg!r}"


# --- damaged files --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped byte", "appended"])
def test_damaged_shard_names_store_array_instances_and_file(store, damage):
    f = shard(store, "xy", 1)
    data = bytearray(f.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif damage == "flipped byte":  # inside a chunk's data: only its CRC32C tells
        data[len(data) // 3] ^= 0x5A
    else:
        data += b"\0" * 16
    f.write_bytes(bytes(data))
    with pytest.raises(StoreError) as err:
        read_everything(store)
    assert_names(err, store, "array 'xy'", "instances 32..63", str(f), "damaged", FIX)


def test_read_errors_come_from_every_kind_of_read(store):
    f = shard(store, "gt/vertices", 0)
    f.write_bytes(f.read_bytes()[:-10])
    arr = open_keypoints(store)["gt/vertices"]
    reads = (lambda: arr[3], lambda: arr[0:5], lambda: arr.oindex[[1, 2]], lambda: np.asarray(arr),
             lambda: arr.get_orthogonal_selection(([1],)))
    for read in reads:
        with pytest.raises(StoreError) as err:
            read()
        assert_names(err, store, "'gt/vertices'", "instances 0..31", FIX)
    assert arr[40:42].shape == (2, N, 3)  # the other shards still read


def test_deleted_shard_is_refused_on_open(store):
    shard(store, "split", 0).unlink()  # all zeros (train): a shard older stores would not have written
    with pytest.raises(StoreError) as err:
        open_keypoints(store)
    assert_names(err, store, "split/c/0", "instances 0..31", "missing", FIX)


def test_empty_shard_is_refused_on_open(store):
    shard(store, "count", 2).write_bytes(b"")
    with pytest.raises(StoreError) as err:
        KeypointStream(store, batch_size=8)
    assert_names(err, store, "count/c/2", "empty", FIX)


@pytest.mark.parametrize("which, text", [("", "{not json"), ("xy", "{not json"), ("gt/vertices", "[1, 2"),
                                         ("xy", "{}"), ("", '{"zarr_format": 3, "node_type": "array"}')])
def test_metadata_that_is_not_json_or_not_zarr_names_the_file(store, which, text):
    meta = store / which / "zarr.json"
    meta.write_text(text)
    with pytest.raises(StoreError) as err:
        open_keypoints(store)
    assert_names(err, store, FIX)
    if text.startswith(("{not", "[")):
        assert str(meta) in str(err.value)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=st.sampled_from(sorted(keypoint_arrays(1))), index=st.integers(0, 2), data=st.data())
def test_any_damage_to_any_shard_is_an_error_never_wrong_values(pristine, array, index, data):
    """Truncating, overwriting or extending any shard file anywhere: a StoreError naming the store and
    the array, at open or at the read; never another exception, never other values read."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(shutil.copytree(pristine, Path(tmp) / "keypoints.zarr"))
        f = shard(store, array, index)
        raw = f.read_bytes()
        how = data.draw(st.sampled_from(["truncate", "overwrite", "extend"]))
        if how == "truncate":
            damaged = raw[: data.draw(st.integers(0, len(raw) - 1))]
        elif how == "extend":
            damaged = raw + data.draw(st.binary(min_size=1, max_size=64))
        else:
            at = data.draw(st.integers(0, len(raw) - 1))
            patch = data.draw(st.binary(min_size=1, max_size=min(32, len(raw) - at)))
            flipped = bytes(b ^ (p or 1) for b, p in zip(raw[at:], patch))  # every byte changes
            damaged = raw[:at] + flipped + raw[at + len(flipped):]
        f.write_bytes(damaged)
        with pytest.raises(StoreError) as err:
            read_everything(store)
        assert str(store) in str(err.value) and array in str(err.value)


# --- non-finite values ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, row", [("xy", np.nan, 37), ("xy", np.inf, 0), ("gt/vertices", np.nan, 5),
                                              ("gt/camera", np.inf, 50), ("visible_area", -np.inf, 79)])
def test_non_finite_values_name_the_store_array_and_instance(tmp_path, name, value, row):
    arrays = keypoint_arrays()
    arrays[name][row, ...].flat[0] = value
    store = make_store(tmp_path / "keypoints.zarr", arrays)
    if name != "visible_area":  # read by the training stream (evaluate reads it)
        with pytest.raises(StoreError) as err:  # before any batch reaches the model
            for _ in KeypointStream(store, batch_size=8, chunks_in_memory=2, truth=True).epoch(0):
                pass
        assert_names(err, store, f"array {name!r}", f"at instance {row}", "NaN or Inf", "corrupt", FIX)
    root = open_keypoints(store)
    a = row // 8 * 8
    for read in (lambda: root[name][a:a + 8], lambda: root[name].oindex[[row, (row + 1) % 80]],
                 lambda: root[name][row], lambda: root[name][:]):  # evaluate reads a span of rows
        with pytest.raises(StoreError) as err:
            read()
        assert_names(err, store, f"array {name!r}", f"at instance {row}", FIX)
    other = (row + 1) % 80
    assert np.all(np.isfinite(root[name][other:other + 1]))


def test_many_non_finite_instances_are_counted(tmp_path):
    arrays = keypoint_arrays()
    arrays["xy"][[3, 9, 11, 20, 21, 30, 31]] = np.nan
    store = make_store(tmp_path / "keypoints.zarr", arrays)
    with pytest.raises(StoreError, match=r"at instances 3, 9, 11, 20, 21 and 2 more \(7 in all\)"):
        open_keypoints(store)["xy"][:]


def test_nan_where_it_is_allowed_is_read(tmp_path):
    """U, V are NaN where DensePose has no answer: densepose.zarr's uv reads as is."""
    specs = densepose_specs(8, chart=True)
    arrays = {k: np.zeros((4, *shape), dtype) for k, (shape, dtype) in specs.items()}
    arrays["uv"][:] = np.nan
    arrays["box"][:] = [0, 0, 8, 8]
    write_store(tmp_path / "dp.zarr", arrays, {"schema": DENSEPOSE_SCHEMA, "kinds": ["chart"], "crop": 8})
    root = open_densepose(tmp_path / "dp.zarr", kind="chart")
    assert np.isnan(root["uv"][:]).all() and root["box"][:].shape == (4, 4)


# --- foreign or malformed stores -------------------------------------------------------------------


@pytest.mark.parametrize("name, array, words", [
    ("xy", np.zeros((80, N, 2), np.float64), ("'xy' is float64, expected float32",)),
    ("count", np.zeros((80, N), np.int32), ("'count' is int32, expected uint16",)),
    ("xy", np.zeros((80, N, 3), np.float32), ("'xy' has instances of shape (6, 3), expected ('N', 2)",)),
    ("visible", np.zeros((80, N + 1), bool), ("'visible' has instances of shape (7,)", "N = 6")),
    ("gt/vertices", np.zeros((80, N + 2, 3), np.float32), ("'gt/vertices' has instances of shape (8, 3)", "N = 6")),
    ("split", np.zeros((80, 2), np.uint8), ("'split' has instances of shape (2,), expected ()",)),
])
def test_array_of_another_dtype_or_shape_is_refused(tmp_path, name, array, words):
    arrays = keypoint_arrays()
    arrays[name] = array
    store = make_store(tmp_path / "keypoints.zarr", arrays)
    with pytest.raises(StoreError) as err:
        KeypointStream(store, batch_size=8)
    assert_names(err, store, "not the layout", *words, FIX)


def test_arrays_of_another_length_are_refused(store):
    import zarr

    g = zarr.open_group(str(store), mode="a")
    g["xy"].resize((70, N, 2))
    with pytest.raises(StoreError) as err:
        open_keypoints(store)
    assert_names(err, store, "'xy' has 70 instances, the others 80")


def test_every_layout_problem_is_listed_at_once(tmp_path):
    arrays = keypoint_arrays()
    arrays["xy"] = arrays["xy"].astype(np.float64)
    arrays["count"] = arrays["count"][:, :3]
    store = make_store(tmp_path / "keypoints.zarr", arrays)
    with pytest.raises(StoreError) as err:
        open_keypoints(store)
    assert_names(err, store, "'xy' is float64", "'count' has instances of shape (3,)")


def test_store_of_another_template_schema_or_none(pristine, tmp_path):
    with pytest.raises(StoreError) as err:
        KeypointStream(pristine, batch_size=8, template_hash="t1")
    assert_names(err, pristine, "made from template 't0'", "'t1'", "dvc repro")
    with pytest.raises(StoreError) as err:
        open_iuv(pristine)
    assert_names(err, pristine, f"schema '{SCHEMA}', expected '{IUV_SCHEMA}'", "dvc repro -f iuv")
    with pytest.raises(StoreMissingError) as err:
        open_keypoints(tmp_path / "none.zarr")
    assert isinstance(err.value, FileNotFoundError)
    assert_names(err, tmp_path / "none.zarr", "no Zarr store", "dvc repro keypoints")


def test_missing_arrays_are_listed_and_reading_one_names_the_store(store):
    shutil.rmtree(store / "xy")
    shutil.rmtree(store / "count")
    with pytest.raises(StoreError) as err:
        open_keypoints(store)
    assert_names(err, store, "missing arrays 'xy', 'count'", FIX)
    shutil.rmtree(store / "visible_area")
    root = open_store(store)  # no array required
    with pytest.raises(MissingArrayError) as err:
        root["visible_area"]
    assert isinstance(err.value, KeyError)
    assert_names(err, store, "no array 'visible_area'")


def test_chart_store_read_as_cse_says_how_to_get_cse_output(tmp_path):
    specs = densepose_specs(8, chart=True)
    arrays = {k: np.zeros((4, *shape), dtype) for k, (shape, dtype) in specs.items()}
    write_store(tmp_path / "dp.zarr", arrays, {"schema": DENSEPOSE_SCHEMA, "kinds": ["chart"], "crop": 8})
    with pytest.raises(StoreError) as err:
        open_densepose(tmp_path / "dp.zarr", kind="cse")
    assert_names(err, tmp_path / "dp.zarr", "not 'cse'", "synthetic.cse: true", "densepose.kind: chart")


def test_crop_attribute_and_arrays_disagree(tmp_path):
    specs = densepose_specs(8, chart=True)
    arrays = {k: np.zeros((4, *shape), dtype) for k, (shape, dtype) in specs.items()}
    write_store(tmp_path / "dp.zarr", arrays, {"schema": DENSEPOSE_SCHEMA, "kinds": ["chart"], "crop": 16})
    with pytest.raises(StoreError) as err:
        open_densepose(tmp_path / "dp.zarr")
    assert_names(err, tmp_path / "dp.zarr", "'labels' has instances of shape (8, 8)", "S = 16",
                 "dvc repro -f densepose")


# --- a stage reading a damaged store fails cleanly ----------------------------------------------------


def _densepose_store(path: Path, n: int = 12) -> Path:
    """A chart densepose store whose instances are a square of part 2 (kept by the repair)."""
    specs = densepose_specs(16, chart=True)
    arrays = {k: np.zeros((n, *shape), dtype) for k, (shape, dtype) in specs.items()}
    arrays["labels"][:, 4:12, 4:12] = 2
    arrays["uv"][:] = 0.5
    arrays["box"][:] = [10, 20, 26, 36]
    arrays["score"][:] = 1
    arrays["image"][:] = np.arange(n)
    write_store(path, arrays, {"schema": DENSEPOSE_SCHEMA, "kinds": ["chart"], "crop": 16, "source": "test",
                               "images": [f"im{i}" for i in range(n)], "template_hash": "abc"}, chunk=4,
                chunks_per_shard=1)
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_iuv_stage_on_a_damaged_densepose_store_writes_nothing(tmp_path, workers):
    src = _densepose_store(tmp_path / "densepose.zarr")
    repair_store(src, tmp_path / "ok.zarr", RepairOptions(), 10, 1, progress=False)  # the undamaged store works
    f = shard(src, "labels", 1)
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(StoreError) as err:
        repair_store(src, tmp_path / "iuv.zarr", RepairOptions(), 10, workers, progress=False)
    assert_names(err, src, "array 'labels'", "instances 4..7", "dvc repro -f densepose")
    assert not (tmp_path / "iuv.zarr").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["densepose.zarr", "ok.zarr"]


def test_nan_box_in_a_densepose_store_is_named_by_the_iuv_stage(tmp_path):
    src = _densepose_store(tmp_path / "densepose.zarr")
    import zarr

    zarr.open_group(str(src), mode="a")["box"][6] = [np.nan, 20, 26, 36]
    with pytest.raises(StoreError) as err:
        repair_store(src, tmp_path / "iuv.zarr", RepairOptions(), 10, 1, progress=False)
    assert_names(err, src, "array 'box'", "at instance 6", "dvc repro -f densepose")
    assert not (tmp_path / "iuv.zarr").exists()


def test_json_attribute_checks_are_unchanged_by_the_wrapper(pristine):
    root = open_keypoints(pristine, "t0")
    assert root.attrs["kind"] == "chart" and dict(root.attrs)["schema"] == SCHEMA
    assert "gt" in root and "vertices" in root["gt"] and "iuv" not in root["gt"]
    assert set(root["gt"].array_keys()) == {"vertices", "visible", "camera", "pixels"}
    xy = root["xy"]
    assert xy.shape == (80, N, 2) and xy.chunks == (CHUNK, N, 2) and xy.dtype == np.float32 and len(xy) == 80
    assert np.array_equal(xy[:], keypoint_arrays()["xy"]) and np.array_equal(np.asarray(xy), xy[...])
    assert json.loads((pristine / "zarr.json").read_text())["attributes"]["template_hash"] == "t0"
