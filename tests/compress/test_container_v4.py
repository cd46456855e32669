"""Compact `.lep` files (format version 4): implied offsets and one payload CRC, float16 ("half") codebooks and
raw values when exact; bit-exact round trips, smaller files, refusal of forged v4 headers, and round_to_half."""

import json
import math
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lepton.compress.coding.half import narrow_exact, widen
from lepton.compress.container import MAGIC, PREAMBLE, decode_model, deflate_header, encode_model, inspect_lep
from lepton.compress.share import round_to_half
from lepton.errors import ConfigError, FormatError
from lepton.models import build_model
from lepton.models.registry import ModelSpec
from tests.compress.test_container import (
    BITS,
    SPEC,
    SPECIAL_F32,
    assert_roundtrip,
    lenet5_pruned_shared,
    split,
    structured_state,
    tiny_state,
)


def version(data):
    return PREAMBLE.unpack_from(data)[1]


def coders(data):
    """{tensor name: [stream coders]} of a file."""
    return {t["name"]: [s["coder"] for s in t["streams"]] for t in split(data)[0]["tensors"]}


def pack(header, payload, file_version=4, payload_crc=True):
    """A file with ``header`` (a JSON object) and ``payload``; a v4 header gets the payload's true CRC."""
    if payload_crc and "payload_crc32" in header:
        header = {**header, "payload_crc32": zlib.crc32(payload)}
    raw = deflate_header(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    return MAGIC + struct.pack("<IQI", file_version, len(raw), zlib.crc32(raw)) + raw + payload


def as_v3(header, payload):
    """The same streams in the version 1-3 shape: per-stream offset and CRC, no payload CRC."""
    header = json.loads(json.dumps(header))
    del header["payload_crc32"]
    offset = 0
    for t in header["tensors"]:
        for s in t["streams"]:
            s.update(offset=offset, crc32=zlib.crc32(payload[offset : offset + s["length"]]))
            offset += s["length"]
    header["version"] = 3
    return header


# ---- the float16 coder -------------------------------------------------------------------------------------


def test_widening_every_half_matches_numpy_and_narrowing_inverts_it():
    halves = np.arange(1 << 16, dtype=np.uint16)
    ours = widen(halves)
    ref = halves.view(np.float16).astype(np.float32)
    nan = np.isnan(ref)
    assert np.array_equal(ours[~nan], ref[~nan].view(np.int32))  # independent reference: numpy's conversion
    assert np.isnan(ours.view(np.float32)[nan]).all()
    assert np.array_equal(ours[nan] & 0x1FFF, np.zeros(nan.sum(), np.int32))  # a NaN payload moves up 13 bits
    assert np.array_equal(narrow_exact(ours[~nan]), halves[~nan])
    one_ulp_off = np.array([0x3F800001], dtype=np.int32)  # 1 + 2^-23 has no float16 form
    beyond = np.array([0x47800000], dtype=np.int32)  # 65536 overflows float16
    assert narrow_exact(one_ulp_off) is None and narrow_exact(beyond) is None


def test_half_codebook_and_values_are_chosen_exactly_when_exact():
    exact = torch.tensor([0.5, -0.25, 0.0, 1.5, -0.0, 2.0**-24] * 30)  # 2^-24: the smallest float16 subnormal
    inexact = exact.clone()
    inexact[7] = 1.0 + 2.0**-20
    bias = torch.tensor([0.1, -3.0]).half().float()
    state = {
        "exact": exact,
        "inexact": inexact,
        "bias": bias,
        "bias_inexact": torch.tensor([0.1, -3.0]),
        "f64": exact.double(),
        "f16": exact.half(),
    }
    data = encode_model(SPEC, state, compact=True)
    assert version(data) == 4
    got = coders(data)
    assert got["exact"][0] == "half" and got["inexact"][0] == "none"
    assert got["bias"] == ["half"] and got["bias_inexact"] == ["none"]
    assert got["f64"][0] == "none" and got["f16"][0] == "none"
    assert_roundtrip(state, data)
    rows = {r["tensor"]: r for r in inspect_lep(data)}
    assert rows["exact"]["encoding"].endswith("+half") and rows["bias"]["encoding"] == "raw+half"
    assert rows["exact"]["codebook"] == 6 and rows["bias"]["bytes"] == 4
    assert all(c != "half" for cs in coders(encode_model(SPEC, state)).values() for c in cs)  # default: never


SPECIAL_HALF_EXACT = [0x00000000, 0x80000000, 0x7FC00000, 0xFFC02000, 0x7F800000, 0x33800000, 0x477FE000]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from([torch.float32, torch.float32, torch.float16, torch.float64, torch.int32, torch.bool]),
    shape=st.lists(st.integers(0, 9), max_size=3),
    seed=st.integers(0, 2**32 - 1),
    distinct=st.integers(1, 300),
    zeros=st.floats(0.0, 1.0),
    halves=st.booleans(),
    coder=st.sampled_from(["ans", "huffman"]),
    masks=st.booleans(),
)
def test_compact_files_roundtrip_bit_exact(dtype, shape, seed, distinct, zeros, halves, coder, masks):
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    size = torch.empty(0, dtype=dtype).element_size()
    pool = rng.integers(-(2 ** (8 * size - 1)), 2 ** (8 * size - 1), distinct, dtype=np.int64)
    if dtype == torch.float32:
        if halves:  # float16-exact values (as rounded weights are), NaN payloads and -0.0 among them
            pool = widen(rng.integers(0, 1 << 16, distinct)).astype(np.int64)
            pool[: len(SPECIAL_HALF_EXACT)] = np.array(SPECIAL_HALF_EXACT, np.uint32).view(np.int32)[:distinct]
        else:
            pool[: len(SPECIAL_F32)] = np.array(SPECIAL_F32, dtype=np.uint32).view(np.int32)[:distinct]
    if dtype == torch.bool:
        pool %= 2
    bits = np.where(rng.random(n) < zeros, 0, pool[rng.integers(0, distinct, n)])
    t = torch.from_numpy(bits.astype(torch.empty(0, dtype=BITS[size]).numpy().dtype)).view(dtype).reshape(shape)
    state = {"t": t, "b": torch.tensor([0.5, -0.0, 3.0]), "scalar": torch.tensor(1.5, dtype=torch.float64)}
    data = encode_model(SPEC, state, coder=coder, masks=masks, compact=True)
    assert version(data) == 4 and "payload_crc32" in split(data)[0]
    assert all("offset" not in s and "crc32" not in s for t in split(data)[0]["tensors"] for s in t["streams"])
    assert_roundtrip(state, data)
    assert len(data) < len(encode_model(SPEC, state, coder=coder, masks=masks))


def test_masks_and_gaps_roundtrip_in_compact_files():
    state = structured_state()
    data = encode_model(SPEC, state, compact=True)
    assert any("mask" in r["encoding"] for r in inspect_lep(data)) and version(data) == 4
    assert_roundtrip(state, data)
    assert_roundtrip(state, encode_model(SPEC, state, compact=True, masks=False))


def test_default_writer_is_unchanged_and_older_versions_still_load():
    assert version(encode_model(SPEC, tiny_state(8))) == 2
    assert version(encode_model(SPEC, structured_state())) == 3
    for data in (encode_model(SPEC, tiny_state(8)), encode_model(SPEC, structured_state())):
        header, _ = split(data)
        assert "payload_crc32" not in header
        assert all({"offset", "crc32"} <= set(s) for t in header["tensors"] for s in t["streams"])


def test_compact_lenet5_is_smaller_header_and_total(capsys):
    """A sparse, shared LeNet-5 of about 5 KB (0.4% kept, 32 levels, float16-rounded): the size this is for."""
    state = lenet5_pruned_shared(keep=0.004, levels=32)
    round_to_half(state)
    spec = ModelSpec("lenet5")
    old, new = encode_model(spec, state), encode_model(spec, state, compact=True)
    assert version(old) in (2, 3) and version(new) == 4
    assert_roundtrip(state, new)
    old_header, new_header = inspect_lep(old)[-1]["bytes"], inspect_lep(new)[-1]["bytes"]
    with capsys.disabled():
        print(f"\nLeNet-5 0.4% kept: header {old_header} -> {new_header} B, file {len(old)} -> {len(new)} B")
    assert new_header < old_header - 120  # measured 666 -> 486
    assert len(new) < len(old) - 400  # measured 5188 -> 4560
    assert all(r["encoding"].endswith("+half") for r in inspect_lep(new)[:-1])


# ---- forged version-4 files --------------------------------------------------------------------------------


def compact_file():
    state = {"w": torch.tensor([0.5, -0.25, 0.0, 1.5] * 16).reshape(8, 8), "b": torch.tensor([1.0, -2.0])}
    data = encode_model(SPEC, state, compact=True)
    assert coders(data) == {"w": ["half", "ans"], "b": ["half"]}
    return split(data)


def edit(header, fn):
    header = json.loads(json.dumps(header))
    fn(header)
    return header


def stream(name, index):
    return lambda h: next(t for t in h["tensors"] if t["name"] == name)["streams"][index]


def forgeries():
    h, p = compact_file()
    w_codebook = stream("w", 0)
    swapped = p[2:4] + p[0:2] + p[4:]  # the first two codebook halves swapped: order broken after widening
    return {
        "offset in v4": (
            pack(edit(h, lambda x: w_codebook(x).update(offset=0)), p),
            "must not have a per-stream 'offset'",
        ),
        "crc32 in v4": (
            pack(edit(h, lambda x: w_codebook(x).update(crc32=0)), p),
            "must not have a per-stream 'crc32'",
        ),
        "no payload crc": (pack(edit(h, lambda x: x.pop("payload_crc32")), p), "needs a 'payload_crc32'"),
        "null payload crc": (pack(edit(h, lambda x: x.update(payload_crc32=None)), p, payload_crc=False), "payload"),
        "wrong payload crc": (pack(h, p[:-1] + bytes([p[-1] ^ 1]), payload_crc=False), "payload CRC32"),
        "v3 with payload crc": (
            pack(edit(as_v3(h, p), lambda x: x.update(payload_crc32=zlib.crc32(p))), p, 3, False),
            "version 3 must not have a 'payload_crc32'",
        ),
        "v3 without offsets": (
            pack(edit(h, lambda x: x.update(version=3) or x.pop("payload_crc32")), p, 3),
            "needs a per-stream 'offset'",
        ),
        "half in v3": (pack(as_v3(h, p), p, 3), "coder 'half' .* from .lep version 4"),
        "half on float64": (pack(edit(h, lambda x: x["tensors"][1].update(dtype="float64")), p), "coder 'half'"),
        "half codebook length": (
            pack(edit(h, lambda x: w_codebook(x).update(count=5)), p),
            "expected a float codebook",
        ),
        "half values length": (pack(edit(h, lambda x: stream("b", 0)(x).update(count=3)), p), "count|bytes"),
        "truncated payload": (pack(h, p[:-1]), "payload is"),
        "padded payload": (pack(h, p + b"\x00"), "payload is"),
        "half codebook order": (pack(h, swapped), "not strictly increasing"),
        "preamble says 3": (pack(h, p, 3), "header says version 4 but the preamble says 3"),
    }


@pytest.mark.parametrize("case", list(forgeries()))
def test_forged_version_4_files_are_refused(case):
    data, message = forgeries()[case]
    with pytest.raises(FormatError, match=message):
        decode_model(data)
    with pytest.raises(FormatError):
        inspect_lep(data)


def test_the_forgery_harness_builds_valid_files():
    h, p = compact_file()
    assert_roundtrip(decode_model(pack(h, p)).state_dict, pack(h, p))
    assert decode_model(pack(h, p)).header["version"] == 4


# ---- round_to_half -----------------------------------------------------------------------------------------


def test_round_to_half_on_a_model_matches_torch_and_makes_codebooks_half():
    model = build_model("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = round_to_half(model)
    after = model.state_dict()
    assert report.tensors == 8 and report.elements == sum(v.numel() for v in before.values())
    for k, v in before.items():
        assert after[k].dtype == torch.float32 and torch.equal(after[k], v.half().float())  # reference: torch
    assert report.changed == sum(int((after[k] != v).sum()) for k, v in before.items()) > 0
    assert 0 < report.max_abs_change == max(float((after[k] - v).abs().max()) for k, v in before.items())
    data = encode_model(ModelSpec("lenet5"), after, compact=True)
    for row in inspect_lep(data)[:-1]:  # unshared, so raw: float16, or LZMA/zstd where that beats it
        assert row["encoding"] in ("raw+half", "raw+lzma", "raw+zstd") and row["bytes"] <= 2 * row["weights"]
    assert "raw+half" in {r["encoding"] for r in inspect_lep(data)}
    assert round_to_half(model).changed == 0  # already exact


def test_round_to_half_keeps_zeros_and_out_of_range_values():
    w = torch.tensor([1e-9, -1e-9, -0.0, 0.0, 1e6, -1e6, 0.1, float("nan")])
    state = {"fc.weight": w.clone(), "fc.bias": w.clone(), "steps": torch.tensor(3), "bn.running_mean": w.clone()}
    report = round_to_half(state)
    out = state["fc.weight"]
    assert out[:2].view(torch.int32).tolist() == [0, 0]  # tiny values become +0.0, never -0.0 (a kept weight)
    assert out[2:4].view(torch.int32).tolist() == [w[2:4].view(torch.int32).tolist()[0], 0]
    assert out[4:6].tolist() == [1e6, -1e6] and out[6].item() == torch.tensor(0.1).half().item() and out[7].isnan()
    assert torch.equal(state["bn.running_mean"].view(torch.int32), w.view(torch.int32))  # not a weight or bias
    assert report.tensors == 2 and report.changed == 6


def test_round_to_half_refuses_other_inputs():
    with pytest.raises(ConfigError, match="nn.Module or a state dict"):
        round_to_half([torch.ones(3)])
