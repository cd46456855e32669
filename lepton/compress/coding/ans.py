"""rANS coding of rank streams (symbols 0..k-1, k >= 2) with constriction, under a stored static model.

Body layout (after the alphabet that :mod:`lepton.compress.coding` writes):

- byte ``p``: the table precision, ``2**p >= k``, ``p <= 24``;
- byte ``w``: the bit width of the stored frequencies, ``w <= p``;
- ``f[i] - 1`` for i in 0..k-2, ``w`` bits each, MSB first, zero-padded to a byte; every ``f[i] >= 1`` and
  ``f[k-1] = 2**p - sum(f[:k-1]) >= 1``;
- the rANS words, uint32 little-endian, the last one nonzero.

The coder is constriction's ``AnsCoder`` (32-bit words, 64-bit state, 24-bit probabilities): symbol i has
probability ``f[i] * 2**(24-p) / 2**24``. Given integer weights W summing to 2**24, constriction's
``Categorical(W - 1, perfect=False)`` reproduces W exactly (its fast quantizer adds 1 to floor(cumsum)),
so the stream is fully defined by the stored table; the tests check it against a pure-Python rANS.
The precision p is chosen per stream to minimise table bits + coded bits (a short stream gets a coarse table).
"""

from __future__ import annotations

import constriction
import numpy as np

from lepton.compress.coding.bits import Reader, pack_fixed, unpack_fixed
from lepton.errors import FormatError

PRECISION = 24  # constriction's default model precision


def quantize_counts(counts: np.ndarray, precision: int) -> np.ndarray:
    """Frequencies >= 1 summing to exactly ``2**precision``, close to proportional to ``counts`` (all > 0).

    Each symbol gets 1 plus its floored share of the rest; the leftover units go to the largest remainders.
    """
    counts = np.asarray(counts, dtype=np.int64)
    free = (1 << precision) - len(counts)
    if free < 0:
        raise ValueError(
            f"{len(counts)} symbols need a precision of at least {(len(counts) - 1).bit_length()} "
            f"bits, got {precision}."
        )
    scaled = counts * free  # < 2**28 * 2**24, fits int64
    total = int(counts.sum())
    freqs = scaled // total + 1
    leftover = (1 << precision) - int(freqs.sum())
    if leftover:
        order = np.lexsort((np.arange(len(counts)), -(scaled % total)))
        freqs[order[:leftover]] += 1
    return freqs


def _best_precision(counts: np.ndarray) -> int:
    """The precision minimising the stored table plus the coded size of these counts under it."""
    k = len(counts)
    lowest = max(1, int(k - 1).bit_length())
    best, best_bits = PRECISION, float("inf")
    for p in range(lowest, PRECISION + 1):
        freqs = quantize_counts(counts, p)
        table_bits = 16 + (k - 1) * int(freqs[:-1].max() - 1).bit_length()
        coded_bits = float((counts * (p - np.log2(freqs))).sum())
        if table_bits + coded_bits < best_bits:
            best, best_bits = p, table_bits + coded_bits
    return best


def _model(freqs: np.ndarray, precision: int) -> constriction.stream.model.Categorical:
    weights = freqs.astype(np.int64) << (PRECISION - precision)
    return constriction.stream.model.Categorical((weights - 1).astype(np.float64), perfect=False)


def encode(ranks: np.ndarray, k: int) -> bytes:
    """Frequency table + rANS words for ``ranks`` in [0, k), every rank present, k >= 2."""
    counts = np.bincount(ranks, minlength=k)
    precision = _best_precision(counts)
    freqs = quantize_counts(counts, precision)
    width = int(freqs[:-1].max() - 1).bit_length()
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(np.ascontiguousarray(ranks, dtype=np.int32), _model(freqs, precision))
    words = coder.get_compressed().astype("<u4").tobytes()
    return bytes([precision, width]) + pack_fixed(freqs[:-1] - 1, width) + words


def decode(data: bytes, count: int, k: int, what: str) -> np.ndarray:
    """Decode ``count`` ranks in [0, k); FormatError on an impossible table or words that do not end exactly."""
    reader = Reader(data, what)
    lowest = max(1, int(k - 1).bit_length())
    precision = reader.byte("ANS precision", PRECISION)
    if precision < lowest:
        raise FormatError(
            f"{what}: ANS precision {precision} cannot give {k} symbols a nonzero frequency "
            f"(expected at least {lowest}); the table is corrupted."
        )
    width = reader.byte("ANS frequency width", precision)
    freqs = unpack_fixed(reader, k - 1, width, "ANS frequencies").astype(np.int64) + 1
    last = (1 << precision) - int(freqs.sum())
    if last < 1:
        raise FormatError(
            f"{what}: ANS frequencies sum to {int(freqs.sum())}, leaving {last} for the last "
            f"symbol (expected >= 1 of {1 << precision}); the table is corrupted."
        )
    freqs = np.append(freqs, last)
    body = reader.rest()
    if len(body) % 4:
        raise FormatError(
            f"{what}: ANS data is {len(body)} bytes, not a whole number of 32-bit words; "
            "the data is truncated or corrupted."
        )
    words = np.frombuffer(body, dtype="<u4").astype(np.uint32)
    if len(words) and words[-1] == 0:
        raise FormatError(f"{what}: ANS data ends in a zero word, which no encoder writes; the data is corrupted.")
    coder = constriction.stream.stack.AnsCoder(words)
    ranks = coder.decode(_model(freqs, precision), count).astype(np.int64)
    if not coder.is_empty():
        raise FormatError(
            f"{what}: ANS data is left over after {count} symbols; the count is wrong or the data is corrupted."
        )
    return ranks
