"""The ``freq`` codec: round trips, entropy against an independent count, forged tables and blocks refused."""

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lepton.data.codecs import fit_codec, get_codec
from lepton.data.codecs.freq import MAGIC, MODE_FIELD, MODE_INLINE, MODE_ZSTD, FreqTable
from lepton.errors import ConfigError, DataError, FormatError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTS = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
int_arrays = st.sampled_from(INTS).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12))
)


def entropy_bytes(values: np.ndarray) -> float:
    """n * H of the values' empirical distribution, in bytes (numpy's unique, not the codec's counts)."""
    _, counts = np.unique(values, return_counts=True)
    return float(-(counts * np.log2(counts / counts.sum())).sum() / 8)


def roundtrip(codec, a):
    out = codec.decode(codec.encode(a), a.dtype, a.shape)
    assert out.dtype == a.dtype and out.shape == a.shape and out.tobytes() == a.tobytes()


@FAST
@given(a=int_arrays, fitted=st.booleans())
def test_roundtrips_arbitrary_int_arrays(a, fitted):
    codec = get_codec("freq")
    roundtrip(fit_codec(codec, a) if fitted else codec, a)


@FAST
@given(
    a=hnp.arrays(np.int32, st.integers(0, 300), elements=st.integers(-5, 5)),
    b=hnp.arrays(np.int32, st.integers(0, 300), elements=st.integers(-(2**31), 2**31 - 1)),
)
def test_a_table_fitted_on_one_array_codes_another(a, b):
    codec = fit_codec(get_codec("freq"), a)
    roundtrip(codec, a)
    roundtrip(codec, b)  # values outside the table: the block carries its own table, or goes to zstd


@pytest.mark.parametrize(
    "a, mode",
    [
        (np.zeros((0, 3), np.int64), MODE_FIELD),
        (np.full(1000, 7, np.uint8), MODE_INLINE),  # one symbol: a table and no words
        (np.arange(100_000, dtype=np.int64) * 3, MODE_ZSTD),  # alphabet wider than max_symbols: zstd
        (np.array([0, 2**64 - 1], np.uint64), MODE_ZSTD),
        (np.array([-(2**63), 2**63 - 1], np.int64), MODE_ZSTD),
        (np.random.default_rng(0).integers(0, 2, 5000).astype(bool), MODE_INLINE),
    ],
)
def test_edge_cases_roundtrip_in_the_expected_mode(a, mode):
    codec = get_codec("freq")
    blob = codec.encode(a)
    assert blob[0] == mode
    roundtrip(codec, a)


def test_mnist_labels_cost_at_most_their_entropy_plus_one_percent(mnist):
    y = mnist.y_train
    codec = fit_codec(get_codec("freq"), y)
    for values in (y, mnist.y_test):  # the test split is coded with the training split's table, as a store does
        coded = sum(len(codec.encode(values[s : s + 1000])) for s in range(0, len(values), 1000))
        assert coded + len(codec.model) <= 1.01 * entropy_bytes(values)
    assert len(codec.model) <= 20


def test_a_skewed_alphabet_codes_near_its_entropy():
    rng = np.random.default_rng(1)
    a = rng.choice(np.array([-40, 3, 9, 100], np.int16), size=20_000, p=[0.7, 0.2, 0.09, 0.01])
    codec = fit_codec(get_codec("freq"), a)
    assert len(codec.model) <= 4 + 2 + 1 + 18 + 4 * 2  # a sparse table: 141 bits of bitmap, four 12-bit counts
    coded = len(codec.encode(a)) + len(codec.model)
    assert entropy_bytes(a) <= coded <= 1.01 * entropy_bytes(a) + len(codec.model)


def test_forged_tables_are_refused():
    good = FreqTable.of(np.array([0, 1, 1, 2])).to_bytes()
    assert FreqTable.from_bytes(good)[1] == len(good)
    forged = {
        b"LFQ\x02" + good[4:]: "LFQ",
        MAGIC + b"\x00\x00": "symbols",  # K = 0
        MAGIC + b"\x00\x80\x80\x80\x80\x01\x08": "symbols",  # K far above 65,536
        MAGIC + b"\x00\x03\x00": "width",
        MAGIC + b"\x00\x03\x19": "width",  # 25-bit counts
        MAGIC + b"\x00\x03\x08\x01": "needs 3 bytes",
        MAGIC + b"\x00\x03\x08\x00\x00\x00": "zero",
        MAGIC + b"\x00\x03\x88": "bitmap",  # sparse, bitmap missing
        MAGIC + b"\x00\x03\x88\x07\x01": "counts",  # three counts present, one byte of them
        MAGIC + b"\xff" * 11: "varint",
        MAGIC + b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x03\x02\x01\x01": "64-bit",  # base + K - 1 = 2^64
    }
    for data, message in forged.items():
        with pytest.raises(FormatError, match=message):
            FreqTable.from_bytes(data)
        with pytest.raises(FormatError):
            get_codec("freq", model=data)
    with pytest.raises(FormatError, match="after its table"):
        get_codec("freq", model=good + b"\x00")


def test_forged_blocks_are_refused():
    a = np.random.default_rng(3).integers(0, 10, 1000).astype(np.uint8)
    codec = fit_codec(get_codec("freq"), a)
    blob = codec.encode(a)
    assert blob[0] == MODE_FIELD
    with pytest.raises(FormatError, match="has none"):
        get_codec("freq").decode(blob, a.dtype, a.shape)  # the field's table is missing
    with pytest.raises(FormatError, match="mode"):
        codec.decode(b"\x03" + blob[1:], a.dtype, a.shape)
    with pytest.raises(FormatError, match="not a valid stream"):
        codec.decode(blob[:-1], a.dtype, a.shape)
    with pytest.raises(FormatError, match="encode to"):
        codec.decode(blob + b"\0\0\0\0", a.dtype, a.shape)  # a padded stream is not canonical
    with pytest.raises(FormatError, match="larger than"):
        codec.decode(blob, a.dtype, (10**12,))
    with pytest.raises(FormatError, match="does not fit"):
        codec.decode(blob, np.dtype(bool), a.shape)  # the table's alphabet 0..9 is not boolean
    inline = get_codec("freq").encode(np.array([-3, -3, -2], np.int8))
    with pytest.raises(FormatError, match="does not fit"):
        get_codec("freq").decode(inline, np.uint8, (3,))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64), n=st.integers(0, 2000))
def test_random_bytes_never_crash_the_decoder(data, n):
    codec = fit_codec(get_codec("freq"), np.arange(10, dtype=np.uint8))
    try:
        out = codec.decode(data, np.uint8, (n,))
    except FormatError:
        return
    assert out.shape == (n,) and out.dtype == np.uint8  # whatever decodes is a well-formed array
    assert np.array_equal(codec.decode(codec.encode(out), np.uint8, (n,)), out)


def test_bad_parameters_and_dtypes_are_user_errors():
    with pytest.raises(ConfigError, match="max_symbols"):
        get_codec("freq", max_symbols=1)
    with pytest.raises(ConfigError, match="bytes"):
        get_codec("freq", model="table")
    with pytest.raises(DataError, match="integer"):
        get_codec("freq").encode(np.zeros(3, np.float32))
    assert not get_codec("freq").supports(np.float32, (3,)) and get_codec("freq").supports(np.int64, ())
