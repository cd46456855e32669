import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lepton.data import idx_bytes, parse_idx, read_idx, write_idx
from lepton.errors import FormatError


def test_parse_hand_made_file():
    # magic 0x00000803 (uint8, 3 dims), dims 2x2x3, then 12 pixel bytes: written out by hand
    data = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(12))
    a = parse_idx(data)
    assert a.dtype == np.uint8 and a.shape == (2, 2, 3)
    assert a.ravel().tolist() == list(range(12))


def test_parse_hand_made_big_endian_int32():
    data = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + struct.pack(">ii", 1, -70000)
    assert parse_idx(data).tolist() == [1, -70000]


def test_labels_file_layout():
    assert idx_bytes(np.array([7, 2, 1], dtype=np.uint8)) == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


dtypes = st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])


@settings(max_examples=60, deadline=None)
@given(dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))))
def test_round_trip(a):
    b = parse_idx(idx_bytes(a))
    assert b.dtype == a.dtype and b.shape == a.shape
    assert a.tobytes() == b.tobytes()  # bit-exact, NaNs included


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "too short"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "not an IDX file"),
        (bytes([0, 0, 7, 1, 0, 0, 0, 1, 5]), "unknown IDX dtype"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 1]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), "truncated or corrupted"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "truncated or corrupted"),  # trailing byte
        (bytes([0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]), "truncated or corrupted"),
    ],
)
def test_malformed_files_are_refused(data, match):
    with pytest.raises(FormatError, match=match):
        parse_idx(data)


def test_write_and_read_gz_and_raw(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte.gz", a)
    write_idx(tmp_path / "a-idx3-ubyte", a)
    assert gzip.decompress((tmp_path / "a-idx3-ubyte.gz").read_bytes()) == (tmp_path / "a-idx3-ubyte").read_bytes()
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), a)


def test_corrupt_gzip_is_a_format_error(tmp_path):
    p = tmp_path / "x-idx1-ubyte.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(FormatError, match="cannot read IDX"):
        read_idx(p)
