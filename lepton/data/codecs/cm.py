"""``lepton-cm``: lossless context-model + rANS coder for uint8 images (MNIST-like greyscale blocks).

The array's last two axes are the image height and width (``[N, H, W]``, ``[H, W]``, or
``[N, C, H, W]`` as ``N*C`` planes); a 0-d or 1-d array is coded as one row. Each pixel is one rANS
symbol drawn from the distribution of the leaf of a learned context tree its causal neighbourhood
falls into (:mod:`lepton.data.codecs.cm_model`, :mod:`lepton.data.codecs._cm_kernel`).

Where the model lives:

- In a packed store, :meth:`CMCodec.fit` learns one model from the whole field and the store keeps
  its bytes (``CMCodec.model``) once, as a checksummed blob beside the field's blocks; it is counted
  in the file's bytes, and every block stays independently decodable with it.
- A codec without a model (``get_codec("lepton-cm")``) fits one to each array it encodes and embeds
  it in the stream, so the stream stands alone.

Stream layout: ``b"LCM"``, a version byte (3), the CRC-32 of the raw pixels (4 bytes, little-endian),
a kind byte, then for kind 0 (the codec's model) the model's CRC-32, or for kind 1 (embedded) the
model's length (u32) and bytes; then the rANS words (uint32, little-endian). The decoder checks that
the coder read the words exactly, ended in its initial state, and that the CRC matches, so
corruption raises FormatError; streams of other versions (1 and 2 were adaptive bitwise mixers)
are refused with a FormatError naming the version.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from lepton.data.codecs.general import check_dtype, check_shape
from lepton.errors import ConfigError, DataError, FormatError
from lepton.utils.checks import check_int

MAGIC = b"LCM\x03"
HEADER = len(MAGIC) + 4 + 1
KIND_FIELD, KIND_EMBEDDED = 0, 1
# A pixel costs at least -log2(65535/65536) bits (the most probable symbol of a leaf), so b bytes
# hold at most ~363,000 * b pixels; more is a forged shape.
MAX_PIXELS_PER_BYTE = 363_000
PIXELS_PER_LEAF = 8192  # an embedded model gets at most one leaf per this many pixels (measured best on MNIST)


def _planes(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) >= 2:
        h, w = shape[-2], shape[-1]
        n = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
        return n, h, w
    return 1, 1, (shape[0] if shape else 1)


@dataclass(frozen=True)
class CMCodec:
    """Context-tree rANS coder for uint8 images.

    ``model``: a fitted model's bytes, as a store keeps them; empty = fit one per array and embed it.
    ``leaves``: the tree's size when fitting, ``depth`` its most levels (<= 16); ``fit_pixels``: how
    many pixels the tree is grown on (all pixels are counted into the leaves); ``min_leaf``: the
    fewest fitting pixels per leaf.
    """

    model: bytes = field(default=b"", repr=False)
    leaves: int = 2048
    fit_pixels: int = 8_000_000
    min_leaf: int = 150
    depth: int = 16
    name: str = field(init=False, default="lepton-cm")

    def __post_init__(self) -> None:
        for key, hi in (("leaves", 1 << 16), ("fit_pixels", 1 << 40), ("min_leaf", 1 << 40), ("depth", 16)):
            check_int(getattr(self, key), key, 1, hi, owner="codec 'lepton-cm'")
        if not isinstance(self.model, bytes):
            raise ConfigError("lepton-cm: model must be bytes (CMCodec.fit makes them)")
        if self.model:  # parse, validate and build the decoder's tables now, not at the first block
            _ = self._model.cum, self._model.nodes

    @property
    def params(self) -> dict[str, Any]:
        """The JSON parameters; a fitted ``model`` travels separately (a store keeps it as a blob)."""
        return {"leaves": self.leaves}

    @cached_property
    def _model(self) -> Any:
        from lepton.data.codecs.cm_model import CMModel

        return CMModel.from_bytes(self.model)

    @cached_property
    def _model_crc(self) -> int:
        """CRC-32 of the model's stored bytes: what each block names as the model it was coded with."""
        return zlib.crc32(self.model)

    def supports(self, dtype: Any, shape: tuple[int, ...]) -> bool:
        try:
            return np.dtype(dtype) == np.uint8
        except TypeError:
            return False

    def _images(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if array.dtype != np.uint8:
            raise DataError(
                f"lepton-cm codes uint8 images only, got dtype {array.dtype}; use 'zstd' or 'lzma' for other arrays"
            )
        return np.ascontiguousarray(array).reshape(_planes(array.shape))

    def fit(self, array: np.ndarray, *, progress: Callable[[float, float], None] | None = None) -> CMCodec:
        """A codec with a model learned from ``array`` (all of it counted; the tree grown on up to
        ``fit_pixels`` pixels), for every block of a field; ``progress(done, total)`` as in
        :func:`lepton.data.codecs.cm_model.fit`."""
        from lepton.data.codecs import cm_model

        images = self._images(array)
        if images.size == 0:
            images = np.zeros((1, 1, 1), np.uint8)
        m = cm_model.fit(
            images,
            leaves=self.leaves,
            min_leaf=self.min_leaf,
            max_fit_pixels=self.fit_pixels,
            max_depth=self.depth,
            progress=progress,
        )
        return dataclasses.replace(self, model=m.to_bytes())

    def encode(self, array: np.ndarray) -> bytes:
        from lepton.data.codecs import _cm_kernel as K
        from lepton.data.codecs import cm_model

        images = self._images(array)
        header = MAGIC + zlib.crc32(images.tobytes()).to_bytes(4, "little")
        if images.size == 0:
            return header + bytes([KIND_FIELD]) + b"\0\0\0\0"
        if self.model:
            m = self._model
            head = header + bytes([KIND_FIELD]) + self._model_crc.to_bytes(4, "little")
        else:
            m = cm_model.fit(
                images,
                leaves=min(self.leaves, max(1, images.size // PIXELS_PER_LEAF)),
                min_leaf=self.min_leaf,
                max_fit_pixels=self.fit_pixels,
                max_depth=self.depth,
            )
            blob = m.to_bytes()
            head = header + bytes([KIND_EMBEDDED]) + struct.pack("<I", len(blob)) + blob
        # < 1 word per symbol (an escape and 8 raw bits: < 24 bits); a symbol per pixel and per image
        words = np.empty(images.size + len(images) + 4, dtype=np.uint32)
        first = K.encode(images, *m.nodes, m.fast(*images.shape[1:]), m.start, m.freq, words)
        return head + words[first:].astype("<u4").tobytes()

    def decode(self, data: bytes, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        from lepton.data.codecs import _cm_kernel as K
        from lepton.data.codecs.cm_model import CMModel

        if check_dtype(dtype, decoding=True) != np.uint8:
            raise FormatError(f"lepton-cm: stored dtype is {np.dtype(dtype).name}, but lepton-cm only codes uint8")
        shp = check_shape(shape)
        data = bytes(data)
        if len(data) >= len(MAGIC) and data[:3] == MAGIC[:3] and data[3] != MAGIC[3]:
            raise FormatError(
                f"lepton-cm: stream version {data[3]} is not supported (this decoder reads "
                f"version {MAGIC[3]}, b'LCM\\x03'); re-encode the block"
            )
        if len(data) < HEADER + 4 or data[: len(MAGIC)] != MAGIC:
            raise FormatError("lepton-cm: missing or unknown stream header (expected b'LCM\\x03')")
        crc = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
        kind = data[HEADER - 1]
        (value,) = struct.unpack_from("<I", data, HEADER)
        body = HEADER + 4
        planes = _planes(shp)
        pixels = planes[0] * planes[1] * planes[2]
        if pixels == 0:
            if len(data) != body:
                raise FormatError("lepton-cm: extra bytes after an empty block")
            return np.zeros(shp, np.uint8)
        if kind == KIND_FIELD:
            if not self.model:
                raise FormatError(
                    "lepton-cm: this block was coded with a field's shared model, but the "
                    "codec has none; read it through its store"
                )
            m = self._model
            if value != self._model_crc:
                raise FormatError(
                    f"lepton-cm: the block was coded with model CRC {value:#010x}, the field's "
                    f"model has {self._model_crc:#010x}; the store is inconsistent"
                )
        elif kind == KIND_EMBEDDED:
            if value > len(data) - body:
                raise FormatError(f"lepton-cm: embedded model of {value} bytes overruns the {len(data)}-byte block")
            m = CMModel.from_bytes(data[body : body + value])
            body += value
        else:
            raise FormatError(f"lepton-cm: unknown model kind {kind} (expected 0 or 1)")
        if (len(data) - body) % 4:
            raise FormatError("lepton-cm: the rANS payload is not whole 32-bit words; the block is truncated")
        words = np.frombuffer(data, dtype="<u4", offset=body).astype(np.uint32)
        if pixels > MAX_PIXELS_PER_BYTE * max(4 * words.size, 1):
            raise FormatError(
                f"lepton-cm: {4 * words.size} bytes cannot hold {pixels} pixels; "
                "the stored shape is forged or the block is truncated"
            )
        images = np.zeros(planes, dtype=np.uint8)
        used, state = K.decode(images, *m.nodes, m.fast(*planes[1:]), m.cum, words)
        if used < 0:
            raise FormatError("lepton-cm: an image's near-white level decoded out of range; the block is corrupt")
        if used != words.size or state != K.RANS_L:
            raise FormatError(
                f"lepton-cm: the coder read {used} of {words.size} words and ended in state "
                f"{state:#x}; the block is truncated or corrupt"
            )
        if zlib.crc32(images.tobytes()) != crc:
            raise FormatError("lepton-cm: decoded pixels fail the CRC-32 check; the block is corrupt")
        return images.reshape(shp)
