"""Triton's binary tensor data extension of the Open Inference Protocol over HTTP, and raw tensor bytes (also
gRPC's ``raw_input_contents``) checked against the model before anything is allocated.

Format (Triton, "Binary Tensor Data Extension"):

- A request whose ``Inference-Header-Content-Length: N`` header is present carries the JSON inference request
  in its first ``N`` bytes; the rest of the body is the binary data of the inputs whose
  ``parameters.binary_data_size`` is set, concatenated in the order of ``inputs``, with no gaps and nothing
  after the last one. Such an input has no ``data``.
- Each binary tensor is its elements in row-major order, little-endian, with no padding: exactly
  ``prod(shape) * itemsize`` bytes (BOOL: one byte per element, 0 or 1).
- An output is returned as binary data when its ``parameters.binary_data`` is true, or when the request's
  ``parameters.binary_data_output`` is true and the output does not say ``binary_data: false``. The response then
  is the JSON (outputs with ``parameters.binary_data_size`` and no ``data``), then their bytes in order, with an
  ``Inference-Header-Content-Length`` header giving the JSON's length.

Every length is checked before use: ``N`` must be a decimal within the body, each ``binary_data_size`` a
non-negative integer equal to ``prod(shape) * itemsize`` of a shape that already fits the model and the
server's element limit, and the sizes must add up to exactly the bytes after the JSON. Arrays are read-only
views of the body (no copy) until the batcher concatenates them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lepton.edge.oip import (
    OIP_TO_NUMPY,
    InferRequest,
    ProtocolError,
    ResponseOutput,
    TensorMetadata,
    check_array,
    check_tensor,
    datatype_of,
)

HEADER = "inference-header-content-length"


def split_body(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part of a request body, given its ``Inference-Header-Content-Length``."""
    if not header_length.isdigit() or len(header_length) > 19:  # isdigit: no sign, no spaces
        raise ProtocolError(
            400,
            f"the Inference-Header-Content-Length header ({header_length[:40]!r}) must be a whole number of bytes "
            "(binary tensor extension); send the length of the JSON part of the body.",
        )
    n = int(header_length)
    if not 0 < n <= len(body):
        raise ProtocolError(
            400,
            f"the Inference-Header-Content-Length header says the JSON takes {n} bytes but the body has "
            f"{len(body)} (binary tensor extension); send the JSON's length, at most the body's length.",
        )
    return body[:n], memoryview(body)[n:]


def binary_size(where: str, parameters: dict[str, Any] | None) -> int | None:
    """An input's ``binary_data_size`` (None when it has none), checked to be a non-negative integer."""
    if not parameters or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ProtocolError(
            400, f"{where}: binary_data_size must be a non-negative whole number of bytes, got {size!r}."
        )
    return size


def decode_raw(
    where: str, datatype: str, shape: list[int], spec: TensorMetadata, raw: memoryview | bytes, max_elements: int
) -> np.ndarray:
    """The tensor that ``raw`` (little-endian, row-major bytes) holds, once its declared datatype and shape fit
    ``spec`` and ``max_elements`` and its length is exactly what they need; a 400 otherwise."""
    count = check_tensor(where, datatype, shape, spec, max_elements)
    dtype = np.dtype(OIP_TO_NUMPY[spec.datatype]).newbyteorder("<")
    need = count * dtype.itemsize
    if len(raw) != need:
        raise ProtocolError(
            400,
            f"{where}: {len(raw)} bytes of binary data, but shape {list(shape)} of {datatype} needs {need} "
            f"({count} x {dtype.itemsize} bytes); send exactly the tensor's bytes.",
        )
    return check_array(where, datatype, np.frombuffer(raw, dtype=dtype, count=count).reshape(shape))


def binary_feeds(
    req: InferRequest, tail: memoryview, specs: dict[str, TensorMetadata], max_elements: int
) -> dict[str, np.ndarray]:
    """The arrays of ``req``'s binary inputs, cut from ``tail`` in order (see the module docstring)."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for inp in req.inputs:
        where = f"input {inp.name!r}"
        size = binary_size(where, inp.parameters)
        if size is None:
            continue
        if inp.data is not None:
            raise ProtocolError(400, f"{where}: has both 'data' and binary_data_size; send one of them.")
        if size > len(tail) - offset:
            raise ProtocolError(
                400,
                f"{where}: binary_data_size {size} runs past the end of the body ({len(tail) - offset} bytes of "
                "binary data left); send the bytes each input declares.",
            )
        if inp.name not in specs:  # the caller names unknown inputs
            offset += size
            continue
        out[inp.name] = decode_raw(
            where, inp.datatype, inp.shape, specs[inp.name], tail[offset : offset + size], max_elements
        )
        offset += size
    if offset != len(tail):
        raise ProtocolError(
            400,
            f"the body has {len(tail) - offset} bytes after the JSON and the inputs' binary data "
            f"(binary_data_size adds up to {offset}); send no trailing bytes.",
        )
    return out


def wants_binary(req: InferRequest, name: str) -> bool:
    """Whether output ``name`` goes back as binary data (the module docstring's rule)."""
    default = bool((req.parameters or {}).get("binary_data_output", False))
    for out in req.outputs or []:
        if out.name == name and out.parameters and "binary_data" in out.parameters:
            return bool(out.parameters["binary_data"])
    return default


def binary_output(name: str, array: np.ndarray) -> tuple[ResponseOutput, bytes]:
    """The JSON description of a binary output and its little-endian bytes."""
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    meta = ResponseOutput(
        name=name,
        shape=list(array.shape),
        datatype=datatype_of(name, array),
        parameters={"binary_data_size": len(raw)},
    )
    return meta, raw
