"""The Open Inference Protocol (KServe V2) REST messages, and the checks that turn a request's JSON tensors
into arrays the model accepts — or into a 4xx :class:`ProtocolError` that names what is wrong.

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ . Tensors travel as
``{"name", "shape", "datatype", "data"}`` with ``data`` in row-major order (flat or nested). Triton's binary
tensor extension (raw bytes after the JSON, ``binary_data_size``) is :mod:`lepton.edge.oip_binary`.

Memory: :func:`parse_infer_request` reads a request in one pass without turning flat numeric ``data`` lists
into Python objects: each such list is cut out of the body (a nonce-named placeholder string takes its
place), the small remaining envelope is parsed and validated, and :func:`decode_input` counts the list's
values against the declared shape and ``max_elements`` before numpy parses it straight into the declared
float dtype. Nested lists, integer and BOOL data take the ordinary JSON path (a Python list per tensor).
Every value must be finite and fit the datatype: NaN, Infinity and numbers such as ``1e400`` get a 400.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import warnings
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# ONNX Runtime's type strings -> Open Inference Protocol datatypes -> numpy dtypes.
ORT_TO_OIP = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
}
OIP_TO_NUMPY = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "BOOL": np.bool_,
}
DATATYPES = (*OIP_TO_NUMPY, "BF16", "BYTES")


FLOAT_TYPES = ("FP16", "FP32", "FP64")

# A flat list that may be all JSON numbers: the opening bracket after a "data" key, then number characters
# up to the first closing bracket. Strings cannot hide a match: inside a JSON string every '"' is escaped.
_DATA_LIST = re.compile(rb'"data"[ \t\n\r]*:[ \t\n\r]*\[')
_NUMBER_CHARS = b"0123456789eE.+-, \t\n\r"
# Forms numpy reads but JSON forbids (+1, .5, 1., 01) are found with bytes.translate and counts, not regular
# expressions (several times faster on an image's worth of numbers): digits become "d" (zero "z" where leading
# zeros are looked for), then every "." must sit in its own "d.d" and every "+" follow an exponent's e/E.
_DIGITS = bytes.maketrans(b"0123456789", b"dddddddddd")
_ZERO_DIGITS = bytes.maketrans(b"0123456789", b"zddddddddd")


def _not_json_numbers(text: bytes) -> bool:
    """Whether flat list ``text`` (number characters only) holds a +1, .5, 1. or 01 that JSON forbids."""
    if b"+" in text and text.count(b"+") != text.count(b"e+") + text.count(b"E+"):
        return True
    if b"." in text and text.count(b".") != text.translate(_DIGITS).count(b"d.d"):
        return True
    if b"0" in text:
        t = text.translate(_ZERO_DIGITS, b" \t\n\r-")
        return t.startswith((b"zz", b"zd")) or b",zz" in t or b",zd" in t
    return False


class ProtocolError(Exception):
    """A request the protocol or the model refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was


class TensorMetadata(_Message):
    name: str
    datatype: str
    shape: list[int]  # -1 marks a dynamic axis


class ServerMetadata(_Message):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(_Message):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(_Message):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | str | None = None  # a str only as parse_infer_request's placeholder; None: binary data


class RequestOutput(_Message):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(_Message):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Message):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None  # None: the tensor travels as binary data after the JSON


class InferResponse(_Message):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class ParsedRequest:
    """An :class:`InferRequest` and the flat numeric ``data`` lists cut out of its body, by placeholder."""

    def __init__(self, request: InferRequest, lists: dict[str, bytes]) -> None:
        self.request, self.lists = request, lists


def parse_infer_request(body: bytes) -> ParsedRequest:
    """Parse an inference request body in one pass; flat numeric ``data`` lists stay bytes (module docstring)."""
    nonce = secrets.token_hex(8)
    parts: list[bytes] = []
    lists: dict[str, bytes] = {}
    pos = 0
    for m in _DATA_LIST.finditer(body):
        start = m.end()
        end = body.find(b"]", start)
        if m.start() < pos or end < 0 or body[start:end].translate(None, _NUMBER_CHARS):
            continue  # nested, not numbers, or not JSON: the ordinary parser handles it
        key = f"lepton-data:{nonce}:{len(lists)}"
        lists[key] = body[start:end]
        parts += [body[pos : start - 1], b'"', key.encode(), b'"']
        pos = end + 1
    envelope = b"".join([*parts, body[pos:]]) if lists else body
    return ParsedRequest(InferRequest.model_validate_json(envelope), lists)


def decode_input(
    inp: RequestInput, spec: TensorMetadata, lists: dict[str, bytes] | None = None, *, max_elements: int = 1 << 24
) -> np.ndarray:
    """The array ``inp`` carries, checked against ``spec`` (datatype, rank, fixed axes, element count, finite
    values within the datatype's range); ``lists`` holds the flat lists :func:`parse_infer_request` cut out."""
    where = f"input {inp.name!r}"
    if inp.parameters and "binary_data_size" in inp.parameters:
        raise ProtocolError(
            400,
            f"{where}: 'binary_data_size' needs the binary tensor extension: send the JSON followed by the raw "
            "bytes with an 'Inference-Header-Content-Length' header (tritonclient does this), or JSON 'data'.",
        )
    if inp.data is None:
        raise ProtocolError(400, f"{where}: no 'data'; send the values as 'data' or as binary data.")
    count = check_tensor(where, inp.datatype, inp.shape, spec, max_elements)
    data = inp.data
    if isinstance(data, str):
        if data not in (lists or {}):
            raise ProtocolError(400, f"{where}: 'data' is a string; send a list of {spec.datatype} values.")
        text = lists[data]
        given = text.count(b",") + 1 if text.strip() else 0
        if given != count:
            raise ProtocolError(400, f"{where}: 'data' has {given} values but shape {inp.shape} needs {count}.")
        if spec.datatype in FLOAT_TYPES:
            return _check_finite(where, spec.datatype, _parse_floats(where, text, spec.datatype)).reshape(inp.shape)
        data = _json_list(where, text)
    try:
        raw = np.asarray(data)
    except ValueError as e:  # ragged nested lists
        raise ProtocolError(400, f"{where}: 'data' is not a regular array ({e}); send a flat row-major list.") from e
    numeric = raw.dtype.kind == "b" if spec.datatype == "BOOL" else raw.dtype.kind in "iuf"
    if not numeric:
        raise ProtocolError(
            400,
            f"{where}: 'data' must hold only {spec.datatype} values (numbers"
            f"{'' if spec.datatype != 'BOOL' else ' true/false'}), got {raw.dtype.name} values.",
        )
    if raw.size != math.prod(inp.shape):
        raise ProtocolError(
            400, f"{where}: 'data' has {raw.size} values but shape {inp.shape} needs {math.prod(inp.shape)}."
        )
    dtype = np.dtype(OIP_TO_NUMPY[spec.datatype])
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise ProtocolError(
            400,
            f"{where}: 'data' holds NaN or Infinity (or a number too large for a 64-bit "
            f"float, such as 1e400); send finite {spec.datatype} values.",
        )
    if dtype.kind in "iu":
        if raw.dtype.kind == "f" and not np.array_equal(raw, np.round(raw)):
            raise ProtocolError(400, f"{where}: {spec.datatype} data must be whole numbers.")
        info = np.iinfo(dtype)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise ProtocolError(
                400,
                f"{where}: 'data' holds values outside {spec.datatype}'s range "
                f"[{info.min}, {info.max}]; send values in that range.",
            )
    with np.errstate(over="ignore"):  # a value too large for the dtype becomes inf, refused below
        out = raw.astype(dtype, copy=False).reshape(inp.shape)
    return _check_finite(where, spec.datatype, out) if dtype.kind == "f" else out


def check_tensor(where: str, datatype: str, shape: list[int], spec: TensorMetadata, max_elements: int) -> int:
    """The element count of a tensor declared as ``datatype`` and ``shape``, once both fit ``spec`` and the
    count is at most ``max_elements``; a 400 :class:`ProtocolError` naming ``where`` otherwise."""
    if datatype != spec.datatype:
        known = "" if datatype in DATATYPES else f" ({datatype!r} is not an Open Inference Protocol datatype)"
        raise ProtocolError(
            400,
            f"{where}: datatype {datatype!r} does not match the model's {spec.datatype!r}"
            f"{known}; send {spec.datatype} data.",
        )
    if (
        len(shape) != len(spec.shape)
        or any(d < 0 for d in shape)
        or any(want != -1 and got != want for got, want in zip(shape, spec.shape))
    ):
        raise ProtocolError(
            400,
            f"{where}: shape {list(shape)} does not fit the model's {spec.shape} (-1 = any size); "
            f"send e.g. {[1 if d == -1 else d for d in spec.shape]}.",
        )
    if shape[0] == 0:
        raise ProtocolError(400, f"{where}: shape {list(shape)} holds no sample; the batch axis must be at least 1.")
    if any(d > max_elements for d in shape) or math.prod(shape) > max_elements:  # no huge products first
        raise ProtocolError(
            400,
            f"{where}: shape {list(shape)} holds more values than the server's limit "
            f"of {max_elements}; send fewer samples per request.",
        )
    return math.prod(shape)


def check_array(where: str, datatype: str, array: np.ndarray) -> np.ndarray:
    """``array`` if its values are valid ``datatype`` values (finite floats, booleans 0 or 1); else a 400."""
    if array.dtype.kind == "f":
        return _check_finite(where, datatype, array)
    if datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
        raise ProtocolError(400, f"{where}: BOOL data must be bytes 0 or 1.")
    return array


def _parse_floats(where: str, text: bytes, datatype: str) -> np.ndarray:
    """Flat JSON numbers straight into a float array (FP16 goes through float32)."""
    if _not_json_numbers(text):
        raise ProtocolError(400, f"{where}: 'data' holds a malformed number; send JSON numbers such as -1.5e-3.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns, then stops, at text it cannot read
        try:
            out = np.fromstring(text, dtype=np.float64 if datatype == "FP64" else np.float32, sep=",")
        except (ValueError, DeprecationWarning):
            raise ProtocolError(
                400, f"{where}: 'data' holds a malformed number; send JSON numbers such as -1.5e-3."
            ) from None
    return out.astype(np.float16) if datatype == "FP16" else out


def _json_list(where: str, text: bytes) -> list[Any]:
    try:
        return json.loads(b"[" + text + b"]")
    except ValueError:
        raise ProtocolError(400, f"{where}: 'data' holds a malformed number; send JSON numbers.") from None


def _check_finite(where: str, datatype: str, array: np.ndarray) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ProtocolError(
            400,
            f"{where}: 'data' holds NaN, Infinity or a number too large for {datatype} "
            f"(such as 1e400); send finite {datatype} values.",
        )
    return array


def datatype_of(name: str, array: np.ndarray) -> str:
    """The protocol datatype of an output array (a 500 if it has none)."""
    datatype = next((k for k, v in OIP_TO_NUMPY.items() if np.dtype(v) == array.dtype), None)
    if datatype is None:
        raise ProtocolError(500, f"output {name!r} has dtype {array.dtype}, which the protocol cannot carry.")
    return datatype


def encode_output(name: str, array: np.ndarray) -> ResponseOutput:
    return ResponseOutput(
        name=name, shape=list(array.shape), datatype=datatype_of(name, array), data=array.ravel().tolist()
    )
