"""The packed data store (``.lds``, version 1): writer, reader, index validation and block checksums.

Layout (spec in ``docs/data-store.md``): a 16-byte header, the block payloads back to back with no
holes, the index (UTF-8 JSON), and a 56-byte footer holding the index's offset, length and SHA-256.
A learned codec model is stored once per store: fields that use the same model (a later split reusing the
codec fitted on the first) name the exact same extent.
The footer is written last and the file is renamed into place only once complete, so an interrupted
write never leaves a store that looks complete. Every length and offset read from a file is checked
against the file's size and the format's limits before anything is allocated.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
import math
import os
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lepton.data.codecs import AUTO_CANDIDATES, CODECS, DTYPES, Codec, choose_codec, fit_codec, get_codec
from lepton.data.store.remote import ByteSource, open_source
from lepton.errors import ConfigError, DataError, FormatError
from lepton.utils import strict_json
from lepton.utils.checks import check_int, check_name
from lepton.utils.io import atomic_path

MAGIC = b"\x89LDS\r\n\x1a\n"
END_MAGIC = b"LDSINDEX"
VERSION = 1
HEADER = struct.Struct("<8sII")  # magic, version, flags (0)
FOOTER = struct.Struct("<QQ32s8s")  # index offset, index length, SHA-256 of the index, end magic
MAX_INDEX_BYTES = 64 << 20
MAX_BLOCK_SAMPLES = 1 << 20
MAX_DECODED_BLOCK_BYTES = 1 << 30
MAX_ARRAY_BYTES = 1 << 30
MAX_DIMS = 16
DEFAULT_BLOCK_SAMPLES = 1000
MAX_PENDING_BYTES = 64 << 20
"""Raw bytes of blocks a writer holds while they encode, beyond one block per thread: it bounds a streaming
pack's memory when blocks are large (1,000 RGB 96x96 images are 27.6 MB, and each also holds its encoder's
output buffer while it runs)."""
GENERAL = ("freq", "lzma", "zstd", "deflate")
IMAGES, LABELS = "images", "labels"  # the fields of a packed image dataset's splits


def _check_name(kind: str, name: Any, error: type[Exception]) -> str:
    """Split, field and array names: 1-64 name characters, any of them first (the format always allowed it)."""
    return check_name(name, f"{kind} name", max_len=64, segment=False, error=error)


def resolve_codec(
    spec: str | Codec, sample: np.ndarray, *, min_decode_mb_s: float = 10.0, fitted: tuple[Codec, ...] = ()
) -> Codec:
    """A codec object from a name or a codec. ``'auto'`` tries every available codec on ``sample``;
    ``'general'`` only the general-purpose ones (for labels and other small fields). ``fitted``: codecs
    already fitted to the whole field, measured as they are (see :func:`choose_codec`)."""
    if not isinstance(spec, str):
        return spec
    if spec == "general":
        return choose_codec(sample, candidates=GENERAL, min_decode_mb_s=min_decode_mb_s, fitted=fitted)
    if spec != "auto":
        return get_codec(spec)
    candidates = [name for name in AUTO_CANDIDATES if _available(name)]
    return choose_codec(sample, candidates=candidates, min_decode_mb_s=min_decode_mb_s, fitted=fitted)


def _available(name: str) -> bool:
    try:
        get_codec(name)
    except ImportError:  # lepton-cm needs its compiled kernels; fall back to the general codecs
        return False
    return True


# ----------------------------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class FieldSpec:
    """What the index records for one field of a split: per-sample dtype and shape, and the codec."""

    dtype: np.dtype
    shape: tuple[int, ...]
    codec: Codec
    model: tuple[int, int, int] | None = None  # [offset, length, crc32] of the codec's learned model, if any

    @property
    def sample_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def to_json(self) -> dict[str, Any]:
        out = {
            "dtype": self.dtype.name,
            "shape": list(self.shape),
            "codec": {"name": self.codec.name, "params": dict(self.codec.params)},
        }
        if self.model is not None:
            out["model"] = list(self.model)
        return out


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _threads(threads: int, who: str, most: int | None = None) -> int:
    """A validated thread count; 0 means one per usable core (at most ``most``)."""
    check_int(threads, "threads", 0, owner=who, hint="0 means one thread per core.")
    return threads or min(usable_cores(), most or usable_cores())


class StoreWriter:
    """Write a store: ``add_split`` for per-sample fields, ``add_array`` for whole arrays, then ``close``.

    Use as a context manager; if the body raises, no file appears at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        attrs: Mapping[str, Any] | None = None,
        block_samples: int = DEFAULT_BLOCK_SAMPLES,
        threads: int = 0,
    ) -> None:
        check_int(block_samples, "block_samples", 1, MAX_BLOCK_SAMPLES, owner="StoreWriter")
        self.path, self.block_samples = Path(path), block_samples
        self.threads = _threads(threads, "StoreWriter", most=4)
        try:
            attrs_text = json.dumps(dict(attrs or {}), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"StoreWriter: attrs must be JSON (str keys; str, int, finite float, bool, None, lists, dicts): {e}"
            ) from None
        if strict_json.nesting_depth(attrs_text) >= strict_json.MAX_DEPTH:  # the index holds attrs one level down
            raise ConfigError(
                f"StoreWriter: attrs nest {strict_json.nesting_depth(attrs_text)} levels deep; a store "
                f"index allows at most {strict_json.MAX_DEPTH - 1}, so flatten them."
            )
        self._index: dict[str, Any] = {
            "format": "lepton-data-store",
            "version": VERSION,
            "attrs": json.loads(attrs_text),
            "splits": {},
            "arrays": {},
        }
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._f: BinaryIO = open(self._tmp, "wb")
        self._f.write(HEADER.pack(MAGIC, VERSION, 0))
        self._offset = HEADER.size
        self._models: dict[bytes, list[int]] = {}  # a learned model's bytes -> the extent that already holds them
        self.encode_seconds: dict[str, float] = {}

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc_type, exc, tb)

    def _append(self, blob: bytes) -> list[int]:
        entry = [self._offset, len(blob), zlib.crc32(blob)]
        self._f.write(blob)
        self._offset += len(blob)
        return entry

    def add_split(
        self,
        name: str,
        fields: Mapping[str, np.ndarray],
        codecs: Mapping[str, str | Codec],
        *,
        progress: Callable[[int], None] | None = None,
        fit_progress: Callable[[str, float, float], None] | None = None,
    ) -> dict[str, FieldSpec]:
        """Append split ``name``: equally long arrays (first axis = samples), cut into blocks, each block
        of each field encoded independently. ``progress(samples_done)`` is called after each block;
        ``fit_progress(field, done, total)`` while a learned codec is fitted to a field (see :func:`fit_codec`)."""
        arrays = self._check_fields(name, fields)
        n = len(next(iter(arrays.values())))
        specs = self._field_specs(name, arrays, codecs, fit_progress)
        bs = self.block_samples
        blocks = ({k: a[s : s + bs] for k, a in arrays.items()} for s in range(0, n, bs))
        self._write_blocks(name, specs, blocks, progress)
        return specs

    def add_split_blocks(
        self,
        name: str,
        blocks: Iterable[Mapping[str, np.ndarray]],
        codecs: Mapping[str, str | Codec],
        *,
        progress: Callable[[int], None] | None = None,
        fit_progress: Callable[[str, float, float], None] | None = None,
    ) -> dict[str, FieldSpec]:
        """Append split ``name`` from an iterable of blocks, each ``block_samples`` samples of every field (the
        last may be shorter), encoded and written as they come: at most a few blocks are held at a time, so a
        dataset larger than memory can be packed. Codecs are chosen, and a learned codec fitted, on the first
        block. ``progress(samples_done)`` is called after each block; ``fit_progress`` as in :meth:`add_split`."""
        it = iter(blocks)
        first = next(it, None)
        if first is None:
            raise DataError(f"split {name!r} has no blocks")
        arrays = self._check_fields(name, first)
        specs = self._field_specs(name, arrays, codecs, fit_progress)
        self._write_blocks(name, specs, itertools.chain([arrays], it), progress)
        return specs

    def _check_fields(self, name: str, fields: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The fields as contiguous sample arrays of one length, their names and dtypes checked."""
        _check_name("split", name, ConfigError)
        if name in self._index["splits"]:
            raise ConfigError(f"split {name!r} was already added to {self.path}")
        if not fields:
            raise DataError(f"split {name!r} has no fields")
        arrays = {_check_name("field", k, ConfigError): _sample_array(name, k, v) for k, v in fields.items()}
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise DataError(
                f"split {name!r}: fields have different numbers of samples { {k: len(a) for k, a in arrays.items()} }"
            )
        return arrays

    def _field_specs(
        self,
        name: str,
        arrays: Mapping[str, np.ndarray],
        codecs: Mapping[str, str | Codec],
        fit_progress: Callable[[str, float, float], None] | None = None,
    ) -> dict[str, FieldSpec]:
        """Each field's spec: the codec resolved on its first block and fitted on ``arrays`` (a learned model is
        written now, before the field's blocks, unless an earlier field of this store holds the same model)."""
        specs: dict[str, FieldSpec] = {}
        for key, a in arrays.items():
            spec = codecs.get(key, "auto")
            codec = resolve_codec(spec, a[: self.block_samples])
            if not codec.supports(a.dtype, a[: self.block_samples].shape):
                raise ConfigError(
                    f"codec {codec.name!r} cannot encode field {key!r} ({a.dtype}, sample shape "
                    f"{list(a.shape[1:])}); choose another codec (e.g. zstd)."
                )
            report = None if fit_progress is None else (lambda done, total, k=key: fit_progress(k, done, total))
            codec = fit_codec(codec, a, progress=report)
            model = getattr(codec, "model", b"")
            specs[key] = FieldSpec(a.dtype, tuple(a.shape[1:]), codec, self._model_extent(model) if model else None)
            if specs[key].sample_bytes * self.block_samples > MAX_DECODED_BLOCK_BYTES:
                raise ConfigError(
                    f"field {key!r}: a block of {self.block_samples} samples would exceed "
                    f"{MAX_DECODED_BLOCK_BYTES >> 20} MiB; lower block_samples."
                )
        return specs

    def _model_extent(self, model: bytes) -> tuple[int, int, int]:
        """Where a learned model lies: stored once per store, before the blocks of the first field that uses it;
        a later field with the same model (a later split reusing the codec fitted on the first) points at that
        same extent instead of storing another copy."""
        if model not in self._models:
            self._models[model] = self._append(model)
        return tuple(self._models[model])

    def _block(self, name: str, i: int, block: Mapping[str, np.ndarray], specs: dict[str, FieldSpec]) -> int:
        """Check block ``i`` against the fields' specs; returns its sample count."""
        if set(block) != set(specs):
            raise DataError(f"split {name!r}, block {i}: fields {sorted(block)}, expected {sorted(specs)}")
        counts = {len(a) for a in block.values()}
        n = counts.pop() if len(counts) == 1 else -1
        if not 0 < n <= self.block_samples:
            raise DataError(
                f"split {name!r}, block {i}: every field needs the same 1..{self.block_samples} samples, "
                f"got { {k: len(a) for k, a in block.items()} }"
            )
        for key, a in block.items():
            if a.dtype != specs[key].dtype or a.shape[1:] != specs[key].shape:
                raise DataError(
                    f"split {name!r}, block {i}, field {key!r}: {a.dtype}{list(a.shape[1:])} per sample, the "
                    f"first block had {specs[key].dtype}{list(specs[key].shape)}"
                )
        return n

    def _write_blocks(
        self,
        name: str,
        specs: dict[str, FieldSpec],
        blocks: Iterable[Mapping[str, np.ndarray]],
        progress: Callable[[int], None] | None,
    ) -> None:
        """Encode ``blocks`` on ``threads`` threads and append them in order; only a block before the last may be
        short of ``block_samples`` if none follows it. At most two blocks per thread are in flight, and no more
        than one per thread once they hold :data:`MAX_PENDING_BYTES` of raw data."""
        import time

        entries: list[dict[str, list[int]]] = []
        done = 0

        def encode(block: Mapping[str, np.ndarray]) -> tuple[dict[str, bytes], dict[str, float]]:
            out, secs = {}, {}
            for key, a in block.items():
                t0 = time.perf_counter()
                out[key] = specs[key].codec.encode(np.ascontiguousarray(a))
                secs[key] = time.perf_counter() - t0
            return out, secs

        def write(job: tuple[int, Future]) -> None:
            through, future = job  # the samples written once this block is
            blobs, secs = future.result()
            entries.append({key: self._append(blob) for key, blob in blobs.items()})
            for key, s in secs.items():
                self.encode_seconds[f"{name}/{key}"] = self.encode_seconds.get(f"{name}/{key}", 0.0) + s
            if progress is not None:
                progress(through)

        pending: collections.deque[tuple[int, Future]] = collections.deque()
        short = False
        with ThreadPoolExecutor(self.threads) as pool:  # zlib, lzma, zstd and numba kernels release the GIL
            for i, block in enumerate(blocks):
                if short:
                    raise DataError(
                        f"split {name!r}, block {i - 1}: only the last block may hold fewer than "
                        f"{self.block_samples} samples"
                    )
                n = self._block(name, i, block, specs)
                short, done = n < self.block_samples, done + n
                pending.append((done, pool.submit(encode, block)))
                held = sum(a.nbytes for a in block.values()) * len(pending)
                if len(pending) >= 2 * self.threads or (len(pending) > self.threads and held > MAX_PENDING_BYTES):
                    write(pending.popleft())
            while pending:
                write(pending.popleft())
        self._index["splits"][name] = {
            "samples": done,
            "block_samples": self.block_samples,
            "fields": {k: s.to_json() for k, s in specs.items()},
            "blocks": entries,
        }

    def add_array(self, name: str, array: np.ndarray, codec: str | Codec = "auto") -> None:
        """Store one whole array (e.g. PCA components) as a single checksummed block."""
        _check_name("array", name, ConfigError)
        a = np.asarray(array)
        if a.dtype not in DTYPES or a.ndim > MAX_DIMS or a.nbytes > MAX_ARRAY_BYTES:
            raise DataError(
                f"array {name!r}: {a.dtype}{list(a.shape)} is not storable (dtypes: "
                f"{', '.join(d.name for d in DTYPES)}; at most {MAX_DIMS} dims and 1 GiB)"
            )
        c = resolve_codec(codec, a)
        entry = self._append(c.encode(a))
        self._index["arrays"][name] = {**FieldSpec(a.dtype, a.shape, c).to_json(), "block": entry}

    def close(self) -> Path:
        """Write the index and the footer, fsync and rename into place; returns the store's path."""
        if self._f.closed:
            return self.path
        index = json.dumps(self._index, separators=(",", ":"), allow_nan=False).encode()
        offset = self._offset
        self._f.write(index)
        self._f.write(FOOTER.pack(offset, len(index), hashlib.sha256(index).digest(), END_MAGIC))
        self._f.close()
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> None:
        """Drop the temporary file; nothing appears at ``path``."""
        if not self._f.closed:
            self._f.close()
        self._atomic.__exit__(exc_type or RuntimeError, exc or RuntimeError("aborted"), tb)


def _sample_array(split: str, key: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim < 1:
        raise DataError(f"split {split!r}, field {key!r}: needs a first (sample) axis, got a scalar")
    if a.ndim > MAX_DIMS + 1:
        raise DataError(f"split {split!r}, field {key!r}: at most {MAX_DIMS} dimensions per sample")
    dt = a.dtype.newbyteorder("=")
    if dt not in DTYPES:
        raise DataError(
            f"split {split!r}, field {key!r}: dtype {a.dtype} is not storable; "
            f"use one of {', '.join(d.name for d in DTYPES)}"
        )
    return np.ascontiguousarray(a, dtype=dt)


# ----------------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SplitInfo:
    name: str
    samples: int
    block_samples: int
    fields: dict[str, FieldSpec]
    blocks: list[dict[str, tuple[int, int, int]]]

    def block_range(self, i: int) -> tuple[int, int]:
        start = i * self.block_samples
        return start, min(start + self.block_samples, self.samples)


class Store:
    """A packed store opened for reading (a local path or an fsspec URL); the index is validated on open.

    Blocks are read and decoded on demand and kept in an LRU cache of ``cache_bytes`` decoded bytes.
    ``take`` (random samples, as a shuffled loader asks) fills a whole decoded copy of the field instead
    when the field fits in half of ``cache_bytes``: each block is decoded once, on first touch, and a
    batch is then one gather from one array instead of one lookup per block it touches. A batch that
    touches a quarter of the field's undecoded blocks or more (a shuffled pass) decodes all the rest at
    once, on ``threads`` threads (0 = one per usable core).
    After ``fork`` (DataLoader workers) the file is reopened in the child on first use.
    """

    def __init__(
        self,
        location: str | os.PathLike,
        *,
        cache_bytes: int = 256 << 20,
        storage_options: dict[str, Any] | None = None,
        threads: int = 0,
    ) -> None:
        self.threads = _threads(threads, "Store")
        self.location = str(location)
        self.storage_options = storage_options
        self.cache_bytes = cache_bytes
        self._source: ByteSource | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, int], np.ndarray] = OrderedDict()
        self._cached = 0
        self._whole: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # field -> (array, blocks decoded)
        self._complete: dict[tuple[str, str], np.ndarray] = {}  # the fields of ``_whole`` with every block decoded
        src = self._src()
        self.file_bytes = src.size
        self.index_offset, self.index_bytes, index = _read_index(src)
        self.version: int = index["version"]
        self.attrs: dict[str, Any] = index["attrs"]
        self.splits, self.arrays = _parse_index(index, self.location, self.index_offset)
        self._model_users: dict[tuple[int, int, int], list[tuple[str, str]]] = {}  # in index order
        for info in self.splits.values():
            for fname, spec in info.fields.items():
                if spec.model is not None:
                    self._model_users.setdefault(spec.model, []).append((info.name, fname))
        codecs: dict[tuple[tuple[int, int, int], str], Codec] = {}
        for extent, users in self._model_users.items():
            blob = self._model_blob(extent, users)
            for split, fname in users:
                spec = self.splits[split].fields[fname]
                key = (extent, json.dumps([spec.codec.name, spec.codec.params], sort_keys=True))
                if key not in codecs:  # a model shared by several fields is parsed once
                    codecs[key] = self._model_codec(spec, blob, f"split {split!r}, field {fname!r}")
                self.splits[split].fields[fname] = dataclasses.replace(spec, codec=codecs[key])

    def __repr__(self) -> str:
        return f"Store({self.location!r}, splits={ {k: s.samples for k, s in self.splits.items()} })"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get a copy without the open file
        state = self.__dict__.copy()
        state.update(_source=None, _pid=-1, _lock=None, _cache=OrderedDict(), _cached=0, _whole={}, _complete={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _src(self) -> ByteSource:
        if self._source is None or self._pid != os.getpid():
            self._source = open_source(self.location, self.storage_options)
            self._pid = os.getpid()
        return self._source

    def close(self) -> None:
        if self._source is not None and self._pid == os.getpid():
            self._source.close()
        self._source = None
        self._cache.clear()
        self._cached = 0
        self._whole.clear()
        self._complete.clear()

    def _model_blob(self, extent: tuple[int, int, int], users: list[tuple[str, str]]) -> bytes:
        """A learned model's bytes, read and checked once however many fields share them."""
        offset, length, crc = extent
        blob = self._src().read(offset, length)
        if zlib.crc32(blob) != crc:
            where = ", ".join(f"split {s!r}, field {f!r}" for s, f in users)
            raise FormatError(
                f"{self.location}: the model of {where}: checksum mismatch; the store is corrupt, re-pack it "
                "or fetch it again."
            )
        return blob

    def _model_codec(self, spec: FieldSpec, blob: bytes, where: str) -> Codec:
        """``spec``'s codec rebuilt around the learned model ``blob``."""
        try:
            return get_codec(spec.codec.name, **spec.codec.params, model=blob)
        except (ConfigError, FormatError) as e:
            raise FormatError(f"{self.location}: the model of {where} is unusable: {e}") from None

    def model_owner(self, split: str, field: str) -> tuple[str, str] | None:
        """The split and field a field's learned model is counted under: the first field in the index that
        names that model (the one whose split stored it; a later split reusing the codec fitted on the first
        points at the same bytes). None when the field has no model."""
        model = self.split(split).fields[field].model
        return None if model is None else self._model_users[model][0]

    def split(self, name: str) -> SplitInfo:
        if name not in self.splits:
            raise DataError(f"{self.location}: no split {name!r}; the store has {', '.join(self.splits) or 'none'}")
        return self.splits[name]

    def _read(self, where: str, entry: tuple[int, int, int]) -> bytes:
        """A block's stored bytes, checksum verified."""
        offset, length, crc = entry
        blob = self._src().read(offset, length)
        if zlib.crc32(blob) != crc:
            raise FormatError(
                f"{self.location}: {where}: checksum mismatch (stored {crc:#010x}, computed "
                f"{zlib.crc32(blob):#010x}); the store is corrupt, re-pack it or fetch it again."
            )
        return blob

    def _decode(self, where: str, entry: tuple[int, int, int], spec: FieldSpec, shape: tuple[int, ...]) -> np.ndarray:
        return self._decode_blob(where, self._read(where, entry), spec, shape)

    def _decode_blob(self, where: str, blob: bytes, spec: FieldSpec, shape: tuple[int, ...]) -> np.ndarray:
        try:
            out = spec.codec.decode(blob, spec.dtype, shape)
        except Exception as e:  # a checksum-valid block the codec refuses is forged: report, never crash
            raise FormatError(f"{self.location}: {where}: cannot decode with {spec.codec.name}: {e}") from None
        if out.dtype != spec.dtype or out.shape != shape:
            raise FormatError(
                f"{self.location}: {where}: decoded {out.dtype}{list(out.shape)}, expected {spec.dtype}{list(shape)}"
            )
        return out

    def read_block(self, split: str, field: str, i: int) -> np.ndarray:
        """Block ``i`` of ``field`` in ``split``, decoded (cached; do not modify the returned array)."""
        info = self.split(split)
        if field not in info.fields:
            raise DataError(
                f"{self.location}: split {split!r} has no field {field!r}; fields: {', '.join(info.fields)}"
            )
        if not 0 <= i < len(info.blocks):
            raise DataError(f"{self.location}: split {split!r} has {len(info.blocks)} blocks, asked for block {i}")
        key = (split, field, i)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        start, stop = info.block_range(i)
        spec = info.fields[field]
        out = self._decode(
            f"block {i} of split {split!r}, field {field!r}", info.blocks[i][field], spec, (stop - start, *spec.shape)
        )
        out.flags.writeable = False
        with self._lock:
            if key not in self._cache and out.nbytes <= self.cache_bytes:
                self._cache[key] = out
                self._cached += out.nbytes
                while self._cached > self.cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._cached -= old.nbytes
        return out

    def read_field(self, split: str, field: str) -> np.ndarray:
        """The whole field, all blocks concatenated (a fresh, writable array)."""
        info = self.split(split)
        spec = info.fields.get(field)
        if spec is None:
            raise DataError(
                f"{self.location}: split {split!r} has no field {field!r}; fields: {', '.join(info.fields)}"
            )
        out = np.empty((info.samples, *spec.shape), dtype=spec.dtype)
        for i in range(len(info.blocks)):
            start, stop = info.block_range(i)
            out[start:stop] = self.read_block(split, field, i)
        return out

    def take(self, split: str, field: str, indices: np.ndarray) -> np.ndarray:
        """Samples ``indices`` (any order, repeats allowed) of ``field``, decoding only the blocks they touch."""
        idx = np.asarray(indices, dtype=np.int64)
        full = self._complete.get((split, field))
        if full is not None and (not idx.size or (idx.min() >= 0 and idx.max() < len(full))):
            return full[idx]  # every block decoded: one gather (bad indices take the checked path below)
        info = self.split(split)
        if idx.size and (idx.min() < 0 or idx.max() >= info.samples):
            raise IndexError(f"index out of range for split {split!r} of {info.samples} samples")
        spec = info.fields[field] if field in info.fields else None
        if spec is None:
            raise DataError(f"{self.location}: split {split!r} has no field {field!r}")
        blocks = idx // info.block_samples
        if info.samples * spec.sample_bytes <= self.cache_bytes // 2:
            key = (split, field)
            with self._lock:
                if key not in self._whole:
                    self._whole[key] = (
                        np.empty((info.samples, *spec.shape), dtype=spec.dtype),
                        np.zeros(len(info.blocks), dtype=bool),
                    )
                whole, done = self._whole[key]
            todo = np.unique(blocks[~done[blocks]])
            if len(todo):
                left = np.nonzero(~done)[0]
                if len(todo) * 4 >= len(left):  # a shuffled pass, which touches every block within a few batches
                    todo = left
                self._fill(split, field, whole, done, todo)
                if done.all():
                    whole.flags.writeable = False
                    self._complete[key] = whole
            return whole[idx]
        out = np.empty((len(idx), *spec.shape), dtype=spec.dtype)
        for b in np.unique(blocks):
            sel = np.nonzero(blocks == b)[0]
            out[sel] = self.read_block(split, field, int(b))[idx[sel] - int(b) * info.block_samples]
        return out

    def _fill(self, split: str, field: str, whole: np.ndarray, done: np.ndarray, todo: np.ndarray) -> None:
        """Decode blocks ``todo`` of ``field`` into ``whole`` on up to ``threads`` threads (the codecs'
        kernels release the GIL); the reads stay on this thread."""
        info = self.split(split)
        spec = info.fields[field]
        jobs = []
        for b in todo.tolist():
            where = f"block {b} of split {split!r}, field {field!r}"
            jobs.append((b, where, self._read(where, info.blocks[b][field])))

        def run(job: tuple[int, str, bytes]) -> None:
            b, where, blob = job
            start, stop = info.block_range(b)
            whole[start:stop] = self._decode_blob(where, blob, spec, (stop - start, *spec.shape))
            done[b] = True

        if self.threads > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(min(self.threads, len(jobs))) as pool:
                list(pool.map(run, jobs))
        else:
            for job in jobs:
                run(job)

    def read_array(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise DataError(f"{self.location}: no array {name!r}; arrays: {', '.join(self.arrays) or 'none'}")
        spec, entry = self.arrays[name]
        return self._decode(f"array {name!r}", entry, spec, spec.shape).copy()

    def field_bytes(self, split: str, field: str) -> int:
        """The field's stored bytes: its blocks and its codec's learned model, if any, a model shared by several
        fields counted once, under the field that stored it (see :meth:`model_owner`)."""
        info = self.split(split)
        model = info.fields[field].model
        owned = model is not None and self.model_owner(split, field) == (split, field)
        return sum(b[field][1] for b in info.blocks) + (model[1] if owned else 0)


def _read_index(src: ByteSource) -> tuple[int, int, dict[str, Any]]:
    where = src.location
    if src.size < HEADER.size + FOOTER.size:
        raise FormatError(f"{where}: {src.size} bytes is too short to be a data store (truncated?)")
    magic, version, flags = HEADER.unpack(src.read(0, HEADER.size))
    if magic != MAGIC:
        raise FormatError(f"{where}: not a Lepton data store (bad magic); pack one with `lepton data pack`.")
    if version != VERSION or flags != 0:
        raise FormatError(
            f"{where}: store format version {version} (flags {flags}) is not supported; this "
            f"Lepton reads version {VERSION}. Upgrade Lepton or re-pack the data."
        )
    offset, length, digest, end = FOOTER.unpack(src.read(src.size - FOOTER.size, FOOTER.size))
    if end != END_MAGIC:
        raise FormatError(f"{where}: the footer is missing: the store is truncated or its write was interrupted.")
    if length > MAX_INDEX_BYTES or offset < HEADER.size or offset + length != src.size - FOOTER.size:
        raise FormatError(
            f"{where}: the footer's index extent ({length} bytes at {offset}) does not fit the "
            f"{src.size}-byte file; the store is corrupt."
        )
    raw = src.read(offset, length)
    if hashlib.sha256(raw).digest() != digest:
        raise FormatError(f"{where}: the index fails its SHA-256 check; the store is corrupt.")
    index = strict_json.loads(raw, f"{where}: the index")
    if not isinstance(index, dict) or index.get("format") != "lepton-data-store" or index.get("version") != VERSION:
        raise FormatError(f"{where}: the index is not a version-{VERSION} lepton-data-store index")
    if not isinstance(index.get("attrs"), dict):
        raise FormatError(f"{where}: the index's 'attrs' is missing or not an object; the store is corrupt.")
    return offset, length, index


def _int(value: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FormatError(f"{what} = {value!r}: expected an integer in [{lo}, {hi}]")
    return value


def _field_spec(raw: Any, what: str, size: int) -> FieldSpec:
    """A field's spec from the index; its codec is built without a learned model (``Store`` reads the
    ``model`` extent, checks it and rebuilds the codec with it)."""
    if not isinstance(raw, dict) or not {"dtype", "shape", "codec"} <= set(raw) <= {"dtype", "shape", "codec", "model"}:
        raise FormatError(f"{what}: expected keys codec, dtype, shape (and model)")
    if raw["dtype"] not in [d.name for d in DTYPES]:
        raise FormatError(f"{what}: dtype {raw['dtype']!r} is not one the store accepts")
    shape = raw["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise FormatError(f"{what}: shape {shape!r} must be a list of at most {MAX_DIMS} integers")
    shape = tuple(_int(s, 0, MAX_ARRAY_BYTES, f"{what}: shape") for s in shape)
    codec = raw["codec"]
    if not isinstance(codec, dict) or not isinstance(codec.get("params"), dict) or codec.get("name") not in CODECS:
        name = codec.get("name") if isinstance(codec, dict) else codec
        raise FormatError(f"{what}: unknown codec {name!r}; this Lepton knows {', '.join(CODECS)}")
    try:
        c = get_codec(codec["name"], **codec["params"])
    except (ConfigError, ImportError) as e:
        raise FormatError(f"{what}: codec {codec['name']!r} with params {codec['params']} is unusable: {e}") from None
    model = _extent(raw["model"], size, f"{what}: model") if "model" in raw else None
    return FieldSpec(np.dtype(raw["dtype"]), shape, c, model)


def _extent(raw: Any, size: int, what: str) -> tuple[int, int, int]:
    if not isinstance(raw, list) or len(raw) != 3:
        raise FormatError(f"{what}: expected [offset, length, crc32]")
    return (
        _int(raw[0], HEADER.size, size, f"{what}: offset"),
        _int(raw[1], 0, size, f"{what}: length"),
        _int(raw[2], 0, 2**32 - 1, f"{what}: crc32"),
    )


def _parse_index(index: dict[str, Any], where: str, payload_end: int) -> tuple[dict[str, SplitInfo], dict[str, Any]]:
    size = payload_end
    for key in ("attrs", "splits", "arrays"):
        if not isinstance(index.get(key), dict):
            raise FormatError(f"{where}: index key {key!r} must be an object")
    extents: list[tuple[int, int, str]] = []
    models: dict[tuple[int, int], tuple[int, str]] = {}  # a model's (offset, length) -> its crc32, its first field
    splits: dict[str, SplitInfo] = {}
    for name, raw in index["splits"].items():
        _check_name("split", name, FormatError)
        if not isinstance(raw, dict) or set(raw) != {"samples", "block_samples", "fields", "blocks"}:
            raise FormatError(f"{where}: split {name!r}: expected keys blocks, block_samples, fields, samples")
        n = _int(raw["samples"], 0, 2**40, f"{where}: split {name!r}: samples")
        bs = _int(raw["block_samples"], 1, MAX_BLOCK_SAMPLES, f"{where}: split {name!r}: block_samples")
        if not isinstance(raw["fields"], dict) or not raw["fields"]:
            raise FormatError(f"{where}: split {name!r}: needs at least one field")
        fields = {}
        for fname, fraw in raw["fields"].items():
            _check_name("field", fname, FormatError)
            spec = fields[fname] = _field_spec(fraw, f"{where}: split {name!r}, field {fname!r}", size)
            if spec.model is not None:
                _model_extent(models, extents, spec.model, f"split {name!r}, field {fname!r}", where)
            if spec.sample_bytes * bs > MAX_DECODED_BLOCK_BYTES:
                raise FormatError(
                    f"{where}: split {name!r}, field {fname!r}: a block would decode to more than "
                    f"{MAX_DECODED_BLOCK_BYTES >> 20} MiB"
                )
        n_blocks = -(-n // bs)
        if not isinstance(raw["blocks"], list) or len(raw["blocks"]) != n_blocks:
            raise FormatError(
                f"{where}: split {name!r}: {n} samples in blocks of {bs} need {n_blocks} block "
                f"entries, the index has {len(raw['blocks']) if isinstance(raw['blocks'], list) else 'none'}"
            )
        blocks = []
        for i, braw in enumerate(raw["blocks"]):
            what = f"{where}: block {i} of split {name!r}"
            if not isinstance(braw, dict) or set(braw) != set(fields):
                raise FormatError(f"{what}: expected one entry per field ({', '.join(fields)})")
            block = {f: _extent(braw[f], size, f"{what}, field {f!r}") for f in fields}
            extents += [(o, ln, f"block {i} of split {name!r}, field {f!r}") for f, (o, ln, _) in block.items()]
            blocks.append(block)
        splits[name] = SplitInfo(name, n, bs, fields, blocks)
    arrays: dict[str, Any] = {}
    for name, raw in index["arrays"].items():
        _check_name("array", name, FormatError)
        what = f"{where}: array {name!r}"
        if not isinstance(raw, dict) or "block" not in raw or "model" in raw:
            raise FormatError(f"{what}: expected keys block, codec, dtype, shape")
        spec = _field_spec({k: v for k, v in raw.items() if k != "block"}, what, size)
        if spec.sample_bytes > MAX_ARRAY_BYTES:
            raise FormatError(f"{what}: would decode to more than {MAX_ARRAY_BYTES >> 20} MiB")
        entry = _extent(raw["block"], size, what)
        extents.append((entry[0], entry[1], f"array {name!r}"))
        arrays[name] = (spec, entry)
    _check_tiling(extents, where, payload_end)
    return splits, arrays


def _model_extent(
    models: dict[tuple[int, int], tuple[int, str]],
    extents: list[tuple[int, int, str]],
    model: tuple[int, int, int],
    what: str,
    where: str,
) -> None:
    """Add a field's model extent to those that must tile the payload. Several fields may name the same model
    (a later split reusing the codec fitted on the first): only the exact same offset, length and CRC-32 is
    one shared model; any other overlap is left to :func:`_check_tiling` to refuse."""
    offset, length, crc = model
    if (offset, length) not in models:
        models[offset, length] = (crc, what)
        extents.append((offset, length, f"the model of {what}"))
    elif models[offset, length][0] != crc:
        raise FormatError(
            f"{where}: the model of {what} and that of {models[offset, length][1]} share {length} bytes at {offset} "
            "but not their CRC-32; the index is forged or corrupt."
        )


def _check_tiling(extents: list[tuple[int, int, str]], where: str, end: int) -> None:
    """Blocks must cover the payload region back to back: no holes, no overlaps, nothing past the index."""
    pos = HEADER.size
    for offset, length, what in sorted(extents):
        if offset != pos:
            raise FormatError(
                f"{where}: {what}: offset {offset} is wrong (expected {pos}: blocks are stored back "
                "to back); the index is forged or corrupt."
            )
        pos = offset + length
        if pos > end:
            raise FormatError(
                f"{where}: {what}: {length} bytes at {offset} run past the payload; the index is forged or corrupt."
            )
    if pos != end:
        raise FormatError(
            f"{where}: the blocks end at byte {pos} but the index starts at {end}; the index is forged or corrupt."
        )


def open_store(location: str | os.PathLike, **kwargs: Any) -> Store:
    """Open a packed store (path or fsspec URL) for reading; see :class:`Store`."""
    return Store(location, **kwargs)
