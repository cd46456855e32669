"""The context-coded keep-mask (lepton.compress.coding.mask): bit-exact round trips on random masks, and
refusal of truncated, trailed and forged streams."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lepton.compress.coding.bits import uvarint
from lepton.compress.coding.mask import decode_mask as decode
from lepton.compress.coding.mask import encode_mask, mask_view
from lepton.errors import ConfigError, FormatError


@st.composite
def masks(draw):
    rows, cols = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["random", "empty", "full", "one row", "one column", "structured"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.001, 0.02, 0.1, 0.5, 0.9, 0.999]))
    mask = rng.random((rows, cols)) < density
    if kind == "empty":
        mask[:] = False
    elif kind == "full":
        mask[:] = True
    elif kind == "one row":
        mask[np.arange(rows) != rng.integers(rows)] = False
    elif kind == "one column":
        mask[:, np.arange(cols) != rng.integers(cols)] = False
    elif kind == "structured":  # removed filters and input channels
        mask[rng.random(rows) < 0.4] = False
        mask[:, rng.random(cols) < 0.4] = False
    return mask


@settings(max_examples=150, deadline=None)
@given(mask=masks())
def test_random_masks_round_trip_bit_exactly(mask):
    data = encode_mask(mask)
    out = decode(data, *mask.shape)
    assert out.dtype == np.bool_ and out.shape == mask.shape and np.array_equal(out, mask)
    if not mask.any():
        assert data == b"\x04"


def test_edge_shapes_and_sizes():
    for mask in (np.ones((1, 1), bool), np.zeros((1, 1), bool), np.zeros((1, 0), bool), np.eye(7, dtype=bool)):
        assert np.array_equal(decode(encode_mask(mask), *mask.shape), mask)
    assert len(encode_mask(np.ones((500, 800), bool))) < 16  # a full mask: every context is certain
    rng = np.random.default_rng(0)
    structured = rng.random((400, 400)) < 0.1
    structured[::2] = False  # half the rows removed: they cost one bit each
    plain = rng.random((200, 400)) < 0.1
    assert len(encode_mask(structured)) < len(encode_mask(plain)) + 60
    assert mask_view([20, 1, 5, 5]) == (20, 25) and mask_view([7]) == (1, 7) and mask_view([]) == (1, 1)
    assert mask_view([0, 3]) == (1, 0)
    # both models are in use: neighbours win on blocky masks, row/column groups on uneven random ones
    blocks = np.kron(rng.random((60, 60)) < 0.3, np.ones((3, 3), bool))
    uneven = rng.random((300, 300)) < np.outer(rng.random(300), rng.random(300)) * 0.3
    assert encode_mask(blocks)[0] & 8 == 0 and encode_mask(uneven)[0] & 8 == 8
    for mask in (blocks, uneven):
        assert np.array_equal(decode(encode_mask(mask), *mask.shape), mask)
    with pytest.raises(ConfigError, match="2-D bool"):
        encode_mask(np.ones(5, bool))


def test_truncated_trailed_and_forged_streams_are_refused():
    rng = np.random.default_rng(1)
    mask = rng.random((30, 40)) < 0.2
    mask[3] = False
    mask[:, 5] = False
    data = encode_mask(mask)
    for cut in range(len(data)):
        with pytest.raises(FormatError):
            decode(data[:cut], 30, 40)
    with pytest.raises(FormatError):
        decode(data + b"\x01\x00\x00\x00", 30, 40)
    rows = np.packbits(np.ones(30, bool)).tobytes()
    cases = [
        (b"\x10", "flags"),  # an unknown flag bit
        (b"\x08\x00", "0 row groups"),
        (b"\x08\x09", "flags|groups"),
        (b"\x08\x02" + uvarint(4) + uvarint(30) + b"\x01\x00\x05", "row group 5 of 2"),
        (b"\x05", "empty mask together with maps"),
        (b"\x04\x00", "unexpected bytes"),
        (b"\x01" + rows + b"\x04" + uvarint(1) + b"\x80", "a map is written only when"),  # a row map with no empty row
        (b"\x00\x00" + uvarint(1) + b"\x80", "precision 0"),
        (b"\x00\x11", "precision"),  # 17 > 16
        (b"\x00\x02" + uvarint(0), "no mask context"),
        (b"\x00\x02" + uvarint(1) + b"\xe0", "over 2\\*\\*2"),  # 7 > 4 in 3 bits
        (b"\x00\x02" + uvarint(1) + b"\x80", "context the table does not list"),  # only context 0 listed
        (b"\x00\x02" + uvarint(1) + b"\x80" + b"\x00\x00\x00\x00", "zero word"),
        (b"\x00\x02" + uvarint(1) + b"\x80" + b"\x01\x00", "whole 32-bit words"),
    ]
    for stream, message in cases:
        with pytest.raises(FormatError, match=message):
            decode(stream, 30, 40)
    # context 0 certain-zero, all others absent: a 1x1 mask decodes to an empty row, which a listed row may not be
    with pytest.raises(FormatError, match="listed row or column empty"):
        decode(b"\x00\x02" + uvarint(1) + b"\x00", 1, 1)
    tall = np.zeros((60_000, 2), bool)
    tall[::3, 0] = tall[1::3, 1] = True
    assert encode_mask(tall)[0] & 8 and np.array_equal(decode(encode_mask(tall), 60_000, 2), tall)
    with pytest.raises(FormatError, match="neighbour model for 20000 rows"):
        decode(b"\x00\x02" + uvarint(1) + b"\x80", 20_000, 2)
    with pytest.raises(FormatError, match="non-empty mask for a 1x0"):
        decode(b"\x00", 1, 0)
