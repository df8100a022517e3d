import numpy as np
import pytest

from pipeline.core.io import atomic_path, load_npz, save_npz


def test_npz_is_byte_identical_and_round_trips(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "s": np.asarray("anny")}
    save_npz(tmp_path / "x.npz", arrays)
    save_npz(tmp_path / "y.npz", arrays)
    assert (tmp_path / "x.npz").read_bytes() == (tmp_path / "y.npz").read_bytes()
    back = load_npz(tmp_path / "x.npz", required=("a", "s"))
    assert np.array_equal(back["a"], arrays["a"]) and str(back["s"]) == "anny"


def test_load_npz_names_missing_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.npz"):
        load_npz(tmp_path / "gone.npz")
    save_npz(tmp_path / "x.npz", {"a": np.zeros(2)})
    with pytest.raises(ValueError, match="missing key.*b"):
        load_npz(tmp_path / "x.npz", required=("a", "b"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
