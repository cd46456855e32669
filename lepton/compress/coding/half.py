"""float32 values stored as IEEE binary16 ("half") when that loses nothing: the `.lep` ``half`` coder.

Widening is defined on bit patterns, in integer arithmetic, so it does not depend on the CPU's conversion
instructions (which may quiet a signalling NaN): sign to bit 31; a normal or infinite/NaN half keeps its
10 mantissa bits as the top of the float32 mantissa (a NaN's payload shifted left by 13) with the exponent
rebiased; a subnormal half ``m * 2^-24`` becomes that exact (normal) float32 value; ``±0`` stays ``±0``.
A float32 tensor is stored as half only when narrowing and widening it gives back every bit pattern.
"""

from __future__ import annotations

import numpy as np


def widen(halves: np.ndarray) -> np.ndarray:
    """The float32 bit patterns (int32) of binary16 bit patterns (any integer array), exactly."""
    h = halves.astype(np.uint32) & 0xFFFF
    sign = (h & 0x8000) << 16
    exponent = (h >> 10) & 0x1F
    mantissa = h & 0x3FF
    normal = ((exponent + (127 - 15)) << 23) | (mantissa << 13)
    special = np.uint32(0x7F800000) | (mantissa << 13)
    # m * 2^-24 with m < 2^10 is an exact, normal float32; multiplying by a power of two does not round
    subnormal = (mantissa.astype(np.float32) * np.float32(2.0**-24)).view(np.uint32)
    out = np.where(exponent == 0x1F, special, np.where(exponent == 0, subnormal, normal))
    return (sign | out).astype(np.uint32).view(np.int32)


def narrow_exact(bits: np.ndarray) -> np.ndarray | None:
    """The binary16 bit patterns (uint16) of float32 bit patterns (int32), or None when some value has
    no binary16 form that :func:`widen` turns back into exactly its bits (range, precision, NaN payload)."""
    with np.errstate(all="ignore"):  # out-of-range values overflow to inf here and then fail the check
        halves = bits.astype(np.int32).view(np.float32).astype(np.float16).view(np.uint16)
    return halves if np.array_equal(widen(halves), bits.astype(np.int32)) else None


def to_le(halves: np.ndarray) -> bytes:
    """Little-endian bytes of binary16 bit patterns."""
    return halves.astype("<u2").tobytes()


def from_le(data: bytes) -> np.ndarray:
    """The float32 bit patterns (int32) of little-endian binary16 bytes (an even number of them)."""
    return widen(np.frombuffer(data, dtype="<u2"))
