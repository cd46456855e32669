"""The Open Inference Protocol (KServe V2) REST messages, and the checks that turn a request's JSON tensors
into arrays the model accepts — or into a 4xx :class:`ProtocolError` that names what is wrong.

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ . Tensors travel as
``{"name", "shape", "datatype", "data"}`` with ``data`` in row-major order (flat or nested). The binary
tensor extension (Triton's ``binary_data_size``) is not supported: such inputs are refused with a 400 that
says to send JSON data; outputs always come back as JSON data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# ONNX Runtime's type strings -> Open Inference Protocol datatypes -> numpy dtypes.
ORT_TO_OIP = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
              "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
              "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL"}
OIP_TO_NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT8": np.int8, "INT16": np.int16,
                "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
                "UINT64": np.uint64, "BOOL": np.bool_}
DATATYPES = (*OIP_TO_NUMPY, "BF16", "BYTES")


class ProtocolError(Exception):
    """A request the protocol or the model refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    data: list[Any]


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
    data: list[Any]


class InferResponse(_Message):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


def decode_input(inp: RequestInput, spec: TensorMetadata) -> np.ndarray:
    """The array ``inp`` carries, checked against ``spec`` (datatype, rank, fixed axes, element count)."""
    where = f"input {inp.name!r}"
    if inp.parameters and "binary_data_size" in inp.parameters:
        raise ProtocolError(400, f"{where}: the binary tensor extension is not supported; send the tensor as JSON "
                                 "'data' (tritonclient: set_data_from_numpy(x, binary_data=False)).")
    if inp.datatype != spec.datatype:
        known = "" if inp.datatype in DATATYPES else f" ({inp.datatype!r} is not an Open Inference Protocol datatype)"
        raise ProtocolError(400, f"{where}: datatype {inp.datatype!r} does not match the model's {spec.datatype!r}"
                                 f"{known}; send {spec.datatype} data.")
    if len(inp.shape) != len(spec.shape) or any(d < 0 for d in inp.shape) or any(
            want != -1 and got != want for got, want in zip(inp.shape, spec.shape)):
        raise ProtocolError(400, f"{where}: shape {inp.shape} does not fit the model's {spec.shape} (-1 = any size); "
                                 f"send e.g. {[1 if d == -1 else d for d in spec.shape]}.")
    if inp.shape[0] == 0:
        raise ProtocolError(400, f"{where}: shape {inp.shape} holds no sample; the batch axis must be at least 1.")
    try:
        raw = np.asarray(inp.data)
    except ValueError as e:  # ragged nested lists
        raise ProtocolError(400, f"{where}: 'data' is not a regular array ({e}); send a flat row-major list.") from e
    numeric = raw.dtype.kind == "b" if spec.datatype == "BOOL" else raw.dtype.kind in "iuf"
    if not numeric:
        raise ProtocolError(400, f"{where}: 'data' must hold only {spec.datatype} values (numbers"
                                 f"{'' if spec.datatype != 'BOOL' else ' true/false'}), got {raw.dtype.name} values.")
    if raw.size != math.prod(inp.shape):
        raise ProtocolError(400, f"{where}: 'data' has {raw.size} values but shape {inp.shape} needs "
                                 f"{math.prod(inp.shape)}.")
    dtype = OIP_TO_NUMPY[spec.datatype]
    if raw.dtype.kind == "f" and np.dtype(dtype).kind in "iu" and not np.array_equal(raw, np.round(raw)):
        raise ProtocolError(400, f"{where}: {spec.datatype} data must be whole numbers.")
    return raw.astype(dtype, copy=False).reshape(inp.shape)


def encode_output(name: str, array: np.ndarray) -> ResponseOutput:
    datatype = next((k for k, v in OIP_TO_NUMPY.items() if np.dtype(v) == array.dtype), None)
    if datatype is None:
        raise ProtocolError(500, f"output {name!r} has dtype {array.dtype}, which the protocol cannot carry.")
    return ResponseOutput(name=name, shape=list(array.shape), datatype=datatype, data=array.ravel().tolist())
