"""Entropy coders: round trips (Hypothesis), independent references (pure-Python rANS, bit-by-bit canonical
Huffman, brute-force optimal length-limited codes, heapq Huffman), and refusal of corrupted streams."""

import heapq
import itertools
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lepton.compress.coding import MAX_DISTINCT, ans, decode_symbols, encode_symbols, entropy_bits, huffman
from lepton.compress.coding.bits import Reader, bucket_widths, bucketize, pack_bits, unbucketize, unpack_bits, uvarint
from lepton.errors import ConfigError, FormatError

METHODS = ["huffman", "ans"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def roundtrip(symbols, method):
    symbols = np.asarray(symbols, dtype=np.int64)
    data = encode_symbols(symbols, method)
    out = decode_symbols(data, len(symbols), method)
    assert out.dtype == np.int64 and np.array_equal(out, symbols)
    return data


# ---- round trips -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@FAST
@given(st.lists(st.integers(0, 2**63 - 1), max_size=200))
def test_roundtrip_arbitrary_values(method, values):
    roundtrip(values, method)


@pytest.mark.parametrize("method", METHODS)
@FAST
@given(st.lists(st.integers(0, 3), max_size=600))
def test_roundtrip_small_alphabet(method, values):
    roundtrip(values, method)


@pytest.mark.parametrize("method", METHODS)
@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3000), p=st.floats(0.001, 0.9))
def test_roundtrip_skewed(method, seed, n, p):
    roundtrip(np.random.default_rng(seed).geometric(p, n) - 1, method)


@pytest.mark.parametrize("method", METHODS)
def test_edge_streams(method):
    assert roundtrip([], method) == b""
    assert roundtrip([7], method) == uvarint(1) + uvarint(1) + b"\x00" + uvarint(7)
    assert roundtrip([7] * 1000, method) == uvarint(1000) + uvarint(1) + b"\x00" + uvarint(7)  # nothing coded
    roundtrip([0, 2**63 - 1], method)
    roundtrip([5, 6], method)


@pytest.mark.parametrize("method", METHODS)
def test_alphabet_of_2_pow_16(method):
    rng = np.random.default_rng(1)
    symbols = np.concatenate([rng.permutation(1 << 16), rng.integers(0, 1 << 16, 20000)])
    roundtrip(symbols, method)
    roundtrip(np.arange(1 << 16) * 3 + 11, method)  # sparse alphabet: the list mode


@pytest.mark.parametrize("method", METHODS)
def test_near_uniform_stream_costs_its_entropy(method):
    symbols = np.random.default_rng(2).integers(0, 32, 20000)
    data = roundtrip(symbols, method)
    assert len(data) < entropy_bits(symbols) / 8 * 1.01 + 40


def test_ans_not_larger_than_huffman_on_skewed_data_and_both_decode_the_same():
    rng = np.random.default_rng(3)
    for symbols in (
        rng.geometric(0.3, 20000) - 1,
        rng.choice(4, 20000, p=[0.97, 0.01, 0.01, 0.01]),
        np.minimum(rng.geometric(0.08, 30000) - 1, 200),
    ):
        data = {m: encode_symbols(symbols, m) for m in METHODS}
        assert np.array_equal(
            decode_symbols(data["ans"], len(symbols), "ans"), decode_symbols(data["huffman"], len(symbols), "huffman")
        )
        assert len(data["ans"]) <= len(data["huffman"])
        assert len(data["ans"]) < entropy_bits(symbols) / 8 * 1.005 + 80


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="'method'"):
        encode_symbols(np.arange(3), "lz77")
    with pytest.raises(ConfigError, match="1-D integer"):
        encode_symbols(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ConfigError, match="1-D integer"):
        encode_symbols(np.array([0.5, 1.0]))
    with pytest.raises(ConfigError, match="non-negative"):
        encode_symbols(np.array([-1, 3]))
    with pytest.raises(ConfigError, match="distinct"):
        encode_symbols(np.arange(MAX_DISTINCT + 1))


# ---- independent references --------------------------------------------------------------------------------


def rans_reference(ranks, weights):
    """Textbook streaming rANS with 64-bit state, 32-bit words and 24-bit probabilities (Duda 2015)."""
    cumulative = [0]
    for w in weights[:-1]:
        cumulative.append(cumulative[-1] + w)
    state, words = 0, []
    for s in reversed(ranks):
        f = weights[s]
        if state >> 40 >= f:
            words.append(state & 0xFFFFFFFF)
            state >>= 32
        state = ((state // f) << 24) | (cumulative[s] + state % f)
    while state:
        words.append(state & 0xFFFFFFFF)
        state >>= 32
    return words


def bitstring(data):
    return "".join(f"{b:08b}" for b in data)


@FAST
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 40), n=st.integers(1, 400))
def test_ans_body_is_exactly_the_documented_rans(seed, k, n):
    rng = np.random.default_rng(seed)
    ranks = np.concatenate([np.arange(k), rng.integers(0, k, n) ** 2 % k])
    body = ans.encode(ranks, k)
    precision, width = body[0], body[1]
    table = bitstring(body[2 : 2 + ((k - 1) * width + 7) // 8])
    freqs = [int(table[i * width : (i + 1) * width] or "0", 2) + 1 for i in range(k - 1)]
    freqs.append(2**precision - sum(freqs))
    assert min(freqs) >= 1
    words = body[2 + ((k - 1) * width + 7) // 8 :]
    expected = rans_reference(ranks.tolist(), [f << (24 - precision) for f in freqs])
    assert list(struct.unpack(f"<{len(words) // 4}I", words)) == expected


def huffman_reference_decode(body, count, k):
    """Bit-by-bit canonical Huffman decoding, written from the textbook definition."""
    bits = bitstring(body)
    lengths = [int(bits[5 * i : 5 * i + 5], 2) for i in range(k)]
    pos = (5 * k + 7) // 8 * 8
    table, code, prev = {}, 0, None
    for rank in sorted(range(k), key=lambda r: (lengths[r], r)):
        if prev is not None:
            code = (code + 1) << (lengths[rank] - prev)
        table[format(code, f"0{lengths[rank]}b")] = rank
        prev = lengths[rank]
    out, word = [], ""
    while len(out) < count:
        word += bits[pos]
        pos += 1
        if word in table:
            out.append(table[word])
            word = ""
    assert set(bits[pos:]) <= {"0"} and len(bits) - pos < 8
    return out


@FAST
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 60), n=st.integers(1, 300))
def test_huffman_body_decodes_with_a_bit_by_bit_reference(seed, k, n):
    rng = np.random.default_rng(seed)
    ranks = np.concatenate([np.arange(k), (rng.geometric(0.2, n) - 1) % k])
    rng.shuffle(ranks)
    body = huffman.encode(ranks, k)
    assert huffman_reference_decode(body, len(ranks), k) == ranks.tolist()


def brute_force_cost(counts, max_length):
    best = None
    for lengths in itertools.product(range(1, max_length + 1), repeat=len(counts)):
        if sum(2.0**-x for x in lengths) <= 1:
            cost = sum(c * x for c, x in zip(counts, lengths))
            best = cost if best is None else min(best, cost)
    return best


def heapq_huffman_cost(counts):
    heap = list(counts)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


@settings(max_examples=80, deadline=None)
@given(counts=st.lists(st.integers(1, 1000), min_size=2, max_size=6), max_length=st.integers(3, 4))
def test_package_merge_is_optimal_under_the_length_limit(counts, max_length):
    lengths = huffman.code_lengths(np.array(counts), max_length)
    assert lengths.max() <= max_length
    assert sum(2.0**-x for x in lengths) == 1.0
    assert int((np.array(counts) * lengths).sum()) == brute_force_cost(counts, max_length)


@FAST
@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=80))
def test_package_merge_matches_huffman_when_the_limit_does_not_bind(counts):
    lengths = huffman.code_lengths(np.array(counts), 24)
    assert int((np.array(counts) * lengths).sum()) == heapq_huffman_cost(counts)


@pytest.mark.timeout(60)
def test_length_limit_binds_on_fibonacci_counts():
    fib = [1, 1]
    while len(fib) < 26:
        fib.append(fib[-1] + fib[-2])  # unlimited Huffman needs 25-bit codes for these counts
    lengths = huffman.code_lengths(np.array(fib))
    assert lengths.max() == huffman.MAX_CODE_LENGTH
    assert sum(2.0**-x for x in lengths) == 1.0
    symbols = np.random.default_rng(5).permutation(np.repeat(np.arange(26), fib))
    roundtrip(symbols, "huffman")


# ---- refusing bad streams ----------------------------------------------------------------------------------


def sample_stream(method):
    symbols = np.random.default_rng(4).geometric(0.25, 300) - 1
    return symbols, encode_symbols(symbols, method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.timeout(60)
def test_every_truncation_and_extension_is_refused(method):
    symbols, data = sample_stream(method)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            decode_symbols(data[:n], len(symbols), method)
    with pytest.raises(FormatError):
        decode_symbols(data + b"\x00\x00\x00\x00", len(symbols), method)


@pytest.mark.parametrize("method", METHODS)
def test_wrong_count_is_refused(method):
    symbols, data = sample_stream(method)
    for count in (len(symbols) - 1, len(symbols) + 1, 0, 2**40):
        with pytest.raises(FormatError):
            decode_symbols(data, count, method)
    with pytest.raises(FormatError, match="holds 300 symbols, expected 299"):
        decode_symbols(data, 299, method, what="tensor 'x' stream 'index'")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.timeout(60)
def test_every_bit_flip_is_refused_or_decodes_to_the_right_length(method):
    symbols, data = sample_stream(method)
    for i in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[i // 8] ^= 0x80 >> (i % 8)
        try:
            out = decode_symbols(bytes(flipped), len(symbols), method)
        except FormatError:
            continue
        assert len(out) == len(symbols)  # a flip inside the payload can decode to other symbols


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80), count=st.integers(0, 400))
def test_garbage_never_crashes(method, data, count):
    try:
        out = decode_symbols(data, count, method)
    except FormatError:
        return
    assert len(out) == count and out.dtype == np.int64


def test_impossible_tables_are_refused():
    symbols = np.array([0, 1, 1, 2, 2, 2, 2, 2])
    head = uvarint(8) + uvarint(3) + b"\x00" + uvarint(0) + uvarint(0) + uvarint(0)
    bad_kraft = np.array([1, 1, 1], dtype=np.uint64)  # three 1-bit codes
    with pytest.raises(FormatError, match="Kraft"):
        decode_symbols(head + pack_bits(bad_kraft, np.full(3, 5)) + b"\xff", 8, "huffman")
    zero_length = pack_bits(np.array([0, 1, 1], dtype=np.uint64), np.full(3, 5))
    with pytest.raises(FormatError, match="lengths must be in"):
        decode_symbols(head + zero_length + b"\xff", 8, "huffman")
    good = encode_symbols(symbols, "ans")
    body = good[len(head) :]
    with pytest.raises(FormatError, match="precision"):
        decode_symbols(head + bytes([25]) + body[1:], 8, "ans")
    with pytest.raises(FormatError, match="at least 2"):
        decode_symbols(head + bytes([1]) + body[1:], 8, "ans")  # 2 slots for 3 symbols
    overfull = bytes([2, 2]) + pack_bits(np.array([3, 3], dtype=np.uint64), np.array([2, 2]))
    with pytest.raises(FormatError, match="sum to 8"):
        decode_symbols(head + overfull + body[-4:], 8, "ans")
    with pytest.raises(FormatError, match="zero word"):
        decode_symbols(good + b"\x00\x00\x00\x00", 8, "ans")
    with pytest.raises(FormatError, match="never occur"):
        decode_symbols(
            uvarint(8)
            + uvarint(3)
            + b"\x00"
            + uvarint(0)
            + uvarint(0)
            + uvarint(0)
            + huffman.encode(np.array([0, 1, 1, 1, 1, 1, 1, 1, 2]), 3)[:2]
            + b"\x00",
            8,
            "huffman",
        )


# ---- bit-level primitives ----------------------------------------------------------------------------------


@FAST
@given(st.lists(st.integers(0, 2**40 - 1), max_size=200), st.integers(1, 30))
def test_bucketize_roundtrip(values, direct_bits):
    values = np.array(values, dtype=np.int64)
    symbols, extra, widths = bucketize(values, direct_bits)
    assert np.array_equal(bucket_widths(symbols, direct_bits), widths)
    assert (extra < (np.int64(1) << widths)).all()
    packed = pack_bits(extra, widths)
    assert np.array_equal(unbucketize(symbols, unpack_bits(packed, widths, "t").astype(np.int64), direct_bits), values)


def test_bucket_symbols_grow_two_per_octave():
    symbols, extra, widths = bucketize(np.array([0, 15, 16, 23, 24, 31, 32, 2**27]), 4)
    assert symbols.tolist() == [0, 15, 16, 16, 17, 17, 18, 16 + 2 * 23]
    assert widths.tolist() == [0, 0, 3, 3, 3, 3, 4, 26]


@FAST
@given(st.integers(0, 2**64 - 1))
def test_uvarint_roundtrip(value):
    assert Reader(uvarint(value), "t").uvarint("v", 2**64) == value


def test_uvarint_rejects_overlong_and_out_of_range():
    with pytest.raises(FormatError, match="overlong"):
        Reader(b"\x81\x00", "t").uvarint("v", 10)
    with pytest.raises(FormatError, match="at most 10"):
        Reader(uvarint(11), "t").uvarint("v", 10)
    with pytest.raises(FormatError, match="needs 1 bytes"):
        Reader(b"\x80", "t").uvarint("v", 10)
