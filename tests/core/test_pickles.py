"""Bytes in protocol 0-2 pickles (pipeline/core/pickles.py, dump_unpickler.py): benign arrays and empty bytes are
read by both restricted loaders; ``bytes`` and ``_codecs.encode`` are admitted only in the form pickle writes."""

import pickle
import re

import numpy as np
import pytest

from pipeline.core.dump_unpickler import UnsafeDumpError, load_dump
from pipeline.core.errors import InputError
from pipeline.core.pickles import read_pickle

BENIGN = {"empty array": np.zeros(0), "arange": np.arange(3), "empty uint8 rows": np.zeros((0, 3), np.uint8),
          "dict with empty bytes": {"name": b"", "data": b"\x00\xff", "x": np.arange(3.0)}}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", [0, 1, 2, 5])
@pytest.mark.parametrize("what", sorted(BENIGN))
def test_benign_pickles_of_every_protocol_are_read(tmp_path, protocol, what):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(BENIGN[what], protocol=protocol))
    assert _same(BENIGN[what], load_dump(path))
    assert _same(BENIGN[what], read_pickle(path, "an SMPL model file"))


@pytest.mark.parametrize("call,refused", [
    (b"c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.", "bytes() with 1 argument"),  # bytes(10**9): a gigabyte
    (b"c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.", "_codecs.encode of a str as 'rot13'"),
    (b"c_codecs\nencode\nJ\x01\x00\x00\x00X\x06\x00\x00\x00latin1\x86R.", "_codecs.encode of a int"),
])
def test_bytes_and_encode_are_admitted_only_as_pickle_writes_them(tmp_path, call, refused):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x02" + call)
    with pytest.raises(UnsafeDumpError, match=re.escape(f"{path}: refusing {refused}")):
        load_dump(path)
    with pytest.raises(InputError, match=re.escape(f"{path}: refused as an SMPL model file: refusing {refused}")):
        read_pickle(path, "an SMPL model file")


def test_other_builtins_stay_refused(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x80\x02c__builtin__\nmemoryview\nC\x00\x85R.")
    with pytest.raises(UnsafeDumpError, match="refers to builtins.memoryview"):
        load_dump(path)
    with pytest.raises(InputError, match="refusing to load __builtin__.memoryview"):
        read_pickle(path, "an SMPL model file")
