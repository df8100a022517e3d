import os
import shutil
from pathlib import Path

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


_WRITE_STORE = """
import sys
import numpy as np
from pipeline.core.errors import describe_os_error
from pipeline.core.io import stage_outputs
from pipeline.core.store import write_store
try:
    with stage_outputs("data/x.zarr"):
        write_store("data/x.zarr", {"a": np.zeros((4, 2), np.float32)}, {})
except OSError as e:
    print(describe_os_error(e))
"""


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv ignores modes")
def test_a_read_only_folder_names_the_store_and_the_folder():
    """Run as an unprivileged user (root passes every permission check: it runs the write as nobody)."""
    import subprocess
    import sys
    import tempfile

    from pipeline.core.store import write_store

    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    ws = Path(tempfile.mkdtemp(prefix="dp3d_readonly_"))
    try:
        ws.chmod(0o755)
        write_store(ws / "data" / "x.zarr", {"a": np.ones((4, 2), np.float32)}, {})
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        for read_only, why in [("data", f"its folder {ws / 'data'} is not writable"),
                               ("data/x.zarr", "the earlier x.zarr there cannot be replaced")]:
            for p in (ws / "data", ws / "data/x.zarr", *(ws / "data/x.zarr").rglob("*")):
                p.chmod(0o777 if p.is_dir() else 0o666)
            for p in (ws / read_only, *(ws / read_only).rglob("*")):
                p.chmod(0o555 if p.is_dir() else 0o444)
            res = subprocess.run([*as_user, sys.executable, "-c", _WRITE_STORE], cwd=ws, env=env, capture_output=True,
                                 text=True, timeout=60)
            assert res.returncode == 0, res.stderr[-2000:]
            assert res.stdout.startswith(f"{ws / 'data/x.zarr'}: Permission denied: cannot write it, {why}"), res.stdout
            assert "zarr.json" not in res.stdout and ".tmp" not in res.stdout
            assert np.asarray(__import__("zarr").open_group(ws / "data/x.zarr", mode="r")["a"]).sum() == 8  # untouched
    finally:
        for p in (ws, *ws.rglob("*")):
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(ws)
