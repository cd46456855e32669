"""Canonical Huffman coding of rank streams (symbols 0..k-1, k >= 2), with optimal length-limited codes.

Body layout (after the alphabet that :mod:`lepton.compress.coding` writes): the k code lengths, 5 bits each,
MSB first, zero-padded to a byte; then the codewords of all symbols, MSB first, zero-padded to a byte.
Code lengths come from package-merge (Larmore & Hirschberg 1990), which gives the optimal prefix code whose
longest codeword is at most ``MAX_CODE_LENGTH`` bits; codes are canonical (shorter first, then by rank).
"""

from __future__ import annotations

import numpy as np

from lepton.compress.coding.bits import Reader, pack_bits, pack_fixed, unpack_fixed
from lepton.errors import FormatError

MAX_CODE_LENGTH = 24
LENGTH_BITS = 5  # a code length in 1..24 fits in 5 bits
_CHUNK_BITS = 1 << 20  # decode this many bit positions at a time to bound memory


def code_lengths(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Optimal code lengths (each <= ``max_length``) for symbols with positive ``counts`` (package-merge).

    Coin-collector view: every symbol is a coin of each denomination 2**-1 .. 2**-max_length; buy total
    face value n-1 at minimum weight. Level d's list merges the leaves with pairs ("packages") of level d+1's
    sorted list; the first 2n-2 items of level 1 are the purchase, and a symbol's code length is the number of
    levels whose purchase includes it. Leaves enter each list in ascending weight order, so a purchase of m
    leaves at a level is always the m lightest symbols.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = len(counts)
    if n < 2 or counts.min() <= 0:
        raise ValueError(f"code_lengths needs at least 2 positive counts, got {counts.tolist()[:8]}.")
    if n > 1 << max_length:
        raise ValueError(f"{n} symbols cannot have codes of at most {max_length} bits; raise max_length.")
    order = np.argsort(counts, kind="stable")
    leaves = counts[order]
    items = leaves
    leaf_masks = []  # per level, from max_length-1 up to 1: which items of the merged list are leaves
    for _ in range(max_length - 1):
        pairs = len(items) // 2
        packages = items[0 : 2 * pairs : 2] + items[1 : 2 * pairs : 2]
        merged = np.concatenate([leaves, packages])
        idx = np.argsort(merged, kind="stable")  # ties: leaves before packages
        leaf_masks.append(idx < n)
        items = merged[idx]
    sorted_lengths = np.zeros(n, dtype=np.int64)
    take = 2 * n - 2
    for is_leaf in reversed(leaf_masks):
        n_leaves = int(is_leaf[:take].sum())
        sorted_lengths[:n_leaves] += 1
        take = 2 * (take - n_leaves)
    sorted_lengths[:take] += 1  # the deepest level holds only leaves
    lengths = np.empty(n, dtype=np.int64)
    lengths[order] = sorted_lengths
    return lengths


def _canonical(lengths: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ranks sorted by (length, rank), per-length count, first code, first index), lengths indexed 0..max."""
    by_code = np.lexsort((np.arange(len(lengths)), lengths))
    per_length = np.bincount(lengths, minlength=max_length + 1)
    first = np.zeros(max_length + 1, dtype=np.int64)
    offset = np.zeros(max_length + 1, dtype=np.int64)
    code = index = 0
    for length in range(1, max_length + 1):
        first[length], offset[length] = code, index
        code = (code + int(per_length[length])) << 1
        index += int(per_length[length])
    return by_code, per_length, first, offset


def canonical_codes(lengths: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """The canonical codeword of each rank: codes of one length are consecutive, in rank order."""
    lengths = np.asarray(lengths, dtype=np.int64)
    by_code, _, first, offset = _canonical(lengths, max_length)
    codes = np.empty(len(lengths), dtype=np.int64)
    sorted_lengths = lengths[by_code]
    codes[by_code] = first[sorted_lengths] + np.arange(len(lengths)) - offset[sorted_lengths]
    return codes


def encode(ranks: np.ndarray, k: int) -> bytes:
    """Code lengths table + bitstream for ``ranks`` in [0, k), every rank present, k >= 2."""
    lengths = code_lengths(np.bincount(ranks, minlength=k))
    codes = canonical_codes(lengths)
    return pack_fixed(lengths, LENGTH_BITS) + pack_bits(codes[ranks], lengths[ranks])


def decode(data: bytes, count: int, k: int, what: str) -> np.ndarray:
    """Decode ``count`` ranks in [0, k); FormatError on a bad table, a truncated or over-long bitstream."""
    reader = Reader(data, what)
    lengths = unpack_fixed(reader, k, LENGTH_BITS, "Huffman code lengths").astype(np.int64)
    if lengths.min() < 1 or lengths.max() > MAX_CODE_LENGTH:
        raise FormatError(
            f"{what}: Huffman code lengths must be in [1, {MAX_CODE_LENGTH}], got "
            f"[{lengths.min()}, {lengths.max()}]; the table is corrupted."
        )
    kraft = int((np.int64(1) << (MAX_CODE_LENGTH - lengths)).sum())
    if kraft != 1 << MAX_CODE_LENGTH:
        raise FormatError(
            f"{what}: Huffman code lengths are not a complete prefix code (Kraft sum "
            f"{kraft / (1 << MAX_CODE_LENGTH):.6f}, expected 1); the table is corrupted."
        )
    body = reader.rest()
    nbits = 8 * len(body)
    if count > nbits:
        raise FormatError(
            f"{what}: {count} symbols need at least {count} bits but the bitstream has {nbits}; "
            "the count is wrong or the data is truncated."
        )
    padded = np.frombuffer(body + bytes(4), dtype=np.uint8).astype(np.uint32)
    words = (padded[:-3] << 24) | (padded[1:-2] << 16) | (padded[2:-1] << 8) | padded[3:]  # big-endian, per byte
    by_code, per_length, first, offset = _canonical(lengths, MAX_CODE_LENGTH)
    ls = np.arange(1, MAX_CODE_LENGTH + 1)
    limits = ((first[ls] + per_length[ls]) << (MAX_CODE_LENGTH - ls)).astype(np.uint32)  # left-justified ends
    out = np.empty(count, dtype=np.int64)
    done = pos = 0
    for chunk in range(0, nbits, _CHUNK_BITS):
        if done == count:
            break
        at = np.arange(chunk, min(chunk + _CHUNK_BITS, nbits))
        shift = (8 - (at & 7)).astype(np.uint32)
        window = (words[at >> 3] >> shift) & np.uint32((1 << MAX_CODE_LENGTH) - 1)  # 24 bits from each position
        length = np.searchsorted(limits, window, side="right") + 1
        steps = length.astype(np.uint8).tobytes()
        starts = []
        q, end, need = pos - chunk, len(at), count - done
        while q < end and need:  # follow the codeword chain; bounded by `count` iterations in total
            starts.append(q)
            q += steps[q]
            need -= 1
        at_start = np.array(starts, dtype=np.int64)
        w, n = window[at_start].astype(np.int64), length[at_start]
        out[done : done + len(starts)] = by_code[offset[n] + (w >> (MAX_CODE_LENGTH - n)) - first[n]]
        done += len(starts)
        pos = chunk + q
    if done < count or pos > nbits:
        raise FormatError(
            f"{what}: the Huffman bitstream ends after {done} of {count} symbols; "
            "the data is truncated or the count is wrong."
        )
    if (pos + 7) // 8 != nbits // 8:
        raise FormatError(f"{what}: {nbits // 8 - (pos + 7) // 8} unexpected bytes after the last codeword.")
    if pos % 8 and body[pos // 8] & ((1 << (8 - pos % 8)) - 1):
        raise FormatError(f"{what}: nonzero padding bits after the last codeword; the data is corrupted.")
    return out
