"""The `.lep` compressed model file: pruned, weight-shared weights stored as codebook + entropy-coded streams.

Layout and rules: docs/lep-format.md. Each tensor's encoding is chosen from its values alone, so the file does
not care how the weights were produced: a float tensor whose nonzero values take at most 256 distinct bit
patterns is stored as that codebook plus entropy-coded indices, either over all elements ("dense") or over the
nonzeros with entropy-coded gaps between their positions ("sparse"); anything else is stored "raw"
(little-endian, zstd or LZMA2 when that is smaller) or, when that is smaller for a tensor with zeros, as its
raw nonzero values at entropy-coded positions ("sparse-raw", the pruned-only stage of Deep Compression).
The positions of either sparse encoding may instead be a context-coded keep-mask ("sparse-mask",
"sparse-raw-mask"; :mod:`lepton.compress.coding.mask`), whichever is smaller; only files that use it are
version 3.
A "compact" file (version 4, written only on request) drops the per-stream offsets and CRCs for one CRC of
the whole payload and stores float32 codebooks and raw values as float16 when that is exact
(:mod:`lepton.compress.coding.half`): a few hundred bytes, which matter in a 2-4 KB file.
Every tensor round-trips bit for bit (-0.0 and NaN payloads included). Loading never executes code, checks
every length, offset, count and CRC32 before decoding, and refuses anything inconsistent with
:class:`lepton.errors.FormatError`.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import zstandard
from pydantic import Field, ValidationError
from torch import nn

from lepton.compress.coding import METHODS, decode_symbols, encode_symbols
from lepton.compress.coding.bits import (
    bucket_symbol_limit,
    bucket_widths,
    bucketize,
    pack_bits,
    unbucketize,
    unpack_bits,
)
from lepton.compress.coding.half import from_le as half_from_le
from lepton.compress.coding.half import narrow_exact
from lepton.compress.coding.half import to_le as half_to_le
from lepton.compress.coding.mask import decode_mask, encode_mask, mask_view
from lepton.config import StrictFileModel
from lepton.errors import ConfigError, FormatError
from lepton.models.registry import ModelSpec
from lepton.utils import strict_json
from lepton.utils.io import atomic_write_bytes

MAGIC = b"\x89LEP\r\n\x1a\n"
VERSION = 2  # 2: the model spec may carry its architecture as data (docs/model-spec.md)
MASK_VERSION = 3  # 3: a tensor's positions may be a context-coded mask; written only by files that use it
COMPACT_VERSION = 4  # 4: no per-stream offsets/CRCs, one payload CRC, float16 ("half") codebooks and values
READABLE_VERSIONS = (1, 2, 3, 4)
FORMAT = "lepton-model"
PREAMBLE = struct.Struct("<8sIQI")  # magic, format version, header length, CRC32 of the header: 24 bytes
MAX_HEADER_BYTES = 16 << 20  # both the stored (deflated) header and the JSON it inflates to
MAX_ELEMENTS = 1 << 28  # elements in all tensors together
MAX_CODEBOOK = 256  # distinct nonzero values for a codebook encoding
MAX_GAP_BITS = 28  # gaps are < MAX_ELEMENTS, so at most 28 bits
GAP_DIRECT_BITS = range(1, 9)  # candidate direct ranges (2**d gaps coded as themselves) tried per tensor
HEADER_ROW = "(header)"
STREAM_ENTRY_BYTES = 32  # about what one more stream entry adds to the deflated header (measured on LeNet-5)

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_FLOATS = {"float16", "bfloat16", "float32", "float64"}
_BIT_VIEWS = {
    1: (torch.uint8, np.uint8, "u1"),
    2: (torch.int16, np.int16, "<i2"),  # itemsize: torch view,
    4: (torch.int32, np.int32, "<i4"),
    8: (torch.int64, np.int64, "<i8"),
}  # numpy dtype, on disk
_ROLES = {
    "raw": ("data",),
    "dense": ("codebook", "index"),
    "sparse": ("codebook", "index", "gap", "gap_extra"),
    "sparse-raw": ("values", "gap", "gap_extra"),
    "sparse-mask": ("codebook", "index", "mask"),
    "sparse-raw-mask": ("values", "mask"),
}
_RAW_CODERS = ("none", "zstd", "lzma", "half")
_CODERS = {
    "data": _RAW_CODERS,
    "values": _RAW_CODERS,
    "codebook": ("none", "half"),
    "index": METHODS,
    "gap": METHODS,
    "gap_extra": ("bits",),
    "mask": ("context",),
}
_SPARSE = ("sparse", "sparse-raw")  # positions as gaps
_MASKED = ("sparse-mask", "sparse-raw-mask")  # positions as a mask (version 3)
_RAW_VALUES = ("raw", "sparse-raw", "sparse-raw-mask")

DType = Literal["float16", "bfloat16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool"]


class StreamEntry(StrictFileModel):
    role: Literal["data", "values", "codebook", "index", "gap", "gap_extra", "mask"]
    coder: Literal["none", "zstd", "lzma", "half", "huffman", "ans", "bits", "context"]
    offset: int | None = Field(default=None, ge=0)  # versions 1-3 only (then required)
    length: int = Field(ge=0)
    count: int = Field(ge=0)
    crc32: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)  # versions 1-3 only (then required)


class TensorEntry(StrictFileModel):
    name: str = Field(min_length=1, max_length=4096)
    dtype: DType
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=32)
    encoding: Literal["raw", "dense", "sparse", "sparse-raw", "sparse-mask", "sparse-raw-mask"]
    kept: int = Field(ge=0)
    gap_direct_bits: int | None = Field(default=None, ge=GAP_DIRECT_BITS.start, lt=GAP_DIRECT_BITS.stop)
    streams: list[StreamEntry] = Field(max_length=4)


class Header(StrictFileModel):
    format: Literal["lepton-model"]
    version: Literal[1, 2, 3, 4]
    model: dict[str, Any]
    metadata: dict[str, Any]
    tensors: list[TensorEntry]
    payload_crc32: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)  # version 4 only (then required)


@dataclass(frozen=True)
class LepModel:
    """A decoded `.lep` file: the model spec, the bit-exact state dict, the JSON header and user metadata."""

    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    header: dict[str, Any]
    metadata: dict[str, Any]

    def build_model(self, *, trust_code: bool = False) -> nn.Module:
        """The model with these weights; checked on the meta device first (:meth:`ModelSpec.load`). A file
        naming a ``package.module:factory`` without a graph runs that code only with ``trust_code=True``."""
        return self.spec.load(self.state_dict, trust_code=trust_code, what="the .lep file")


# ---- tensors as bit patterns -------------------------------------------------------------------------------


def _bits(name: str, tensor: torch.Tensor) -> tuple[str, np.ndarray]:
    """(dtype name, flat native-endian integer array of the elements' bit patterns)."""
    if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided or tensor.is_quantized:
        raise ConfigError(
            f"state_dict[{name!r}] must be a dense torch.Tensor, got {type(tensor).__name__}; "
            "convert sparse or quantized tensors with .to_dense() / .dequantize() first."
        )
    if tensor.dtype not in _NAMES:
        raise ConfigError(
            f"state_dict[{name!r}] has dtype {tensor.dtype}; a .lep file stores "
            f"{', '.join(_DTYPES)}. Cast it (e.g. .float()) before saving."
        )
    view = _BIT_VIEWS[tensor.element_size()][0]
    return _NAMES[tensor.dtype], tensor.detach().cpu().contiguous().reshape(-1).view(view).numpy()


def _le(bits: np.ndarray, dtype: str) -> bytes:
    return bits.astype(_BIT_VIEWS[_DTYPES[dtype].itemsize][2]).tobytes()


def _read_le(data: bytes, dtype: str) -> np.ndarray:
    _, native, le = _BIT_VIEWS[_DTYPES[dtype].itemsize]
    return np.frombuffer(data, dtype=le).astype(native)


def _tensor(bits: np.ndarray, dtype: str, shape: list[int], what: str) -> torch.Tensor:
    if dtype == "bool" and bits.size and bits.max() > 1:
        raise FormatError(f"{what}: a bool element has byte value {bits.max()}, expected 0 or 1.")
    return torch.from_numpy(np.array(bits, copy=True)).view(_DTYPES[dtype]).reshape(shape)


# ---- encoding ----------------------------------------------------------------------------------------------

_Stream = tuple[str, str, int, bytes]  # role, coder, count, bytes


def _lzma_filters(size: int) -> list[dict[str, int]]:
    dict_size = min(max(4096, 1 << max(0, size - 1).bit_length()), 64 << 20)
    return [{"id": lzma.FILTER_LZMA2, "dict_size": dict_size}]


def _half(bits: np.ndarray, dtype: str, compact: bool) -> bytes | None:
    """The float16 bytes of float32 bit patterns in a compact file, when they widen back exactly."""
    halves = narrow_exact(bits) if compact and dtype == "float32" else None
    return None if halves is None else half_to_le(halves)


def _raw(role: str, bits: np.ndarray, dtype: str, compress: bool, compact: bool = False) -> _Stream:
    """Little-endian bytes, their zstd or LZMA2 compression, or (compact files) their exact float16 bytes,
    whichever is smallest."""
    data = _le(bits, dtype)
    options = [("none", data)]
    halves = _half(bits, dtype, compact)
    if halves is not None:
        options.append(("half", halves))
    if compress and len(data) >= 64:
        options.append(("zstd", zstandard.ZstdCompressor(level=10).compress(data)))
        options.append(
            (
                "lzma",
                lzma.compress(data, format=lzma.FORMAT_RAW, filters=[{**_lzma_filters(len(data))[0], "preset": 6}]),
            )
        )
    coder, packed = min(options, key=lambda o: len(o[1]))
    return role, coder, bits.size, packed


def _gap_streams(gaps: np.ndarray, coder: str) -> tuple[int, list[_Stream]]:
    """Bucketized gap symbols + their extra bits, for the direct range that gives the fewest bytes."""

    def streams(d: int) -> list[_Stream]:
        symbols, extra, widths = bucketize(gaps, d)
        return [
            ("gap", coder, len(gaps), encode_symbols(symbols, coder)),
            ("gap_extra", "bits", int(widths.sum()), pack_bits(extra, widths)),
        ]

    def size(option: tuple[int, list[_Stream]]) -> int:
        return sum(len(s[3]) for s in option[1])

    # direct ranges beyond the largest gap give the same streams as the first one that covers it
    useful = [d for d in GAP_DIRECT_BITS if d == GAP_DIRECT_BITS.start or gaps.max(initial=0) >= 1 << (d - 1)]
    return min(((d, streams(d)) for d in useful), key=size)


def _mask_stream(nonzero: np.ndarray, shape: torch.Size) -> _Stream:
    """The keep-mask of a tensor viewed as [first axis, the rest], context-coded."""
    return "mask", "context", nonzero.size, encode_mask(nonzero.reshape(mask_view(list(shape))))


def _codebook_stream(values: np.ndarray, dtype: str, compact: bool) -> _Stream:
    halves = _half(values, dtype, compact)
    if halves is not None:
        return "codebook", "half", len(values), halves
    return "codebook", "none", len(values), _le(values, dtype)


def _encode_tensor(
    name: str, tensor: torch.Tensor, coder: str, masks: bool, compact: bool
) -> tuple[dict[str, Any], list[_Stream]]:
    dtype, bits = _bits(name, tensor)
    nonzero = bits != 0
    fields = {"name": name, "dtype": dtype, "shape": list(tensor.shape), "kept": int(nonzero.sum())}
    values = np.unique(bits[nonzero]) if dtype in _FLOATS and bits.size else None
    shared = values is not None and len(values) <= MAX_CODEBOOK
    # a shared tensor also gets the plain raw option (it wins for tiny tensors); others try zstd and LZMA2
    options: list[tuple[dict[str, Any], list[_Stream]]] = [
        ({"encoding": "raw"}, [_raw("data", bits, dtype, not shared, compact)])
    ]
    mask_options: list[tuple[dict[str, Any], list[_Stream]]] = []
    where = np.flatnonzero(nonzero)
    gaps = np.diff(where, prepend=-1) - 1
    if shared and values is not None:
        codebook = np.unique(bits)
        options.append(
            (
                {"encoding": "dense"},
                [
                    _codebook_stream(codebook, dtype, compact),
                    ("index", coder, bits.size, encode_symbols(np.searchsorted(codebook, bits), coder)),
                ],
            )
        )
        direct, gap_streams = _gap_streams(gaps, coder)
        kept_values = [
            _codebook_stream(values, dtype, compact),
            ("index", coder, len(where), encode_symbols(np.searchsorted(values, bits[where]), coder)),
        ]
        options.append(({"encoding": "sparse", "gap_direct_bits": direct}, [*kept_values, *gap_streams]))
        if masks:
            mask_options.append(({"encoding": "sparse-mask"}, [*kept_values, _mask_stream(nonzero, tensor.shape)]))
    elif len(where) < bits.size:  # pruned but not shared: the kept values as they are, at coded positions
        direct, gap_streams = _gap_streams(gaps, coder)
        kept_raw = _raw("values", bits[where], dtype, True, compact)
        options.append(({"encoding": "sparse-raw", "gap_direct_bits": direct}, [kept_raw, *gap_streams]))
        if masks:
            mask_options.append(({"encoding": "sparse-raw-mask"}, [kept_raw, _mask_stream(nonzero, tensor.shape)]))
    extra, streams = min(options, key=_payload)
    if mask_options:  # a mask must also pay for any header entries it adds
        masked = min(mask_options, key=_payload)
        more_entries = len(masked[1]) - len(streams)
        if _payload(masked) + STREAM_ENTRY_BYTES * more_entries < _payload((extra, streams)):
            extra, streams = masked
    return {**fields, **extra}, streams


def _payload(option: tuple[dict[str, Any], list[_Stream]]) -> int:
    return sum(len(s[3]) for s in option[1])


def _json(obj: Any, what: str) -> bytes:
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{what} must be JSON-serialisable (str keys; str, int, float, bool, None, lists, dicts; no NaN): {e}."
        ) from e
    if strict_json.nesting_depth(text) > strict_json.MAX_DEPTH:
        raise ConfigError(
            f"{what} nests lists/dicts {strict_json.nesting_depth(text)} levels deep; a .lep header "
            f"allows at most {strict_json.MAX_DEPTH}, so flatten the metadata."
        )
    return text.encode("utf-8")


def deflate_header(text: bytes) -> bytes:
    """Raw DEFLATE (RFC 1951, no zlib/gzip wrapper), level 9: the stored form of the JSON header."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(text) + c.flush()


def inflate_header(stored: bytes) -> bytes:
    """The JSON of a stored header; refuses a stream that is corrupt, incomplete, trailed, or inflates
    past :data:`MAX_HEADER_BYTES` (a decompression bomb) before allocating more than that."""
    d = zlib.decompressobj(-15)
    try:
        text = d.decompress(stored, MAX_HEADER_BYTES + 1)
    except zlib.error as e:
        raise FormatError(f".lep header is not a valid DEFLATE stream ({e}); the file is corrupted.") from e
    if len(text) > MAX_HEADER_BYTES:
        raise FormatError(f".lep header inflates to more than {MAX_HEADER_BYTES} bytes; refusing a forged file.")
    if not d.eof or d.unused_data or d.unconsumed_tail:
        raise FormatError(".lep header DEFLATE stream is incomplete or followed by extra bytes; the file is corrupted.")
    return text


def encode_model(
    spec: ModelSpec,
    state_dict: Mapping[str, torch.Tensor],
    *,
    coder: str = "ans",
    metadata: dict[str, Any] | None = None,
    masks: bool = True,
    compact: bool = False,
) -> bytes:
    """The `.lep` bytes of ``state_dict`` for the architecture ``spec``.

    Args:
        spec: the architecture, stored in the header.
        state_dict: name -> tensor; every tensor comes back bit for bit.
        coder: "ans" or "huffman", for the index and gap symbol streams.
        metadata: a free JSON object stored in the header.
        masks: let a tensor's positions be a context-coded mask where that is smaller than the gaps (such a
            file is version 3); False writes gaps only, a version-2 file that Lepton before masks reads.
        compact: write a version-4 file (Lepton before version 4 cannot read it): no per-stream offsets or
            CRCs but one CRC of the whole payload, and float32 codebooks and raw values as float16 where
            that is bit-exact (see :func:`lepton.compress.share.round_to_half`). For files of a few KB.

    Returns:
        The file's bytes. With ``masks`` it is never longer than the gaps-only file: when masks do not make the
        whole file smaller (header included), the gaps-only file (version 2, or 4 if ``compact``) is returned.
    """
    data, masked = _encode_model(spec, state_dict, coder, metadata, masks, compact)
    if masked:
        plain, _ = _encode_model(spec, state_dict, coder, metadata, False, compact)
        if len(plain) <= len(data):
            return plain
    return data


def _encode_model(
    spec: ModelSpec,
    state_dict: Mapping[str, torch.Tensor],
    coder: str,
    metadata: dict[str, Any] | None,
    masks: bool,
    compact: bool,
) -> tuple[bytes, bool]:
    """(the file's bytes, whether some tensor's positions are a mask)."""
    if coder not in METHODS:
        raise ConfigError(
            f"The 'coder' parameter of encode_model must be one of {', '.join(METHODS)}. Got {coder!r} instead."
        )
    if not isinstance(spec, ModelSpec):
        raise ConfigError(f"encode_model needs a lepton.models.ModelSpec, got {type(spec).__name__}.")
    if not isinstance(state_dict, Mapping):
        raise ConfigError(
            f"encode_model needs a state dict (name -> tensor), got {type(state_dict).__name__}; "
            "pass model.state_dict()."
        )
    if metadata is not None and not isinstance(metadata, dict):
        raise ConfigError(f"metadata must be a dict, got {type(metadata).__name__}.")
    total = sum(t.numel() for t in state_dict.values() if isinstance(t, torch.Tensor))
    if total > MAX_ELEMENTS:
        raise ConfigError(f"the state dict has {total} elements; a .lep file holds at most {MAX_ELEMENTS}.")
    entries, payload, offset = [], [], 0
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"state_dict keys must be non-empty strings, got {name!r}.")
        fields, streams = _encode_tensor(name, tensor, coder, masks, compact)
        fields["streams"] = []
        for role, stream_coder, count, data in streams:
            entry = {"role": role, "coder": stream_coder, "length": len(data), "count": count}
            if not compact:  # a compact file implies the offsets and checks one CRC of the whole payload
                entry.update(offset=offset, crc32=zlib.crc32(data))
            fields["streams"].append(entry)
            payload.append(data)
            offset += len(data)
        entries.append(fields)
    _json(spec.to_dict(), "the model spec")
    masked = any(e["encoding"] in _MASKED for e in entries)
    version = COMPACT_VERSION if compact else MASK_VERSION if masked else VERSION
    body = b"".join(payload)
    top: dict[str, Any] = {"payload_crc32": zlib.crc32(body)} if compact else {}
    text = _json(
        {
            "format": FORMAT,
            "version": version,
            "model": spec.to_dict(),
            "metadata": metadata or {},
            "tensors": entries,
            **top,
        },
        "metadata",
    )
    header = deflate_header(text)
    if len(text) > MAX_HEADER_BYTES:
        raise ConfigError(
            f"the .lep header is {len(text)} bytes, over the {MAX_HEADER_BYTES}-byte limit; store less metadata."
        )
    return PREAMBLE.pack(MAGIC, version, len(header), zlib.crc32(header)) + header + body, masked


# ---- parsing and decoding ----------------------------------------------------------------------------------


def _parse(data: bytes) -> tuple[Header, dict[str, Any], ModelSpec, memoryview, list[list[int]]]:
    """Check the preamble, header and stream layout (lengths, offsets, counts, CRCs) without decoding."""
    if len(data) < PREAMBLE.size or data[:8] != MAGIC:
        raise FormatError(
            f"not a .lep file: expected the magic bytes {MAGIC!r} and a {PREAMBLE.size}-byte "
            f"preamble, got {bytes(data[:8])!r} in a {len(data)}-byte file."
        )
    _, version, size, crc = PREAMBLE.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise FormatError(
            f".lep format version {version} is not supported (this Lepton reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade Lepton or re-export the model."
        )
    if size > min(MAX_HEADER_BYTES, len(data) - PREAMBLE.size):
        raise FormatError(
            f".lep header length {size} exceeds the {len(data) - PREAMBLE.size} bytes after the "
            f"preamble (limit {MAX_HEADER_BYTES}); the file is truncated or corrupted."
        )
    raw_header = bytes(data[PREAMBLE.size : PREAMBLE.size + size])
    if zlib.crc32(raw_header) != crc:
        raise FormatError(
            f".lep header CRC32 {zlib.crc32(raw_header):08x} does not match the stored {crc:08x}; "
            "the file is corrupted."
        )
    obj = strict_json.loads(inflate_header(raw_header), "the .lep header")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FormatError(
            f".lep header: format tag {obj.get('format') if isinstance(obj, dict) else None!r}, expected {FORMAT!r}."
        )
    try:
        header = Header.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        raise FormatError(
            f".lep header field {'.'.join(map(str, err['loc']))}: {err['msg']} ({len(e.errors())} problem(s) in all)."
        ) from e
    if header.version != version:
        raise FormatError(
            f".lep header says version {header.version} but the preamble says {version}; the file is "
            "forged or corrupted."
        )
    try:
        spec = ModelSpec.from_dict(header.model)
    except ConfigError as e:
        raise FormatError(f".lep header: {e}") from e
    payload = memoryview(data)[PREAMBLE.size + size :]
    _check_shape(header)
    offsets = _check_layout(header, len(payload))
    if header.payload_crc32 is not None:
        if zlib.crc32(payload) != header.payload_crc32:
            raise FormatError(
                f".lep payload CRC32 {zlib.crc32(payload):08x} does not match the header's "
                f"{header.payload_crc32:08x}; the file is corrupted."
            )
    else:
        for t, starts in zip(header.tensors, offsets, strict=True):
            for s, start in zip(t.streams, starts, strict=True):
                if zlib.crc32(payload[start : start + s.length]) != s.crc32:
                    raise FormatError(
                        f".lep tensor {t.name!r} stream {s.role!r}: CRC32 mismatch; the file is corrupted."
                    )
    return header, obj, spec, payload, offsets


def _check_shape(header: Header) -> None:
    """Version 4 has one payload CRC and implied offsets; versions 1-3 an offset and a CRC per stream."""
    compact = header.version >= COMPACT_VERSION
    has_crc = header.payload_crc32 is not None if compact else "payload_crc32" in header.model_fields_set
    if compact != has_crc:
        raise FormatError(
            f".lep header: version {header.version} {'needs' if compact else 'must not have'} a "
            f"'payload_crc32' (from version {COMPACT_VERSION} on, one CRC covers the whole payload); the file "
            "is forged or corrupted."
        )
    for t in header.tensors:
        for s in t.streams:
            for key in ("offset", "crc32"):
                present = key in s.model_fields_set if compact else getattr(s, key) is not None
                if compact == present:
                    raise FormatError(
                        f".lep tensor {t.name!r} stream {s.role!r}: version {header.version} "
                        f"{'must not have' if compact else 'needs'} a per-stream {key!r} (version "
                        f"{COMPACT_VERSION} implies offsets and checks one payload CRC); the file is forged or "
                        "corrupted."
                    )


def _check_layout(header: Header, payload_size: int) -> list[list[int]]:
    """Check counts, lengths, coders and contiguity; returns each tensor's stream offsets in the payload."""
    names, total, offset, offsets = set(), 0, 0, []
    for t in header.tensors:  # first the sizes, so that no later check works on an absurd shape
        if t.name in names:
            raise FormatError(f".lep tensor {t.name!r} appears twice.")
        names.add(t.name)
        total += math.prod(t.shape)
        if total > MAX_ELEMENTS:
            raise FormatError(
                f".lep tensor {t.name!r}: shape {t.shape} brings the file to {total} elements, over "
                f"the limit of {MAX_ELEMENTS}; the header is forged or corrupted."
            )
    for t in header.tensors:
        what = f".lep tensor {t.name!r}"
        numel = math.prod(t.shape)
        roles = tuple(s.role for s in t.streams)
        if roles != _ROLES[t.encoding]:
            raise FormatError(f"{what}: encoding {t.encoding!r} needs streams {_ROLES[t.encoding]}, got {roles}.")
        if (t.gap_direct_bits is not None) != (t.encoding in _SPARSE):
            raise FormatError(f"{what}: gap_direct_bits must be given exactly for the sparse encodings.")
        if t.encoding in _MASKED and header.version < MASK_VERSION:
            raise FormatError(
                f"{what}: encoding {t.encoding!r} exists from .lep version {MASK_VERSION} on, but the file "
                f"says version {header.version}; the file is forged or corrupted."
            )
        if t.kept > numel:
            raise FormatError(f"{what}: {t.kept} kept elements in a tensor of {numel}.")
        item = _DTYPES[t.dtype].itemsize
        starts = []
        for s in t.streams:
            if s.coder not in _CODERS[s.role]:
                raise FormatError(f"{what} stream {s.role!r}: coder {s.coder!r}, expected one of {_CODERS[s.role]}.")
            if s.coder == "half" and (header.version < COMPACT_VERSION or t.dtype != "float32"):
                raise FormatError(
                    f"{what} stream {s.role!r}: coder 'half' stores float32 values only and exists from .lep "
                    f"version {COMPACT_VERSION} on; this is a {t.dtype} tensor in a version-{header.version} "
                    "file, so the file is forged or corrupted."
                )
            if s.offset is not None and s.offset != offset:
                raise FormatError(
                    f"{what} stream {s.role!r}: offset {s.offset}, expected {offset} (streams are "
                    "contiguous, in header order, with no holes or overlaps)."
                )
            starts.append(offset)
            offset += s.length
        offsets.append(starts)
        _check_counts(t, numel, item)
    if offset != payload_size:
        raise FormatError(
            f".lep payload is {payload_size} bytes but the header's streams cover {offset}; "
            "the file is truncated, padded or forged."
        )
    return offsets


def _check_counts(t: TensorEntry, numel: int, item: int) -> None:
    s = {x.role: x for x in t.streams}
    expect: dict[str, int] = {}
    if t.encoding in _RAW_VALUES:
        role, n = ("data", numel) if t.encoding == "raw" else ("values", t.kept)
        expect[role] = n
        size = 2 if s[role].coder == "half" else item  # _check_layout allows half for float32 only
        if s[role].coder in ("none", "half") and s[role].length != n * size:
            raise FormatError(
                f".lep tensor {t.name!r} stream {role!r}: {s[role].length} bytes, expected "
                f"{n * size} for {n} {t.dtype} elements stored as {s[role].coder!r}."
            )
    else:
        k = s["codebook"].count
        size = 2 if s["codebook"].coder == "half" else item
        expect["index"] = numel if t.encoding == "dense" else t.kept
        if t.dtype not in _FLOATS or s["codebook"].length != k * size:
            raise FormatError(
                f".lep tensor {t.name!r} stream 'codebook': {s['codebook'].length} bytes of "
                f"{t.dtype} coded {s['codebook'].coder!r}, expected a float codebook of {k} * {size} bytes."
            )
        if t.encoding == "dense":  # zero may be one of the entries; an empty tensor is never dense
            low, high = (1, MAX_CODEBOOK + 1) if numel else (1, 0)
        else:  # nonzero values only: none exactly when nothing is kept
            low, high = (1, MAX_CODEBOOK) if t.kept else (0, 0)
        if not low <= k <= high:
            raise FormatError(
                f".lep tensor {t.name!r}: a {t.encoding} codebook of {k} values for {t.kept} kept "
                f"of {numel} elements; expected {low} to {high}."
            )
    if t.encoding in _SPARSE:
        expect["gap"] = t.kept
        bits = s["gap_extra"].count
        if bits > t.kept * MAX_GAP_BITS or s["gap_extra"].length != (bits + 7) // 8:
            raise FormatError(
                f".lep tensor {t.name!r} stream 'gap_extra': {s['gap_extra'].length} bytes for "
                f"{bits} bits; expected {(bits + 7) // 8} bytes and at most {MAX_GAP_BITS} bits per gap."
            )
    if t.encoding in _MASKED:
        expect["mask"] = numel
    for role, count in expect.items():
        if s[role].count != count:
            raise FormatError(
                f".lep tensor {t.name!r} stream {role!r}: count {s[role].count}, expected {count} "
                f"(shape {t.shape}, {t.kept} kept)."
            )


def _decompress(s: StreamEntry, data: bytes, size: int, what: str) -> bytes:
    """Raw bytes of a 'data' stream, never producing more than ``size`` bytes."""
    try:
        if s.coder == "zstd":
            if zstandard.frame_content_size(data) != size:
                raise FormatError(f"{what}: the zstd frame does not declare {size} bytes.")
            z = zstandard.ZstdDecompressor().decompressobj()
            out = z.decompress(data)
            leftover = not z.eof or bool(z.unused_data)
        elif s.coder == "lzma":
            x = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma_filters(size))
            out = x.decompress(data, max_length=size + 1)
            leftover = not x.eof or bool(x.unused_data)
        else:
            out, leftover = data, False
    except (zstandard.ZstdError, lzma.LZMAError) as e:
        raise FormatError(f"{what}: {s.coder} data does not decompress ({e}).") from e
    if leftover or len(out) != size:
        raise FormatError(
            f"{what}: {s.coder} data decompresses to {len(out)} bytes with leftovers={leftover}, "
            f"expected exactly {size}."
        )
    return out


def _values(s: StreamEntry, t: TensorEntry, data: bytes, n: int, what: str) -> np.ndarray:
    """The bit patterns of a raw 'data' or 'values' stream of ``n`` elements."""
    if s.coder == "half":  # length checked (2 bytes each) by _check_counts
        return half_from_le(data)
    return _read_le(_decompress(s, data, n * _DTYPES[t.dtype].itemsize, what), t.dtype)


def _codebook(t: TensorEntry, s: StreamEntry, data: bytes, what: str) -> np.ndarray:
    codebook = half_from_le(data) if s.coder == "half" else _read_le(data, t.dtype)
    if not (codebook[1:] > codebook[:-1]).all():
        raise FormatError(f"{what}: codebook bit patterns are not strictly increasing; the file is corrupted.")
    return codebook


def _decode_tensor(t: TensorEntry, payload: memoryview, offsets: list[int]) -> torch.Tensor:
    what = f".lep tensor {t.name!r}"
    s = {x.role: x for x in t.streams}
    data = {x.role: bytes(payload[start : start + x.length]) for x, start in zip(t.streams, offsets, strict=True)}
    numel = math.prod(t.shape)
    if t.encoding == "raw":
        bits = _values(s["data"], t, data["data"], numel, what)
    elif t.encoding in ("sparse-raw", "sparse-raw-mask"):
        values = _values(s["values"], t, data["values"], t.kept, f"{what} stream 'values'")
        bits = np.zeros(numel, dtype=values.dtype)
        bits[_positions(t, s, data, what)] = values
    else:
        codebook = _codebook(t, s["codebook"], data["codebook"], f"{what} stream 'codebook'")
        index = decode_symbols(data["index"], s["index"].count, s["index"].coder, what=f"{what} stream 'index'")
        if index.size and index.max() >= len(codebook):
            raise FormatError(f"{what} stream 'index': index {index.max()} into a codebook of {len(codebook)}.")
        if t.encoding == "dense":
            bits = codebook[index]
        else:
            if (codebook == 0).any():
                raise FormatError(f"{what}: the sparse codebook holds a zero; the file is corrupted.")
            positions = _positions(t, s, data, what)
            bits = np.zeros(numel, dtype=codebook.dtype)
            bits[positions] = codebook[index]
    if int((bits != 0).sum()) != t.kept:
        raise FormatError(f"{what}: {int((bits != 0).sum())} nonzero elements, header says {t.kept}.")
    return _tensor(bits, t.dtype, t.shape, what)


def _positions(t: TensorEntry, s: dict[str, StreamEntry], data: dict[str, bytes], what: str) -> np.ndarray:
    if t.encoding in _MASKED:
        mask = decode_mask(data["mask"], *mask_view(t.shape), what=f"{what} stream 'mask'")
        positions = np.flatnonzero(mask.reshape(-1))
        if len(positions) != t.kept:
            raise FormatError(f"{what} stream 'mask': {len(positions)} kept positions, the header says {t.kept}.")
        return positions
    direct = int(t.gap_direct_bits or 0)  # _check_layout guarantees it for the sparse encodings
    symbols = decode_symbols(data["gap"], s["gap"].count, s["gap"].coder, what=f"{what} stream 'gap'")
    limit = bucket_symbol_limit(direct, MAX_GAP_BITS)
    if symbols.size and symbols.max() >= limit:
        raise FormatError(f"{what} stream 'gap': symbol {symbols.max()} is not below {limit}.")
    widths = bucket_widths(symbols, direct)
    if int(widths.sum()) != s["gap_extra"].count:
        raise FormatError(
            f"{what} stream 'gap_extra': the gaps need {int(widths.sum())} extra bits, the header "
            f"says {s['gap_extra'].count}."
        )
    extra = unpack_bits(data["gap_extra"], widths, f"{what} stream 'gap_extra'").astype(np.int64)
    positions = np.cumsum(unbucketize(symbols, extra, direct) + 1) - 1
    if positions.size and positions[-1] >= math.prod(t.shape):
        raise FormatError(
            f"{what} stream 'gap': position {positions[-1]} is outside a tensor of {math.prod(t.shape)} elements."
        )
    return positions


def _read(data_or_path: bytes | bytearray | memoryview | str | os.PathLike) -> bytes:
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return bytes(data_or_path)
    path = Path(data_or_path)
    if not path.is_file():
        raise FormatError(f".lep file {path} not found; write one with lepton.compress.container.save_lep.")
    return path.read_bytes()


def decode_model(data: bytes) -> LepModel:
    """Parse, verify and decode `.lep` bytes; every tensor comes back bit for bit as it was saved."""
    header, obj, spec, payload, offsets = _parse(_read(data))
    state = {t.name: _decode_tensor(t, payload, o) for t, o in zip(header.tensors, offsets, strict=True)}
    return LepModel(spec, state, obj, dict(header.metadata))


def save_lep(
    path: str | os.PathLike,
    spec: ModelSpec,
    state_dict: Mapping[str, torch.Tensor],
    *,
    coder: str = "ans",
    metadata: dict[str, Any] | None = None,
    masks: bool = True,
    compact: bool = False,
) -> int:
    """Write a `.lep` file atomically (arguments as :func:`encode_model`); returns the number of bytes written."""
    data = encode_model(spec, state_dict, coder=coder, metadata=metadata, masks=masks, compact=compact)
    atomic_write_bytes(path, data)
    return len(data)


def load_lep(path: str | os.PathLike) -> LepModel:
    return decode_model(_read(path))


def inspect_lep(data_or_path: bytes | str | os.PathLike) -> list[dict[str, Any]]:
    """One row per tensor (Deep Compression style) and a final ``(header)`` row; the file is fully verified.

    ``bits_per_value``: bits of everything but positions (codebook + indices, or raw values) per kept
    weight; ``bits_per_position``: gap or mask bits per kept weight; ``bytes``: the tensor's payload bytes;
    ``share``: fraction of the whole file. ``pct_kept`` is in percent (8.0 means 8%). ``encoding`` carries the
    first stream's coder when it is not ``none``: ``raw+lzma``, ``sparse-raw+zstd``, ``raw+half``,
    ``dense+half`` (a version-4 float16 codebook).
    """
    data = _read(data_or_path)
    header, _, _, payload, offsets = _parse(data)
    for t, o in zip(header.tensors, offsets, strict=True):
        _decode_tensor(t, payload, o)
    rows = []
    for t in header.tensors:
        size = {s.role: s.length for s in t.streams}
        numel, nbytes = math.prod(t.shape), sum(size.values())
        position_bytes = size.get("gap", 0) + size.get("gap_extra", 0) + size.get("mask", 0)
        first_coder = t.streams[0].coder  # raw values' compressor, or a codebook's 'half' (version 4)
        rows.append(
            {
                "tensor": t.name,
                "shape": list(t.shape),
                "weights": numel,
                "kept": t.kept,
                "pct_kept": 100.0 * t.kept / numel if numel else 0.0,
                "encoding": t.encoding if first_coder == "none" else f"{t.encoding}+{first_coder}",
                "codebook": t.streams[0].count if t.encoding in ("dense", "sparse", "sparse-mask") else 0,
                "bits_per_value": 8.0 * (nbytes - position_bytes) / t.kept if t.kept else 0.0,
                "bits_per_position": 8.0 * position_bytes / t.kept if t.kept else 0.0,
                "bytes": nbytes,
                "share": nbytes / len(data),
            }
        )
    overhead = len(data) - len(payload)
    rows.append(
        {
            "tensor": HEADER_ROW,
            "shape": [],
            "weights": 0,
            "kept": 0,
            "pct_kept": 0.0,
            "encoding": "json",
            "codebook": 0,
            "bits_per_value": 0.0,
            "bits_per_position": 0.0,
            "bytes": overhead,
            "share": overhead / len(data),
        }
    )
    return rows
