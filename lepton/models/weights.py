"""Read a plain state dict that another program saved — ``.safetensors`` or PyTorch's ``.pt`` — without running code.

``.safetensors`` (the format of huggingface/safetensors): an 8-byte little-endian header length N, N bytes of
JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``, then the byte
buffer. The header is parsed by :mod:`lepton.utils.strict_json`; every dtype, shape and span is checked against
the file size before any tensor is made; spans must tile the buffer exactly (no overlap, no hole).

``.pt`` (``torch.save(model.state_dict(), path)``, the zip format of PyTorch >= 1.6): a zip holding
``<archive>/data.pkl``, one ``<archive>/data/<key>`` file per storage and an optional ``<archive>/byteorder``.
``data.pkl`` is a pickle, and unpickling runs whatever callables it names; so it is **never unpickled**. Its
opcodes are read by :func:`pickletools.genops` (a tokenizer that executes nothing) and interpreted here by a
small stack machine that knows only what a plain state dict needs: dicts, tuples, strings, integers, booleans,
``None``, memo get/put, and four names — ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_parameter`` and the ``torch.<Type>Storage`` classes of the dtypes below, which are
never called or imported but matched as strings and interpreted by this module. Any other opcode or name is a
:class:`FormatError` naming it. Tensors are views (offset, size, stride) into storages whose byte size must
equal the declared element count; every view must fit in its storage.
"""

from __future__ import annotations

import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lepton.errors import FormatError
from lepton.models.registry import MAX_MODEL_ELEMENTS
from lepton.utils import strict_json

__all__ = ["read_safetensors", "read_torch_zip", "read_weights"]

FIX = "save a plain state dict (torch.save(model.state_dict(), path)) or use .safetensors"
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own bound
MAX_PICKLE_BYTES = 64 << 20
MAX_TENSORS = 100_000
MAX_MEMO = 1_000_000
MAX_DIMS = 16

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of the state dict in ``path``: ``.safetensors``, or a zip ``.pt``/``.pth``/``.bin``.

    Args:
        path: the weight file.

    Returns:
        ``{name: tensor}`` in file order. Nothing named by the file is imported or called.
    """
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        return read_torch_zip(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if magic[:1] == b"\x80":
        raise FormatError(
            f"{path}: a legacy (pre-1.6, non-zip) PyTorch file; Lepton reads only the zip format: re-save it "
            f"with a current PyTorch, or {FIX}."
        )
    raise FormatError(f"{path}: neither a .safetensors file nor a zip PyTorch .pt file; {FIX}.")


# --- safetensors -------------------------------------------------------------------------------------------------


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of the ``.safetensors`` file ``path``, every header field checked before data is read.

    Args:
        path: the file.

    Returns:
        ``{name: tensor}`` in the order of their data offsets.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{path}: {size} bytes, too short for a safetensors file (8-byte header length).")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise FormatError(
                f"{path}: header length {n:,} does not fit the file of {size:,} bytes (at most "
                f"{MAX_HEADER_BYTES:,}); the file is truncated or not safetensors."
            )
        header = strict_json.loads(f.read(n), f"{path}: the safetensors header")
        entries = _check_header(header, size - 8 - n, path)
        buffer = f.read()
    out: dict[str, torch.Tensor] = {}
    for name, dtype, shape, begin, end in entries:
        out[name] = _tensor(buffer[begin:end], dtype, shape)
    return out


def _check_header(header: Any, buffer_bytes: int, path: Path) -> list[tuple[str, torch.dtype, list[int], int, int]]:
    header = strict_json.expect_dict(header, f"{path}: the safetensors header")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FormatError(f"{path}: '__metadata__' must map strings to strings; the file is forged or corrupted.")
    if len(header) > MAX_TENSORS:
        raise FormatError(f"{path}: {len(header):,} tensors, over the limit of {MAX_TENSORS:,}.")
    entries = []
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name[:80]!r}"
        info = strict_json.expect_dict(info, where)
        if set(info) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{where} has keys {sorted(info)[:6]}, expected dtype, shape and data_offsets.")
        dtype = SAFETENSORS_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dtype is None:
            raise FormatError(
                f"{where}: dtype {info['dtype']!r:.20} is not supported (one of {', '.join(SAFETENSORS_DTYPES)})."
            )
        shape = _int_list(info["shape"], f"{where}: shape", MAX_DIMS)
        offsets = _int_list(info["data_offsets"], f"{where}: data_offsets", 2)
        if len(offsets) != 2:
            raise FormatError(f"{where}: data_offsets must be [begin, end], got {offsets}.")
        numel = _numel(shape, where)
        total += numel
        if total > MAX_MODEL_ELEMENTS:
            raise FormatError(f"{path}: over {MAX_MODEL_ELEMENTS:,} elements in all; the file is forged or too large.")
        begin, end = offsets
        if not begin <= end <= buffer_bytes or end - begin != numel * dtype.itemsize:
            raise FormatError(
                f"{where}: bytes [{begin}, {end}) do not hold {shape} of {info['dtype']} "
                f"({numel * dtype.itemsize} bytes) inside the {buffer_bytes:,}-byte buffer; the file is forged "
                "or truncated."
            )
        entries.append((name, dtype, shape, begin, end))
    entries.sort(key=lambda e: (e[3], e[4]))
    at = 0
    for name, _, _, begin, end in entries:
        if begin != at:
            problem = "overlaps the tensor before it" if begin < at else f"leaves a hole at byte {at}"
            raise FormatError(f"{path}: tensor {name[:80]!r} at bytes [{begin}, {end}) {problem}; the file is forged.")
        at = end
    if at != buffer_bytes:
        raise FormatError(f"{path}: {buffer_bytes - at:,} bytes after the last tensor; the file is forged or damaged.")
    return entries


def _int_list(v: Any, what: str, max_len: int) -> list[int]:
    if not isinstance(v, list) or len(v) > max_len or not all(type(x) is int and x >= 0 for x in v):
        raise FormatError(f"{what} must be a list of at most {max_len} non-negative integers, got {str(v)[:60]}.")
    return v


def _numel(shape: list[int] | tuple[int, ...], where: str) -> int:
    n = 1
    for d in shape:
        n *= d
        if n > MAX_MODEL_ELEMENTS:
            raise FormatError(f"{where}: shape {list(shape)} has over {MAX_MODEL_ELEMENTS:,} elements.")
    return n


def _tensor(data: bytes, dtype: torch.dtype, shape: list[int] | tuple[int, ...], *, swap: bool = False) -> torch.Tensor:
    """A tensor owning a copy of little-endian (or, with ``swap``, big-endian) ``data``."""
    if not data:
        return torch.empty(shape, dtype=dtype)
    raw = np.frombuffer(data, dtype=np.dtype(f"<u{dtype.itemsize}") if dtype.itemsize > 1 else np.uint8)
    if swap:
        raw = raw.byteswap()
    return torch.from_numpy(raw.copy()).view(dtype).reshape(shape)


# --- PyTorch zip (.pt) -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Global:
    name: str  # "module qualname", as the pickle spells it


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: torch.dtype
    numel: int


class _Mark:
    pass


_MARK = _Mark()
_CALLABLE = {"collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter"}
_ALLOWED_GLOBALS = _CALLABLE | {f"torch {s}" for s in STORAGE_DTYPES}
_SIMPLE = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": (), "EMPTY_DICT": None}


def read_torch_zip(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a zip ``.pt`` file written by ``torch.save``, read without unpickling.

    Args:
        path: the file.

    Returns:
        ``{name: tensor}``; views of one storage share its memory, as with ``torch.load``.
    """
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, UnicodeDecodeError, struct.error, EOFError, OSError) as e:
        raise FormatError(f"{path}: not a readable zip file ({e}); the file is truncated or damaged.") from None
    with z:
        return _read_zip(z, path)


def _read_zip(z: zipfile.ZipFile, path: Path) -> dict[str, torch.Tensor]:
    infos = {i.filename: i for i in z.infolist()}
    pickles = [n for n in infos if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise FormatError(f"{path}: expected one <archive>/data.pkl in the zip, found {len(pickles)}; {FIX}.")
    prefix = pickles[0][: -len("data.pkl")]
    swap = False
    if prefix + "byteorder" in infos:
        order = _member(z, infos[prefix + "byteorder"], 16, path)
        if order not in (b"little", b"big"):
            raise FormatError(f"{path}: byteorder record {order[:16]!r} is neither 'little' nor 'big'.")
        swap = order == b"big"
    machine = _Machine(path)
    result = machine.run(_member(z, infos[pickles[0]], MAX_PICKLE_BYTES, path))
    if not isinstance(result, dict):
        raise FormatError(f"{path}: the pickle holds a {type(result).__name__}, not a state dict; {FIX}.")
    storages: dict[str, torch.Tensor] = {}
    for key, storage in machine.storages.items():
        info = infos.get(f"{prefix}data/{key}")
        if info is None:
            raise FormatError(f"{path}: storage {key!r} has no record {prefix}data/{key} in the zip; {FIX}.")
        nbytes = storage.numel * storage.dtype.itemsize
        if info.file_size != nbytes:
            raise FormatError(
                f"{path}: storage {key!r} declares {storage.numel:,} elements ({nbytes:,} bytes) but its record "
                f"holds {info.file_size:,} bytes; the file is forged or damaged."
            )
        storages[key] = _tensor(_member(z, info, nbytes, path), storage.dtype, (storage.numel,), swap=swap)
    out: dict[str, torch.Tensor] = {}
    for name, value in result.items():
        if not isinstance(name, str) or not isinstance(value, _View):
            raise FormatError(
                f"{path}: entry {str(name)[:80]!r} is a {type(value).__name__}, not a tensor: the file is not a "
                f"plain state dict; {FIX}."
            )
        base = storages[value.storage.key]
        out[name] = base.as_strided(value.size, value.stride, value.offset)
    return out


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: Path) -> bytes:
    """A zip record's bytes, its size bounded and its compression refused before anything is inflated."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise FormatError(
            f"{path}: record {info.filename[:80]!r} is compressed; torch.save stores records uncompressed."
        )
    if info.file_size > limit:
        raise FormatError(f"{path}: record {info.filename[:80]!r} is {info.file_size:,} bytes, over {limit:,}.")
    try:
        return z.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, struct.error) as e:
        raise FormatError(f"{path}: record {info.filename[:80]!r} is unreadable ({e}); the file is damaged.") from None


@dataclass(frozen=True)
class _View:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _Machine:
    """Interprets a state dict's pickle opcodes on a stack; executes nothing the pickle names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.storages: dict[str, _Storage] = {}
        self.elements = 0

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.path}: {what}; Lepton reads only plain state dicts without unpickling: {FIX}.")

    def run(self, data: bytes) -> Any:
        try:
            for op, arg, _pos in pickletools.genops(data):
                if op.name == "STOP":
                    if len(self.stack) != 1:
                        raise self.fail("the pickle ends with a malformed stack")
                    return self.stack.pop()
                self.step(op.name, arg)
        except FormatError:
            raise
        except (ValueError, IndexError, KeyError, TypeError) as e:
            raise self.fail(f"malformed pickle ({type(e).__name__}: {str(e)[:100]})") from None
        raise self.fail("the pickle has no STOP opcode")

    def pop_mark(self) -> list[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1 :]
                del self.stack[i:]
                return items
        raise self.fail("a pickle opcode wants a MARK that is not there")

    def step(self, name: str, arg: Any) -> None:  # noqa: C901 - one branch per opcode reads best
        s = self.stack
        if name in ("PROTO", "FRAME"):
            return
        if name in _SIMPLE:
            s.append({} if name == "EMPTY_DICT" else _SIMPLE[name])
        elif name == "MARK":
            s.append(_MARK)
        elif name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "BININT", "BININT1", "BININT2"):
            s.append(arg)
        elif name in ("LONG1",):
            if abs(arg) > 1 << 62:
                raise self.fail(f"integer {arg} out of range")
            s.append(arg)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            if len(self.memo) >= MAX_MEMO:
                raise self.fail(f"over {MAX_MEMO:,} memo entries")
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = s[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            s.append(self.memo[arg])
        elif name == "TUPLE":
            s.append(tuple(self.pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(s) < n:
                raise self.fail(f"{name} on a short stack")
            items = tuple(s[-n:])
            del s[-n:]
            s.append(items)
        elif name == "DICT":
            items = self.pop_mark()
            s.append(self.set_items({}, items))
        elif name == "SETITEM":
            value, key = s.pop(), s.pop()
            self.set_items(s[-1], [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self.set_items(s[-1], items)
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "STACK_GLOBAL":
                qual, module = s.pop(), s.pop()
                if not isinstance(module, str) or not isinstance(qual, str):
                    raise self.fail("STACK_GLOBAL on non-string names")
                arg = f"{module} {qual}"
            if arg not in _ALLOWED_GLOBALS:
                raise self.fail(f"global {arg.replace(' ', '.')[:100]!r} ({name}) is not allowed")
            s.append(_Global(arg))
        elif name == "BINPERSID":
            s.append(self.storage(s.pop()))
        elif name == "REDUCE":
            args, fn = s.pop(), s.pop()
            s.append(self.call(fn, args))
        elif name == "BUILD":
            state = s.pop()
            if not isinstance(s[-1], dict) or not (
                state is None or (isinstance(state, dict) and set(state) <= {"_metadata"})
            ):
                raise self.fail("BUILD sets state other than a state dict's _metadata")
        else:
            raise self.fail(f"pickle opcode {name} is not allowed")

    def set_items(self, target: Any, items: list[Any]) -> dict:
        if not isinstance(target, dict) or len(items) % 2:
            raise self.fail("SETITEM(S) on something that is not a dict")
        for k, v in zip(items[::2], items[1::2]):
            if not isinstance(k, (str, int)):
                raise self.fail(f"a dict key of type {type(k).__name__}")
            target[k] = v
        if len(target) > MAX_TENSORS:
            raise self.fail(f"over {MAX_TENSORS:,} entries in a dict")
        return target

    def storage(self, pid: Any) -> _Storage:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _Global)
            and pid[1].name.split(" ")[1] in STORAGE_DTYPES
            and pid[1].name.startswith("torch ")
            and isinstance(pid[2], str)
            and isinstance(pid[3], str)
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            raise self.fail(
                f"persistent id {str(pid)[:100]} is not ('storage', torch.<Type>Storage, key, location, numel)"
            )
        _, kind, key, _location, numel = pid
        if not key.isascii() or not key.isalnum() or len(key) > 32:
            raise self.fail(f"storage key {key[:40]!r} is not a short alphanumeric name")
        st = _Storage(key, STORAGE_DTYPES[kind.name.split(" ")[1]], numel)
        known = self.storages.get(key)
        if known is None:
            self.elements += numel
            if self.elements > MAX_MODEL_ELEMENTS:
                raise self.fail(
                    f"storages of over {MAX_MODEL_ELEMENTS:,} elements in all (the last declares {numel:,})"
                )
            self.storages[key] = st
        elif known != st:
            raise self.fail(f"storage {key!r} is declared twice with different types or sizes")
        return st

    def call(self, fn: Any, args: Any) -> Any:
        if not isinstance(fn, _Global) or fn.name not in _CALLABLE or not isinstance(args, tuple):
            raise self.fail(f"REDUCE calls {getattr(fn, 'name', type(fn).__name__)!r}, which is not allowed")
        if fn.name == "collections OrderedDict":
            if args:
                raise self.fail("OrderedDict called with arguments")
            return {}
        if fn.name == "torch._utils _rebuild_parameter":
            if len(args) != 3 or not isinstance(args[0], _View) or not isinstance(args[1], bool) or args[2] != {}:
                raise self.fail("_rebuild_parameter with arguments other than (tensor, requires_grad, {})")
            return args[0]
        if len(args) not in (6, 7) or args[5] != {} or (len(args) == 7 and args[6] not in (None, {})):
            raise self.fail("_rebuild_tensor_v2 with arguments other than (storage, offset, size, stride, grad, {})")
        storage, offset, size, stride = args[:4]
        if (
            not isinstance(storage, _Storage)
            or type(offset) is not int
            or not all(isinstance(t, tuple) and len(t) <= MAX_DIMS for t in (size, stride))
            or len(size) != len(stride)
            or not all(type(x) is int and x >= 0 for x in (offset, *size, *stride))
        ):
            raise self.fail("_rebuild_tensor_v2 with a malformed storage, offset, size or stride")
        numel = _numel(size, f"{self.path}: a tensor")
        last = offset + sum((n - 1) * st for n, st in zip(size, stride))
        if numel and last >= storage.numel:
            raise self.fail(
                f"a tensor of size {list(size)}, stride {list(stride)} at offset {offset} reaches element {last} of "
                f"storage {storage.key!r}, which has {storage.numel}"
            )
        return _View(storage, offset, size, stride)
