"""The `.lep` file: golden bytes, bit-exact round trips, a realistic pruned + shared LeNet-5, and refusal of
truncated, corrupted and forged files."""

import hashlib
import json
import lzma
import math
import struct
import zlib

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lepton.compress.coding.bits import uvarint
from lepton.compress.container import (
    HEADER_ROW,
    MAGIC,
    MAX_ELEMENTS,
    LepModel,
    decode_model,
    deflate_header,
    encode_model,
    inflate_header,
    inspect_lep,
    load_lep,
    save_lep,
)
from lepton.errors import ConfigError, FormatError
from lepton.models import build_model
from lepton.models.registry import ModelSpec

SPEC = ModelSpec("lenet-300-100", (1, 2, 2), 2)
BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def tiny_state(rows):
    w = torch.zeros(rows * 8)
    w[[3, 10, 11, 30, 47, rows * 8 - 1]] = torch.tensor([0.5, -0.25, 0.5, -0.0, 0.5, 0.5])
    return {
        "w": w.reshape(rows, 8),
        "v": torch.tensor([0.5, -0.5, 0.5, 0.5] * 8).reshape(4, 8),
        "b": torch.tensor([1.0, -2.0]),
        "n": torch.tensor(7),
    }


def same_bits(a, b):
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(BITS[a.element_size()]), b.reshape(-1).view(BITS[b.element_size()]))
    )


def assert_roundtrip(state, data):
    out = decode_model(data).state_dict
    assert list(out) == list(state)
    for name, t in state.items():
        assert same_bits(out[name], t), name


# ---- golden bytes ------------------------------------------------------------------------------------------
# Checked by hand. ANS file: w's codebook is -0.0, -0.25, 0.0, 0.5 (0x80000000 < 0xbe800000 < 0 < 0x3f000000
# as int32); w's index stream is count 64, k 4, bitmap alphabet 0..3 (f0), ANS precision 5, width 5, table
# 08 32 = f-1 [1, 0, 25] so f = [2, 1, 26, 3], then two words. v's index stream: count 32, k 2, list
# alphabet [0, 1], precision 4, width 3, f0 - 1 = 4 (byte 80), so f = [5, 11], words 0x75f00000 0x0001ae77.
# Huffman file: w is sparse; index stream: count 6, k 3, lengths [2, 2, 1] (10 82), ranks [2,1,2,0,2,2] as
# 0 11 0 10 0 0 + pad = 68; gaps [3, 6, 0, 18, 16, 79] with d = 1 are symbols [3, 5, 0, 8, 8, 12] and
# extra bits 0 010 000 01111 = 20 f0.

GOLDEN_ANS_HEADER = (
    '{"format":"lepton-model","metadata":{"note":"golden"},"model":{"input_shape":[1,2,2],"kwargs":{},'
    '"name":"lenet-300-100","num_classes":2},"tensors":[{"dtype":"float32","encoding":"dense","kept":6,'
    '"name":"w","shape":[8,8],"streams":[{"coder":"none","count":4,"crc32":2618577265,"length":16,'
    '"offset":0,"role":"codebook"},{"coder":"ans","count":64,"crc32":2812073968,"length":18,"offset":16,'
    '"role":"index"}]},{"dtype":"float32","encoding":"dense","kept":32,"name":"v","shape":[4,8],"streams":'
    '[{"coder":"none","count":2,"crc32":1104375185,"length":8,"offset":34,"role":"codebook"},{"coder":'
    '"ans","count":32,"crc32":1980557023,"length":16,"offset":42,"role":"index"}]},{"dtype":"float32",'
    '"encoding":"raw","kept":2,"name":"b","shape":[2],"streams":[{"coder":"none","count":2,"crc32":'
    '3280414294,"length":8,"offset":58,"role":"data"}]},{"dtype":"int64","encoding":"raw","kept":1,'
    '"name":"n","shape":[],"streams":[{"coder":"none","count":1,"crc32":1877464688,"length":8,"offset":66,'
    '"role":"data"}]}],"version":1}'
)
GOLDEN_ANS_PAYLOAD = (
    "00000080 000080be 00000000 0000003f"  # w codebook
    " 40 04 01 00 03 f0 05 05 0832 00006011 6f43d517"  # w index (ans)
    " 000000bf 0000003f"  # v codebook
    " 20 02 00 00 00 04 03 80 0000f075 77ae0100"  # v index (ans)
    " 0000803f 000000c0"  # b raw
    " 0700000000000000"
)  # n raw
GOLDEN_HUFFMAN_HEADER = (
    '{"format":"lepton-model","metadata":{"note":"golden"},"model":{"input_shape":[1,2,2],"kwargs":{},'
    '"name":"lenet-300-100","num_classes":2},"tensors":[{"dtype":"float32","encoding":"sparse",'
    '"gap_direct_bits":1,"kept":6,"name":"w","shape":[16,8],"streams":[{"coder":"none","count":3,"crc32":'
    '446777776,"length":12,"offset":0,"role":"codebook"},{"coder":"huffman","count":6,"crc32":1298586132,'
    '"length":9,"offset":12,"role":"index"},{"coder":"huffman","count":6,"crc32":2259769119,"length":13,'
    '"offset":21,"role":"gap"},{"coder":"bits","count":12,"crc32":1776337985,"length":2,"offset":34,'
    '"role":"gap_extra"}]},{"dtype":"float32","encoding":"dense","kept":32,"name":"v","shape":[4,8],'
    '"streams":[{"coder":"none","count":2,"crc32":1104375185,"length":8,"offset":36,"role":"codebook"},'
    '{"coder":"huffman","count":32,"crc32":95744319,"length":11,"offset":44,"role":"index"}]},{"dtype":'
    '"float32","encoding":"raw","kept":2,"name":"b","shape":[2],"streams":[{"coder":"none","count":2,'
    '"crc32":3280414294,"length":8,"offset":55,"role":"data"}]},{"dtype":"int64","encoding":"raw","kept":1,'
    '"name":"n","shape":[],"streams":[{"coder":"none","count":1,"crc32":1877464688,"length":8,"offset":63,'
    '"role":"data"}]}],"version":1}'
)
GOLDEN_HUFFMAN_PAYLOAD = (
    "00000080 000080be 0000003f"  # w codebook
    " 06 03 00 00 00 00 1082 68"  # w index (huffman)
    " 06 05 01 00 0c 9488 18c42100 e658"  # w gaps (huffman): bitmap alphabet {0, 3, 5, 8, 12}
    " 20f0"  # w gap extra bits
    " 000000bf 0000003f"  # v codebook
    " 20 02 00 00 00 0840 bbbbbbbb"  # v index (huffman): lengths [1, 1], ranks as bits
    " 0000803f 000000c0"  # b raw
    " 0700000000000000"
)  # n raw


GOLDEN_SHA256 = {
    ("ans", 1): "df94789f264c3069250b9f4cd0475a1d4c619d5b17e9979694aea3a408177819",
    ("huffman", 1): "bfab672bfc3f9080ad3f23c3f8a0f1c27893901f4ecd56322979d1be58677633",
    ("ans", 2): "70d993a1d45de9a1231e8bfbf035ead5079d81b4ae28a52f03ea83cc589f870e",
    ("huffman", 2): "2eeeab82cc5dbe36c7cf9c0dfdf3c26e3c6c0ee6504fc660a5815e08a304667b",
}


def golden(header, payload, version=2):
    raw = deflate_header(header.replace('"version":1}', f'"version":{version}}}').encode())
    return (
        MAGIC + struct.pack("<IQI", version, len(raw), zlib.crc32(raw)) + raw + bytes.fromhex(payload.replace(" ", ""))
    )


@pytest.mark.parametrize(
    "coder, rows, header, payload",
    [("ans", 8, GOLDEN_ANS_HEADER, GOLDEN_ANS_PAYLOAD), ("huffman", 16, GOLDEN_HUFFMAN_HEADER, GOLDEN_HUFFMAN_PAYLOAD)],
)
def test_golden_bytes(coder, rows, header, payload):
    expected = golden(header, payload)
    assert hashlib.sha256(expected).hexdigest() == GOLDEN_SHA256[coder, 2]  # the whole file, frozen
    assert expected[:24].hex()[:16] == "894c45500d0a1a0a" and expected[8:12] == b"\x02\x00\x00\x00"
    # the frozen bytes are the gaps-only (version 2) writer's; the default writer may only do better
    assert encode_model(SPEC, tiny_state(rows), coder=coder, metadata={"note": "golden"}, masks=False) == expected
    current = encode_model(SPEC, tiny_state(rows), coder=coder, metadata={"note": "golden"})
    assert len(current) <= len(expected)
    assert_roundtrip(tiny_state(rows), current)
    old = golden(header, payload, version=1)  # the same model as written before format version 2
    assert hashlib.sha256(old).hexdigest() == GOLDEN_SHA256[coder, 1]
    for data, version in ((expected, 2), (old, 1)):
        model = decode_model(data)
        assert model.spec == SPEC and model.metadata == {"note": "golden"} and model.header["version"] == version
        assert_roundtrip(tiny_state(rows), data)
    assert [r["encoding"] for r in inspect_lep(expected)][:3] == (
        ["dense", "dense", "raw"] if coder == "ans" else ["sparse", "dense", "raw"]
    )


# ---- round trips -------------------------------------------------------------------------------------------


def lenet5_pruned_shared(keep=0.08, levels=32, seed=0):
    """LeNet-5 weights shaped like trained ones (Laplace), magnitude-pruned to `keep`, each layer's survivors
    shared to `levels` values (linear bins, each value the mean of its bin, as k-means with linear init)."""
    torch.manual_seed(seed)
    state = build_model("lenet5").state_dict()
    for name, w in state.items():
        if name.endswith("weight"):
            w = torch.distributions.Laplace(0.0, w.abs().mean().item()).sample(w.shape)
            mask = w.abs() > w.abs().flatten().kthvalue(int((1 - keep) * w.numel())).values
            kept = w[mask]
            bins = torch.bucketize(kept, torch.linspace(kept.min().item(), kept.max().item(), levels + 1)[1:-1])
            means = torch.zeros(levels).index_add_(0, bins, kept) / torch.bincount(bins, minlength=levels).clamp(min=1)
            state[name] = torch.zeros_like(w).masked_scatter_(mask, means[bins])
    return state


@pytest.mark.parametrize("coder", ["ans", "huffman"])
def test_pruned_shared_lenet5_roundtrips_small(coder):
    state = lenet5_pruned_shared()
    data = encode_model(ModelSpec("lenet5"), state, coder=coder, metadata={"keep": 0.08, "bits": 5})
    assert_roundtrip(state, data)
    rows = inspect_lep(data)
    print(f"\nLeNet-5, 8% kept, 5-bit shared, {coder}: {len(data)} bytes")
    assert len(data) < 45_000  # 1.72 MB of float32 -> < 45 KB (measured: ans 40.2 KB, huffman 40.9 KB)
    assert sum(r["bytes"] for r in rows) == len(data) and math.isclose(sum(r["share"] for r in rows), 1.0)
    assert rows[-1]["tensor"] == HEADER_ROW
    fc1 = next(r for r in rows if r["tensor"] == "fc1.weight")
    assert fc1["kept"] == 32_000 and fc1["pct_kept"] == 8.0 and fc1["codebook"] <= 32
    assert (
        fc1["encoding"] in ("dense", "sparse", "sparse-mask") and fc1["bits_per_value"] + fc1["bits_per_position"] < 8.5
    )
    assert all(r["encoding"].startswith("raw") for r in rows if r["tensor"].endswith("bias"))
    model = decode_model(data).build_model()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_unshared_tensors_are_raw_compressed_or_sparse_raw():
    pruned = torch.randn(4000).masked_fill(torch.rand(4000) < 0.9, 0.0)
    state = {
        "dense": torch.randn(300),
        "pruned": pruned,
        "buffer": torch.zeros(1000, dtype=torch.int64),
        "ramp": torch.arange(1, 2001, dtype=torch.int32),
        "flags": torch.tensor([True, False, True]),
    }
    data = encode_model(SPEC, state)
    assert_roundtrip(state, data)
    rows = {r["tensor"]: r for r in inspect_lep(data)}
    assert rows["dense"]["encoding"].startswith("raw") and rows["flags"]["encoding"] == "raw"
    assert rows["ramp"]["encoding"] in ("raw+zstd", "raw+lzma")
    assert rows["buffer"]["encoding"] == "sparse-raw" and rows["buffer"]["bytes"] == 0
    assert rows["pruned"]["encoding"].startswith("sparse-raw") and rows["pruned"]["kept"] == int((pruned != 0).sum())
    assert rows["pruned"]["bytes"] < 4 * rows["pruned"]["kept"] * 1.25  # values + about 6 bits per position


def test_mask_multiplication_leaves_negative_zeros_that_count_as_kept():
    w = torch.tensor([-0.5, 0.25, -0.125, 0.75] * 50)
    multiplied = w * (w.abs() > 0.3)  # -0.125 * 0 = -0.0: a nonzero bit pattern, so it is kept
    filled = w.masked_fill(w.abs() <= 0.3, 0.0)
    rows = [inspect_lep(encode_model(SPEC, {"w": t}))[0] for t in (multiplied, filled)]
    assert [r["kept"] for r in rows] == [150, 100]


def test_both_raw_compressors_decode():
    from lepton.compress import container

    data = container._le(np.arange(5000, dtype=np.int64) % 7, "int64")
    bits = np.frombuffer(data, dtype="<i8")
    xz = lzma.compress(data, format=lzma.FORMAT_RAW, filters=container._lzma_filters(len(data)))
    for coder, packed in (("zstd", zstandard.ZstdCompressor(level=19).compress(data)), ("lzma", xz)):
        stream = container.StreamEntry(role="data", coder=coder, offset=0, length=len(packed), count=5000, crc32=0)
        assert np.array_equal(container._read_le(container._decompress(stream, packed, len(data), "t"), "int64"), bits)


SPECIAL_F32 = [0x00000000, 0x80000000, 0x7FC00001, 0xFFC12345, 0x7F800000, 0x00000001, 0x3F000000]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(
        [
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.float64,
            torch.int8,
            torch.uint8,
            torch.int16,
            torch.int32,
            torch.int64,
            torch.bool,
        ]
    ),
    shape=st.lists(st.integers(0, 9), max_size=3),
    seed=st.integers(0, 2**32 - 1),
    distinct=st.integers(1, 300),
    zeros=st.floats(0.0, 1.0),
    coder=st.sampled_from(["ans", "huffman"]),
)
def test_any_tensor_roundtrips_bit_exact(dtype, shape, seed, distinct, zeros, coder):
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    size = torch.empty(0, dtype=dtype).element_size()
    pool = rng.integers(-(2 ** (8 * size - 1)), 2 ** (8 * size - 1), distinct, dtype=np.int64)
    if dtype == torch.float32:
        pool[: len(SPECIAL_F32)] = np.array(SPECIAL_F32, dtype=np.uint32).view(np.int32)[:distinct]
    if dtype == torch.bool:
        pool %= 2
    bits = np.where(rng.random(n) < zeros, 0, pool[rng.integers(0, distinct, n)])
    view = BITS[size]
    t = torch.from_numpy(bits.astype(torch.empty(0, dtype=view).numpy().dtype)).view(dtype).reshape(shape)
    state = {"t": t, "scalar": torch.tensor(1.5, dtype=torch.float64)}
    assert_roundtrip(state, encode_model(SPEC, state, coder=coder))


def test_negative_zero_is_kept_and_roundtrips():
    state = {"w": torch.tensor([0.0, -0.0, 0.0, -0.0, 0.5] * 40)}
    data = encode_model(SPEC, state)
    assert_roundtrip(state, data)
    assert inspect_lep(data)[0]["kept"] == 120


def test_save_load_inspect_and_build(tmp_path):
    state = build_model("lenet-300-100", (1, 2, 2), 2).state_dict()
    path = tmp_path / "m.lep"
    n = save_lep(path, SPEC, state, coder="huffman", metadata={"accuracy": 0.5})
    assert n == path.stat().st_size and [p.name for p in tmp_path.iterdir()] == ["m.lep"]
    model = load_lep(path)
    assert isinstance(model, LepModel) and model.metadata == {"accuracy": 0.5}
    assert_roundtrip(state, path.read_bytes())
    assert inspect_lep(path) == inspect_lep(path.read_bytes())
    assert isinstance(model.build_model(), torch.nn.Module)
    wrong = LepModel(ModelSpec("lenet5"), model.state_dict, model.header, model.metadata)
    with pytest.raises(FormatError, match="do not fit model 'lenet5'"):
        wrong.build_model()
    with pytest.raises(FormatError, match="not found"):
        load_lep(tmp_path / "missing.lep")


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="'coder'"):
        encode_model(SPEC, {}, coder="zip")
    with pytest.raises(ConfigError, match="dtype"):
        encode_model(SPEC, {"c": torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(ConfigError, match="JSON"):
        encode_model(SPEC, {}, metadata={"x": object()})
    with pytest.raises(ConfigError, match="JSON"):
        encode_model(SPEC, {}, metadata={"x": float("nan")})
    with pytest.raises(ConfigError, match="dense torch.Tensor"):
        encode_model(SPEC, {"s": torch.zeros(3).to_sparse()})


# ---- refusing truncated, corrupted and forged files --------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "payload, header", [(GOLDEN_ANS_PAYLOAD, GOLDEN_ANS_HEADER), (GOLDEN_HUFFMAN_PAYLOAD, GOLDEN_HUFFMAN_HEADER)]
)
def test_every_truncation_and_bit_flip_is_refused(payload, header):
    data = golden(header, payload)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            decode_model(data[:n])
    with pytest.raises(FormatError, match="payload is"):
        decode_model(data + b"\x00")
    for i in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(FormatError):
            decode_model(bytes(flipped))


def split(data):
    n = struct.unpack_from("<Q", data, 12)[0]
    return json.loads(inflate_header(data[24 : 24 + n])), data[24 + n :]


def forge(data, edit=None, payload=None, version=2, magic=MAGIC, length_delta=0):
    """Rewrite a file's header with ``edit`` and a valid header CRC, so only the forged field is wrong."""
    header, old_payload = split(data)
    if edit:
        edit(header)
    raw = deflate_header(json.dumps(header).encode())
    return (
        magic
        + struct.pack("<IQI", version, len(raw) + length_delta, zlib.crc32(raw))
        + raw
        + (old_payload if payload is None else payload)
    )


def restream(data, edits):
    """Replace streams' bytes (``{(tensor, role): bytes}``), fixing offsets, lengths and CRCs."""
    header, payload = split(data)
    blobs = []
    for t in header["tensors"]:
        for s in t["streams"]:
            blob = edits.get((t["name"], s["role"]), payload[s["offset"] : s["offset"] + s["length"]])
            s.update(offset=sum(map(len, blobs)), length=len(blob), crc32=zlib.crc32(blob))
            blobs.append(blob)
    return forge(data, lambda h: h.update(header), payload=b"".join(blobs))


def tensor(name):
    return lambda h: next(t for t in h["tensors"] if t["name"] == name)


def set_in(name, **fields):
    return lambda h: tensor(name)(h).update(fields)


def set_stream(name, index, **fields):
    return lambda h: tensor(name)(h)["streams"][index].update(fields)


FORGERIES = {
    "wrong magic": (dict(magic=b"LEPTONM\x00"), "not a .lep file"),
    "wrong version": (dict(version=5), "version 5 is not supported"),
    "header version": (dict(edit=lambda h: h.update(version=3)), "version"),
    "mask in version 2": (dict(edit=set_in("v", encoding="sparse-raw-mask")), "needs streams|exists from"),
    "format tag": (dict(edit=lambda h: h.update(format="safetensors")), "format tag"),
    "header beyond file": (dict(length_delta=10_000), "header length"),
    "unknown key": (dict(edit=lambda h: h.update(code="import os")), "Extra inputs"),
    "huge shape": (dict(edit=set_in("w", shape=[1 << 20, 1 << 20])), "over the limit"),
    "huge total": (
        dict(edit=lambda h: [t.update(shape=[MAX_ELEMENTS // 2 + 1]) for t in h["tensors"]]),
        "over the limit",
    ),
    "negative dim": (dict(edit=set_in("w", shape=[-8, -8])), "greater than or equal"),
    "bad offset": (dict(edit=set_stream("v", 0, offset=35)), "offset 35, expected 34"),
    "overlapping": (dict(edit=set_stream("v", 1, offset=34)), "offset 34, expected 42"),
    "long stream": (dict(edit=set_stream("n", 0, coder="zstd", length=800)), "payload is"),
    "unknown encoding": (dict(edit=set_in("w", encoding="rle")), "encoding"),
    "unknown dtype": (dict(edit=set_in("b", dtype="complex64")), "dtype"),
    "wrong coder": (dict(edit=set_stream("v", 1, coder="zstd")), "coder 'zstd'"),
    "wrong roles": (dict(edit=lambda h: tensor("v")(h)["streams"].reverse()), "needs streams"),
    "count vs shape": (dict(edit=set_stream("w", 1, count=63)), "count 63, expected 64"),
    "raw length": (dict(edit=set_in("b", shape=[3])), "expected 12"),
    "kept > numel": (dict(edit=set_in("b", kept=3)), "kept elements"),
    "codebook size": (dict(edit=set_stream("w", 0, count=300)), "codebook"),
    "duplicate name": (dict(edit=lambda h: tensor("v")(h).update(name="w")), "appears twice"),
    "gap bits on dense": (dict(edit=set_in("w", gap_direct_bits=3)), "gap_direct_bits"),
    "sparse-raw roles": (dict(edit=set_in("w", encoding="sparse-raw", gap_direct_bits=1)), "needs streams"),
    "bad spec": (dict(edit=lambda h: h["model"].update(input_shape=[1, 2])), "spec"),
    "huge tt layout": (
        dict(
            edit=lambda h: h["model"].update(
                tt={"fc1": {"in_modes": [1 << 20] * 4, "out_modes": [1 << 20] * 4, "ranks": [4096] * 3}}
            )
        ),
        "more than",
    ),
    "malformed tt layout": (dict(edit=lambda h: h["model"].update(tt={"fc1": {"in_modes": "784"}})), "TT layout"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(FORGERIES))
def test_forged_headers_are_refused(case):
    kwargs, message = FORGERIES[case]
    data = forge(golden(GOLDEN_ANS_HEADER, GOLDEN_ANS_PAYLOAD), **kwargs)
    with pytest.raises(FormatError, match=message):
        decode_model(data)
    with pytest.raises(FormatError):
        inspect_lep(data)


def test_malformed_json_is_refused():
    data = golden(GOLDEN_ANS_HEADER, GOLDEN_ANS_PAYLOAD)
    for header, message in (
        (GOLDEN_ANS_HEADER.replace('"note":"golden"', '"note":NaN'), "not valid JSON"),
        (GOLDEN_ANS_HEADER.replace('"metadata"', '"version":1,"metadata"'), "duplicate"),
        (GOLDEN_ANS_HEADER[:-1], "not valid JSON"),
    ):
        with pytest.raises(FormatError, match=message):
            decode_model(golden(header, GOLDEN_ANS_PAYLOAD))
    raw = deflate_header(b'{"format":"lepton-model","x":"\xff"}')
    with pytest.raises(FormatError, match="UTF-8"):
        decode_model(MAGIC + struct.pack("<IQI", 1, len(raw), zlib.crc32(raw)) + raw)
    with pytest.raises(FormatError, match="header length"):
        decode_model(data[:12] + struct.pack("<Q", 1 << 40) + data[20:])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h.replace('"note":"golden"', '"note":' + "[" * 100_000 + "]" * 100_000), "100002 levels deep"),
        (lambda h: h.replace('"note":"golden"', '"note":1e999'), "1e999, which overflows"),
        (lambda h: h.replace('"note":"golden"', '"note":-Infinity'), "-Infinity"),
        (lambda h: h.replace('"note":"golden"', '"note":' + "7" * 5000), "more than 4300 digits"),
        (lambda h: h.replace('"note":"golden"', '"note":1,"note":2'), "duplicate JSON key 'note'"),
    ],
)
def test_strict_json_attacks_with_valid_crcs_are_refused(edit, message):
    with pytest.raises(FormatError, match=f"^the .lep header .*{message}") as info:
        decode_model(golden(edit(GOLDEN_ANS_HEADER), GOLDEN_ANS_PAYLOAD))
    assert "\n" not in str(info.value)


def test_metadata_deeper_than_a_reader_allows_is_refused_on_write():
    deep = {}
    for _ in range(70):
        deep = {"x": deep}
    with pytest.raises(ConfigError, match="levels deep; a .lep header allows at most 64"):
        encode_model(SPEC, {}, metadata=deep)


def test_forged_streams_with_valid_crcs_are_refused():
    ans_file = golden(GOLDEN_ANS_HEADER, GOLDEN_ANS_PAYLOAD)
    huffman_file = golden(GOLDEN_HUFFMAN_HEADER, GOLDEN_HUFFMAN_PAYLOAD)
    f32 = lambda *v: np.array(v, dtype="<f4").tobytes()  # noqa: E731
    cases = [
        (restream(ans_file, {("v", "codebook"): f32(0.5, -0.5)}), "strictly increasing"),
        (restream(huffman_file, {("w", "codebook"): f32(0.5, -0.0, -0.25)}), "strictly increasing"),
        (restream(huffman_file, {("w", "codebook"): np.array([0, 1, 2], "<i4").tobytes()}), "holds a zero"),
        (restream(ans_file, {("n", "data"): b"\x07" + bytes(7)}), None),  # same bytes: still valid
        (
            forge(
                restream(ans_file, {("n", "data"): zstandard.ZstdCompressor().compress(bytes(1 << 20))}),
                set_stream("n", 0, coder="zstd"),
            ),
            "does not declare",
        ),
        (forge(restream(ans_file, {("n", "data"): b"\x00" * 7 + b"\x01"}), set_in("n", kept=0)), "header says 0"),
        (
            forge(
                restream(ans_file, {("b", "data"): b"\x02\x00" + bytes(6)}),
                lambda h: (set_in("b", dtype="bool", shape=[8], kept=1)(h), set_stream("b", 0, count=8)(h)),
            ),
            "bool",
        ),
        (
            restream(ans_file, {("v", "index"): uvarint(32) + uvarint(1) + b"\x00" + uvarint(5)}),
            "index 5 into a codebook of 2",
        ),
        (restream(huffman_file, {("w", "gap_extra"): b"\xff\xf0"}), "outside"),
        (restream(huffman_file, {("w", "gap_extra"): b"\x20\xf8"}), "padding"),
    ]
    pruned = torch.tensor([0.0, 1.5, 0.0, 0.0, -2.5, 0.0] * 300)
    pruned[1::6] += torch.arange(300) / 1024  # 301 distinct nonzero values: not shared, so stored sparse-raw
    raw_file = encode_model(SPEC, {"p": pruned})
    assert inspect_lep(raw_file)[0]["encoding"].startswith("sparse-raw")
    f32_zero_values = f32(*([0.0] + [1.0] * 599))
    cases += [
        (
            forge(restream(raw_file, {("p", "values"): f32_zero_values}), set_stream("p", 0, coder="none")),
            "nonzero elements, header says 600",
        ),
        (forge(raw_file, set_stream("p", 0, count=601)), "count 601, expected 600"),
        (forge(raw_file, set_in("p", kept=601)), "count 600, expected 601|expected 2404"),
    ]
    for data, message in cases:
        if message is None:
            decode_model(data)
            continue
        with pytest.raises(FormatError, match=message):
            decode_model(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def json_paths(obj, path=()):
    yield path
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from json_paths(value, (*path, key))


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzzed_header_fields_are_refused_cleanly(data):
    """Any header field replaced by any JSON value (with a valid CRC): FormatError or a clean decode."""
    file = golden(GOLDEN_HUFFMAN_HEADER, GOLDEN_HUFFMAN_PAYLOAD)
    header, _ = split(file)
    path = data.draw(st.sampled_from([p for p in json_paths(header) if p]))
    value = data.draw(JSON_VALUES)

    def edit(h):
        parent = h
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value

    try:
        decode_model(forge(file, edit))
    except FormatError:
        pass


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10**6),
    tail=st.binary(max_size=8),
)
def test_random_corruptions_are_refused(edits, cut, tail):
    file = bytearray(golden(GOLDEN_ANS_HEADER, GOLDEN_ANS_PAYLOAD))
    original = bytes(file)
    for position, byte in edits:
        file[position % len(file)] = byte
    file = bytes(file[: len(file) - cut % 4]) + tail
    if file == original:
        return
    with pytest.raises(FormatError):
        decode_model(file)


def test_header_deflate_bombs_and_garbage_are_refused():
    bomb = deflate_header(b" " * (17 << 20))  # inflates past the 16 MiB cap
    assert len(bomb) < 100_000
    for raw, message in (
        (bomb, "inflates to more than"),
        (b"\xff\xff\xff", "not a valid DEFLATE"),
        (deflate_header(b"{}")[:-1], "incomplete"),
        (deflate_header(b"{}") + b"x", "extra bytes"),
    ):
        with pytest.raises(FormatError, match=message):
            decode_model(MAGIC + struct.pack("<IQI", 1, len(raw), zlib.crc32(raw)) + raw)


def _as_version_1(data: bytes) -> bytes:
    """The same file as Lepton wrote it before format version 2: version 1 in the preamble and the header."""
    from lepton.compress.container import PREAMBLE, inflate_header

    _, _, size, _ = PREAMBLE.unpack_from(data)
    header = json.loads(inflate_header(data[PREAMBLE.size : PREAMBLE.size + size]))
    header["version"] = 1
    stored = deflate_header(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    return PREAMBLE.pack(MAGIC, 1, len(stored), zlib.crc32(stored)) + stored + data[PREAMBLE.size + size :]


def test_version_1_files_still_load_and_versions_must_agree():
    from lepton.compress.container import PREAMBLE

    state = build_model("lenet-300-100", (1, 8, 8), 10).state_dict()
    data = encode_model(ModelSpec("lenet-300-100", (1, 8, 8), 10), state)
    assert PREAMBLE.unpack_from(data)[1] == 2
    old = decode_model(_as_version_1(data))
    assert all(torch.equal(old.state_dict[k], v) for k, v in state.items())
    mixed = bytearray(_as_version_1(data))
    mixed[8:12] = (2).to_bytes(4, "little")  # the preamble is not covered by the header CRC
    with pytest.raises(FormatError, match="header says version 1 but the preamble says 2"):
        decode_model(bytes(mixed))


def structured_state():
    """A pruned, shared conv weight with whole filters and input channels removed, and an unshared one."""
    g = torch.Generator().manual_seed(0)
    w = torch.randint(-3, 4, (40, 16, 3, 3), generator=g).float() / 8
    w[::2] = 0
    w[:, 1::4] = 0
    raw = torch.randn(64, 96, generator=g)
    raw[torch.rand(64, 96, generator=g) > 0.3] = 0
    raw[:, ::3] = 0
    return {"w": w, "raw": raw, "b": torch.tensor([1.0, -2.0])}


def test_mask_coded_positions_round_trip_as_version_3_and_gap_files_stay_version_2():
    from lepton.compress.container import PREAMBLE

    state = structured_state()
    data = encode_model(SPEC, state)
    assert PREAMBLE.unpack_from(data)[1] == 3 and decode_model(data).header["version"] == 3
    rows = {r["tensor"]: r for r in inspect_lep(data)}
    assert rows["w"]["encoding"] == "sparse-mask" and rows["raw"]["encoding"].startswith("sparse-raw-mask")
    assert_roundtrip(state, data)
    plain = tiny_state(8)
    assert PREAMBLE.unpack_from(encode_model(SPEC, plain))[1] == 2  # no mask used: older readers still read it
    gaps_only = encode_model(SPEC, state, masks=False)  # for readers before version 3
    assert PREAMBLE.unpack_from(gaps_only)[1] == 2 and len(gaps_only) > len(data)
    assert {r["encoding"] for r in inspect_lep(gaps_only)} <= {"sparse", "sparse-raw", "sparse-raw+zstd", "raw", "json"}
    assert_roundtrip(state, gaps_only)


def test_forged_version_3_files_are_refused():
    data = encode_model(SPEC, structured_state())
    rng_mask = restream(data, {("w", "mask"): b"\x00\x02" + uvarint(1) + b"\x80"})
    cases = [
        (forge(data, lambda h: h.update(version=2)), "exists from .lep version 3"),
        (forge(data, set_in("w", gap_direct_bits=2), version=3), "gap_direct_bits"),
        (forge(data, set_stream("w", 2, count=7), version=3), "count 7, expected 5760"),
        (forge(data, set_stream("w", 2, coder="ans"), version=3), "coder 'ans'"),
        (forge(data, set_in("w", encoding="sparse"), version=3), "needs streams"),
        (forge(data, set_in("raw", encoding="sparse-raw"), version=3), "needs streams"),
        (forge(restream(data, {("w", "mask"): b"\x04"}), version=3), "0 kept positions"),
        (forge(rng_mask, version=3), "mask"),
        (forge(data, version=2), "header says version 3 but the preamble says 2"),
    ]
    for forged, message in cases:
        with pytest.raises(FormatError, match=message):
            decode_model(forged)


@pytest.mark.timeout(60)
@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 60),
    keep=st.floats(0.0, 1.0),
    levels=st.integers(1, 300),
    seed=st.integers(0, 2**31 - 1),
)
def test_masks_never_make_a_file_bigger(rows, cols, keep, levels, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(1, levels + 1, (rows, cols), generator=g).float() / 7
    w[torch.rand(rows, cols, generator=g) > keep] = 0
    w[torch.rand(rows, generator=g) < 0.3] = 0
    state = {"w": w, "b": torch.ones(3)}
    data, gaps_only = encode_model(SPEC, state), encode_model(SPEC, state, masks=False)
    assert len(data) <= len(gaps_only)
    assert_roundtrip(state, data)
