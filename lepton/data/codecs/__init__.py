"""Lossless codecs for typed array blocks, behind one small interface.

A codec turns one array into bytes and back; the packed store records the codec's ``name`` and
``params`` (JSON) beside the original dtype and shape, and rebuilds the codec with
``get_codec(name, **params)`` to decode::

    codec = get_codec("zstd", level=19)
    blob = codec.encode(x)                      # bytes
    y = codec.decode(blob, x.dtype, x.shape)    # == x, bit for bit

``decode`` validates everything it reads and raises :class:`~lepton.errors.FormatError` on a
truncated, corrupt or forged block (never a crash, hang or allocation beyond the expected size).
``measure_codec`` times a codec on a sample and checks the round trip; ``choose_codec`` implements the
``auto`` mode with it: the smallest candidate meeting a decode-speed floor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lepton.data.codecs.freq import FreqCodec
from lepton.data.codecs.general import DTYPES, DeflateCodec, LzmaCodec, ZstdCodec
from lepton.errors import ConfigError, DataError, FormatError


@runtime_checkable
class Codec(Protocol):
    """A lossless array codec. ``name`` and ``params`` are enough to rebuild it via get_codec."""

    name: str

    @property
    def params(self) -> dict[str, Any]: ...

    def supports(self, dtype: Any, shape: tuple[int, ...]) -> bool:
        """Whether this codec can encode an array of this dtype and shape."""

    def encode(self, array: np.ndarray) -> bytes: ...

    def decode(self, data: bytes, dtype: Any, shape: tuple[int, ...]) -> np.ndarray: ...


def _cm(**params: Any) -> Codec:
    from lepton.data.codecs.cm import CMCodec  # compiles numba kernels on first use

    return CMCodec(**params)


_FACTORIES = {"deflate": DeflateCodec, "zstd": ZstdCodec, "lzma": LzmaCodec, "lepton-cm": _cm, "freq": FreqCodec}
CODECS: tuple[str, ...] = tuple(_FACTORIES)
AUTO_CANDIDATES: tuple[str, ...] = ("lepton-cm", "freq", "lzma", "zstd", "deflate")


def get_codec(name: str, **params: Any) -> Codec:
    """The codec called ``name`` with ``params`` (as stored in a file); ConfigError if unknown."""
    if name not in _FACTORIES:
        raise ConfigError(f"unknown codec {name!r}; expected one of {', '.join(CODECS)} (or 'auto')")
    try:
        return _FACTORIES[name](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters {params} for codec {name!r}: {exc}") from None


def fit_codec(codec: Codec, array: np.ndarray, *, progress: Callable[[float, float], None] | None = None) -> Codec:
    """``codec`` fitted to ``array`` if it learns a model (``lepton-cm`` without one); else ``codec``.

    Args:
        codec: any codec; only one with a ``fit`` method and no model yet is fitted.
        array: the data it will code.
        progress: ``progress(done, total)`` during a fit, ``done`` rising to ``total`` (predicted seconds; see
            :func:`lepton.data.codecs.cm_model.fit`); never called for a codec that learns nothing.

    Returns:
        The fitted codec, or ``codec`` itself.
    """
    fit = getattr(codec, "fit", None)
    if callable(fit) and not getattr(codec, "model", ""):
        return fit(array, progress=progress)
    return codec


@dataclass(frozen=True)
class CodecMeasurement:
    """One codec on one sample. ``bytes`` counts the encoded blocks and a learned model (``model_bytes``,
    stored once per field); speeds are MB (1e6 bytes) of raw array per second, on one thread."""

    codec: str
    bytes: int
    model_bytes: int
    bits_per_pixel: float
    encode_mb_s: float
    decode_mb_s: float


def measure_codec(
    codec: Codec, sample: np.ndarray, *, block_samples: int | None = None, decode_repeats: int = 1
) -> CodecMeasurement:
    """Encode ``sample`` with the (already fitted, see :func:`fit_codec`) ``codec`` in independent blocks of
    ``block_samples`` samples (None: one block), decode it, and raise FormatError unless every block comes
    back bit for bit. The decode time is the best of ``decode_repeats`` passes (the first may include
    one-time compilation); the comparison is not timed."""
    sample = np.asarray(sample)
    starts = [0] if block_samples is None else list(range(0, len(sample), block_samples))
    blocks = [sample] if block_samples is None else [sample[s : s + block_samples] for s in starts]
    t0 = time.perf_counter()
    blobs = [codec.encode(b) for b in blocks]
    encode_s = time.perf_counter() - t0
    decode_s = float("inf")
    for _ in range(decode_repeats):
        t0 = time.perf_counter()
        out = [codec.decode(blob, b.dtype, b.shape) for blob, b in zip(blobs, blocks, strict=True)]
        decode_s = min(decode_s, time.perf_counter() - t0)
    for s, o, b in zip(starts, out, blocks, strict=True):
        if not np.array_equal(o, b):
            raise FormatError(f"codec {codec.name}: decoded block at sample {s} differs from its input")
    model = len(getattr(codec, "model", b""))
    size, mb = sum(len(b) for b in blobs) + model, sample.nbytes / 1e6
    return CodecMeasurement(
        codec.name, size, model, 8 * size / sample.size, mb / max(encode_s, 1e-9), mb / max(decode_s, 1e-9)
    )


def choose_codec(
    sample: np.ndarray,
    *,
    candidates: Sequence[str] = AUTO_CANDIDATES,
    min_decode_mb_s: float = 10.0,
    fitted: Sequence[Codec] = (),
) -> Codec:
    """The ``auto`` mode: encode ``sample`` with every candidate that supports it, time one decode
    (one thread, best of two), and return the codec with the fewest bytes among those decoding at least
    ``min_decode_mb_s`` MB/s (of raw array bytes). If none meets the floor, the fastest decoder wins.
    A codec that learns a model is fitted to ``sample`` first, and the model's bytes are left out (a
    store keeps one per field); the codec returned is unfitted, for the caller to fit to the field.
    A codec in ``fitted`` (already fitted to the whole field) stands for its name: it is measured as it is,
    not refitted, and returned as it is if it wins.
    """
    sample = np.asarray(sample)
    given = {c.name: c for c in fitted}
    results: list[tuple[int, float, Codec]] = []
    for name in candidates:
        codec = given.get(name) or get_codec(name)
        if not codec.supports(sample.dtype, sample.shape):
            continue
        m = measure_codec(codec if name in given else fit_codec(codec, sample), sample, decode_repeats=2)
        results.append((m.bytes - m.model_bytes, m.decode_mb_s, codec))  # a model is stored once per field
    if not results:
        raise DataError(f"none of the codecs {list(candidates)} can encode a {sample.dtype} array")
    fast = [r for r in results if r[1] >= min_decode_mb_s]
    if fast:
        return min(fast, key=lambda r: r[0])[2]
    return max(results, key=lambda r: r[1])[2]


__all__ = [
    "AUTO_CANDIDATES",
    "CODECS",
    "DTYPES",
    "Codec",
    "CodecMeasurement",
    "DeflateCodec",
    "FreqCodec",
    "LzmaCodec",
    "ZstdCodec",
    "choose_codec",
    "fit_codec",
    "get_codec",
    "measure_codec",
]
