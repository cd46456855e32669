"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``, KServe V2) for ``lepton serve
--grpc-port``: grpcio's asyncio server on the HTTP server's event loop, feeding the same :class:`Batcher`, so
gRPC and HTTP requests are batched together into one model call.

Same limits as HTTP: messages larger than ``max_body_bytes`` are refused by grpcio (RESOURCE_EXHAUSTED), at
most ``max_connections`` RPCs run at once, an inference holds its message's size from the HTTP server's byte
budget (``max_inflight_bytes``; UNAVAILABLE when it cannot get it in time), every tensor is checked against the model's datatype, shape and the
element limit before it is read (:func:`lepton.edge.oip_binary.decode_raw`), and with a token every RPC except
ServerLive and ServerReady needs ``authorization: Bearer TOKEN`` metadata. Errors map HTTP statuses to gRPC
codes (400 INVALID_ARGUMENT, 404 NOT_FOUND, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED ...).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np

from lepton import __version__
from lepton.edge.oip import OIP_TO_NUMPY, ProtocolError, check_array, check_tensor, datatype_of
from lepton.edge.oip_binary import decode_raw
from lepton.edge.proto import grpc_predict_v2_pb2 as pb

CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
OPEN_METHODS = ("ServerLive", "ServerReady")  # health probes never need the token
# InferTensorContents' field for each datatype (FP16 and BF16 travel only as raw contents).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def _rpc(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Token check, error mapping, metrics and access log around one RPC."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapped(self: InferenceService, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started, status = self.metrics.started("grpc"), "OK"
        try:
            if name not in OPEN_METHODS:
                self.authorize(context)
            return await method(self, request, context)
        except ProtocolError as e:
            code = CODES.get(e.status, grpc.StatusCode.INTERNAL)
            status = code.name
            await context.abort(code, e.message)
        except Exception as e:
            if isinstance(e, grpc.aio.AbortError):
                raise
            status = grpc.StatusCode.INTERNAL.name
            await context.abort(grpc.StatusCode.INTERNAL, f"internal server error: {type(e).__name__}: {e}")
        finally:
            peer = context.peer() if hasattr(context, "peer") else None
            self.metrics.finished("grpc", status, started, method=name, client=peer)

    return wrapped


class InferenceService:
    """The six RPCs over the served models (``table``, a :class:`lepton.edge.model_table.ModelTable`); ``infer``
    is the server's shared, batched inference path."""

    def __init__(
        self,
        table: Any,
        infer: Callable[..., Awaitable[dict[str, np.ndarray]]],
        config: Any,
        metrics: Any,
        budget: Any,
    ) -> None:
        self.table, self.infer, self.config, self.metrics, self.budget = table, infer, config, metrics, budget
        self.ready = lambda: True
        self.token = None if config.token is None else config.token.encode()

    def authorize(self, context: grpc.aio.ServicerContext) -> None:
        if self.token is None:
            return
        value = dict(context.invocation_metadata() or ()).get("authorization", "")
        scheme, _, credentials = (value.decode() if isinstance(value, bytes) else value).partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self.token):
            raise ProtocolError(401, "this server needs 'authorization: Bearer TOKEN' metadata with its token.")

    @_rpc
    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (the protocol's names)
        return pb.ServerLiveResponse(live=True)

    @_rpc
    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.ready())

    @_rpc
    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.table.lookup(request.name, request.version)
        return pb.ModelReadyResponse(ready=True)

    @_rpc
    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerMetadataResponse(
            name="lepton", version=__version__, extensions=["statistics", "model_repository"]
        )

    @_rpc
    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        meta = self.table.lookup(request.name, request.version).model.metadata()
        meta.versions = self.table.versions(request.name)

        def tensors(ts: list[Any]) -> list[Any]:
            return [
                pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=t.datatype, shape=t.shape) for t in ts
            ]

        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=tensors(meta.inputs),
            outputs=tensors(meta.outputs),
        )

    @_rpc
    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        with self.table.lookup(request.model_name, request.model_version).hold() as entry:
            async with self.budget.hold(request.ByteSize()):
                return await self.answer(entry, request, context)

    async def answer(self, entry: Any, request: Any, context: Any) -> Any:
        model = entry.model
        feeds = self.feeds(model, request)
        names = [t.name for t in model.outputs]
        wanted = [o.name for o in request.outputs] or names
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise ProtocolError(400, f"unknown output(s) {unknown}; the model's outputs are {names}.")
        remaining = context.time_remaining()
        outputs = await self.infer(entry, feeds, deadline_s=remaining)
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for n in wanted:
            array = outputs[n]
            response.outputs.add(name=n, datatype=datatype_of(n, array), shape=array.shape)
            response.raw_output_contents.append(np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes())
        return response

    def feeds(self, model: Any, request: Any) -> dict[str, np.ndarray]:
        """The request's input arrays, each checked against ``model`` before it is read."""
        specs = {t.name: t for t in model.inputs}
        given = [i.name for i in request.inputs]
        if len(set(given)) != len(given) or set(given) != set(specs):
            raise ProtocolError(
                400, f"the request's inputs {given} do not match the model's inputs {list(specs)}; send each once."
            )
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise ProtocolError(
                400, f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one per input, in order."
            )
        limit = self.config.max_body_bytes  # every element takes at least one byte of the message
        feeds = {}
        for k, inp in enumerate(request.inputs):
            where, spec, shape = f"input {inp.name!r}", specs[inp.name], list(inp.shape)
            if raw:
                if inp.HasField("contents"):
                    raise ProtocolError(400, f"{where}: has contents and raw_input_contents; send one of them.")
                feeds[inp.name] = decode_raw(where, inp.datatype, shape, spec, raw[k], limit)
                continue
            count = check_tensor(where, inp.datatype, shape, spec, limit)
            field = CONTENTS_FIELD.get(spec.datatype)
            values = getattr(inp.contents, field) if field else ()
            if field is None or len(values) != count:
                raise ProtocolError(
                    400,
                    f"{where}: {len(values)} values in contents.{field or 'raw_input_contents'}, "
                    f"shape {shape} needs {count}; send {spec.datatype} values or raw_input_contents.",
                )
            array = np.asarray(values)
            dtype = np.dtype(OIP_TO_NUMPY[spec.datatype])
            if dtype.kind in "iu" and array.size:
                info = np.iinfo(dtype)
                if array.min() < info.min or array.max() > info.max:
                    raise ProtocolError(400, f"{where}: values outside {spec.datatype}'s range; send values in it.")
            feeds[inp.name] = check_array(where, spec.datatype, array.astype(dtype).reshape(shape))
        if len({len(a) for a in feeds.values()}) > 1:
            raise ProtocolError(400, "all inputs must have the same batch size (first axis).")
        return feeds


SERVICE = "inference.GRPCInferenceService"
RPCS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
"""The service's methods; each takes ``pb.<name>Request`` and answers ``pb.<name>Response``."""


def register(service: InferenceService, server: grpc.aio.Server) -> None:
    """Route :data:`SERVICE`'s RPCs to ``service``'s methods of the same names (what grpcio-tools' generated
    ``add_..._to_server`` does, without its servicer base class of unimplemented methods)."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(service, name),
            request_deserializer=getattr(pb, f"{name}Request").FromString,
            response_serializer=getattr(pb, f"{name}Response").SerializeToString,
        )
        for name in RPCS
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


async def start_grpc(service: InferenceService, host: str, port: int, config: Any) -> tuple[grpc.aio.Server, int]:
    """Start grpcio's asyncio server for ``service`` on ``host:port`` (0: any free port); returns it and its port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_body_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=config.max_connections,
    )
    register(service, server)
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}; pick another --grpc-port.")
    await server.start()
    return server, bound
