"""An Open Inference Protocol (KServe V2) HTTP server for ONNX models, with dynamic batching.

It serves several models and versions at once (:class:`lepton.edge.model_table.ModelTable`: each version has
its own batcher; an unversioned URL goes to the name's default version), and Triton's model repository routes
(:mod:`lepton.edge.repository`) load, replace and unload versions while it runs.

Requests that arrive while the model is busy are queued; the batcher (:mod:`lepton.edge.batcher`) takes
everything queued (up to ``max_batch_size`` rows, waiting at most ``max_delay_ms`` for more), runs ONE ONNX
Runtime call on the concatenation, and hands each request its slice; batches of up to ``inline_rows`` rows run
on the event loop, larger ones on the model's worker thread. ``POST .../infer`` is answered by the lean route of
:mod:`lepton.edge.fastpath`, every other route by FastAPI. Every bad request gets a 4xx with ``{"error": "..."}``.

Wire formats: JSON, Triton's binary tensor extension (:mod:`lepton.edge.oip_binary`) and, with ``grpc_port``,
the protocol's gRPC service (:mod:`lepton.edge.grpc_service`) on the same event loop and batcher. Operations:
Prometheus ``/metrics`` and an optional JSON access log (:mod:`lepton.edge.observe`), ``request_timeout_s``
(504 / DEADLINE_EXCEEDED), and SIGTERM drains: listeners close, requests in flight finish (up to
``drain_s``), the batcher runs what is queued, then the process exits 0.

Hardening (see docs/edge.md, "Serving"): request bodies in flight share a byte budget (``max_inflight_bytes``;
a request that cannot get its share within a few seconds gets 503), flat numeric tensors are parsed
without Python lists (:func:`lepton.edge.oip.parse_infer_request`), NaN/Infinity get 400, every
connection must deliver its headers within ``header_timeout_s`` and its body within ``body_timeout_s`` or
is closed (:func:`guarded_protocol`), connections still sending headers do not count against
``max_connections``, and with a ``token`` every route except ``/v2/health/*`` needs ``Authorization:
Bearer TOKEN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lepton import __version__
from lepton.edge.batcher import Stats
from lepton.edge.fastpath import InferRoute, ServerApp, body_too_large
from lepton.edge.guards import BUDGET_WAIT_S, ByteBudget, Gate, check_exposure, error_response, guarded_protocol
from lepton.edge.model_table import Entry, ModelTable
from lepton.edge.observe import METRICS_ROUTE, Observe, ServerMetrics
from lepton.edge.oip import (
    ORT_TO_OIP,
    InferResponse,
    ModelMetadata,
    ProtocolError,
    ServerMetadata,
    TensorMetadata,
    decode_input,
    encode_output,
    parse_infer_request,
)
from lepton.edge.oip_binary import HEADER as BINARY_HEADER
from lepton.edge.oip_binary import binary_feeds, binary_output, binary_size, split_body, wants_binary
from lepton.edge.repository import Loader, add_repository_routes
from lepton.errors import ConfigError
from lepton.utils.checks import NAME_PATTERN, check_name

if TYPE_CHECKING:
    from lepton.models.registry import ModelSpec


class ServeConfig(BaseModel):
    """Options of ``lepton serve``."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    name: str | None = Field(None, pattern=f"^{NAME_PATTERN}$", description="model name in URLs [default: file stem]")
    version: str = Field("1", pattern=f"^{NAME_PATTERN}$")  # anchored: pydantic patterns search
    threads: int = Field(1, ge=1, le=256, description="ONNX Runtime intra-op threads")
    max_batch_size: int = Field(64, ge=1, le=65536, description="most rows one ONNX Runtime call runs")
    max_delay_ms: float = Field(1.0, ge=0, le=1000, description="longest wait for more requests to batch")
    inline_rows: int = Field(
        64,
        ge=0,
        le=65536,
        description="batches of at most this many rows run on the event loop, not the model's thread (a thread "
        "hand-off cost more than a small model's batch); 0 for a large model, so the loop parses while it runs",
    )
    max_body_bytes: int = Field(8 << 20, ge=1024, description="larger request bodies get 413")
    max_connections: int = Field(
        512,
        ge=1,
        description="requests handled at once before 503 (connections still sending their headers do not count)",
    )
    max_open_connections: int = Field(
        4096, ge=1, description="open connections before the oldest one still sending its headers is closed"
    )
    max_inflight_bytes: int = Field(64 << 20, ge=1024, description="request bodies held at once; more wait, then 503")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="a connection's request headers must arrive within this time, else 408 and close",
    )
    body_timeout_s: float = Field(30.0, gt=0, le=3600, description="a request's body must arrive within this time")
    keep_alive_s: float = Field(5.0, gt=0, le=3600, description="idle keep-alive connections close after this")
    token: str | None = Field(
        None,
        pattern=r"^[\x21-\x7e]{8,4096}$",
        repr=False,
        description="bearer token every route except /v2/health/* requires",
    )
    no_auth: bool = Field(False, description="allow a non-loopback host without a token")
    grpc_port: int | None = Field(None, ge=0, le=65535, description="serve gRPC on this port too (0: any free port)")
    request_timeout_s: float | None = Field(
        None, gt=0, le=3600, description="an inference waiting longer for the model gets 504 / DEADLINE_EXCEEDED"
    )
    access_log: Literal["none", "json"] = Field("none", description="json: one JSON line per request on stderr")
    drain_s: float = Field(10.0, ge=0, le=3600, description="on SIGTERM, how long requests in flight may finish")
    http: Literal["httptools", "h11"] = Field(
        "httptools", description="HTTP/1.1 parser: httptools (C, faster) or h11 (pure Python)"
    )
    http_fast_path: bool = Field(
        True, description="answer /infer through the lean ASGI route (False: through FastAPI's router, the reference)"
    )
    default_versions: dict[str, str] = Field(
        default_factory=dict, description="model name -> the version unversioned URLs get [default: the highest]"
    )
    allow_repository_control: bool = Field(
        False, description="allow model load/unload requests on a server exposed beyond loopback"
    )


@dataclass
class ServedModel:
    """An ONNX Runtime session and its protocol description."""

    session: Any
    name: str
    version: str
    source: str
    inputs: list[TensorMetadata] = field(init=False)
    outputs: list[TensorMetadata] = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = [_tensor_meta(t) for t in self.session.get_inputs()]
        self.outputs = [_tensor_meta(t) for t in self.session.get_outputs()]

    @property
    def batchable(self) -> bool:
        """Requests can be concatenated only if every input and output has a dynamic first axis."""
        return all(t.shape and t.shape[0] == -1 for t in [*self.inputs, *self.outputs])

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            name=self.name,
            versions=[self.version],
            platform="onnxruntime_onnx",
            inputs=self.inputs,
            outputs=self.outputs,
        )

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.outputs]
        return dict(zip(names, self.session.run(names, feeds)))


def _tensor_meta(t: Any) -> TensorMetadata:
    datatype = ORT_TO_OIP.get(t.type)
    if datatype is None:
        raise ConfigError(
            f"model tensor {t.name!r} has type {t.type}, which the Open Inference Protocol server "
            f"cannot carry; supported: {', '.join(ORT_TO_OIP)}."
        )
    return TensorMetadata(
        name=t.name, datatype=datatype, shape=[d if isinstance(d, int) and d >= 0 else -1 for d in t.shape]
    )


def load_served_model(
    path: str | Path,
    *,
    name: str | None = None,
    version: str = "1",
    threads: int = 1,
    workdir: str | Path | None = None,
    trust_code: bool = False,
    arch: ModelSpec | None = None,
) -> ServedModel:
    """Open ``path`` for serving: an ``.onnx`` file with one image input directly; a ``.lep``, a checkpoint or
    (with ``arch``) a plain weight file is exported to ONNX first (into ``workdir``, default a fresh temporary
    folder).

    Args:
        path: the model file.
        name: the model's name in URLs (default: the file's stem).
        version: the version reported and accepted.
        threads: ONNX Runtime intra-op threads.
        workdir: where a non-ONNX model's export goes.
        trust_code: allow importing a ``package.module:factory`` that the file or ``arch`` names.
        arch: the architecture of a plain weight file (:func:`lepton.artifacts.load_model_file`).

    Returns:
        The model ready for :func:`serve`.
    """
    from lepton.edge.export import export_onnx, image_input, onnx_session

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model file {str(path)!r} does not exist; pass a .onnx, .lep or .safetensors file.")
    if path.suffix != ".onnx":
        from lepton.artifacts import load_model_file

        loaded = load_model_file(path, trust_code=trust_code, arch=arch)
        onnx_path = Path(workdir or tempfile.mkdtemp(prefix="lepton-serve-")) / f"{path.stem}.onnx"
        export_onnx(loaded.model, onnx_path, input_shape=loaded.spec.input_shape)
    elif arch is not None:
        raise ConfigError(f"{path}: an ONNX file carries its architecture; drop --arch.")
    else:
        onnx_path = path
    stem = name or path.stem
    check_name(stem, "model name", hint="It appears in URLs; pass --name.")
    session = onnx_session(onnx_path, threads=threads)
    image_input(session, path)
    return ServedModel(session, stem, version, str(path))


def create_app(
    models: ServedModel | list[ServedModel], config: ServeConfig | None = None, *, loader: Loader | None = None
) -> ServerApp:
    """The ASGI app serving ``models`` under the Open Inference Protocol's REST routes (FastAPI behind the guards
    and the lean inference route; see :class:`lepton.edge.fastpath.ServerApp`).

    Args:
        models: one model, or several (different names, or versions of one name).
        config: the server's options.
        loader: opens a model for the repository load route (:meth:`lepton.edge.sources.ModelLoader.load`).

    Returns:
        The ASGI application; ``app.state.table`` holds the served models.
    """
    config = config or ServeConfig()
    rejected = Stats()  # the requests refused before they reached a model (4xx), server-wide
    metrics = ServerMetrics(config.access_log)
    table = ModelTable(config, metrics)
    for m in models if isinstance(models, list) else [models]:
        try:
            table.add(m)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    budget = ByteBudget(config.max_inflight_bytes, BUDGET_WAIT_S)

    async def infer_feeds(
        entry: Entry, feeds: dict[str, np.ndarray], deadline_s: float | None = None
    ) -> dict[str, np.ndarray]:
        entry.stats.requests += 1
        metrics.model_requests.labels(entry.model.name, entry.model.version).inc()
        limits = [t for t in (config.request_timeout_s, deadline_s) if t is not None]
        return await entry.batcher.infer(feeds, min(limits) if limits else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        table.start()
        grpc_server = None
        if config.grpc_port is not None:
            from lepton.edge.grpc_service import InferenceService, start_grpc

            service = InferenceService(table, infer_feeds, config, metrics, budget)
            service.ready = table.ready
            grpc_server, app.state.grpc_port = await start_grpc(service, config.host, config.grpc_port, config)
            app.state.drain_hooks.append(lambda: grpc_server.stop(config.drain_s))
        yield
        if grpc_server is not None:
            await grpc_server.stop(config.drain_s)  # RPCs in flight finish; a second stop() waits for the first
        await table.stop(config.drain_s)

    app = FastAPI(
        title="Lepton inference server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.table, app.state.metrics, app.state.grpc_port, app.state.drain_hooks = table, metrics, None, []
    add_repository_routes(app, table, loader, config)

    def refused(status: int) -> None:
        rejected.errors_4xx += 400 <= status < 500

    @app.exception_handler(ProtocolError)
    async def protocolerror_response(_req: Request, e: ProtocolError) -> JSONResponse:
        refused(e.status)
        return error_response(e.status, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def httperror_response(_req: Request, e: StarletteHTTPException) -> JSONResponse:
        rejected.errors_4xx += 400 <= e.status_code < 500
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def validationerror_response(_req: Request, e: RequestValidationError) -> JSONResponse:
        rejected.errors_4xx += 1
        return error_response(400, f"invalid request: {e.errors()}")

    @app.exception_handler(Exception)
    async def servererror_response(_req: Request, e: Exception) -> JSONResponse:
        return error_response(500, f"internal server error: {type(e).__name__}: {e}")

    @app.get("/v2")
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(name="lepton", version=__version__, extensions=["statistics", "model_repository"])

    @app.get(METRICS_ROUTE)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": table.ready()}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> ModelMetadata:
        meta = table.lookup(name, version).model.metadata()
        meta.versions = table.versions(name)
        return meta

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        entry = table.lookup(name, version)
        return {"name": entry.model.name, "version": entry.model.version, "ready": True}

    @app.get("/v2/models/{name}/stats")
    @app.get("/v2/models/{name}/versions/{version}/stats")
    async def model_stats(name: str, version: str | None = None) -> dict[str, Any]:
        entries = [table.lookup(name, version)] if version else [table.lookup(name, v) for v in table.versions(name)]
        return {"model_stats": [_stats_row(e.model, e.stats, rejected.errors_4xx) for e in entries]}

    @contextlib.asynccontextmanager
    async def admit(name: str, version: str | None, declared: str | None) -> AsyncIterator[Entry]:
        with table.lookup(name, version).hold() as entry:
            if declared is not None and (not declared.isdigit() or int(declared) > config.max_body_bytes):
                raise body_too_large(config.max_body_bytes, declared)
            async with budget.hold(config.max_body_bytes if declared is None else int(declared)):
                yield entry

    async def handle(entry: Entry, headers: Any, body: bytes) -> tuple[bytes, dict[str, str]]:
        return await answer(entry, body, headers.get(BINARY_HEADER))

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        """The reference route; with ``http_fast_path`` (the default) :class:`InferRoute` answers these URLs."""
        async with admit(name, version, request.headers.get("content-length")) as entry:
            content, headers = await handle(entry, request.headers, await _read_body(request, config))
        return Response(content, headers=headers)

    async def answer(entry: Entry, body: bytes, header_length: str | None) -> tuple[bytes, dict[str, str]]:
        model = entry.model
        tail = None
        if header_length is not None:
            body, tail = split_body(body, header_length)
        try:
            parsed = parse_infer_request(body)
        except ValidationError as e:
            if any(err["type"] == "json_invalid" for err in e.errors()):
                part = "the JSON part of a binary request" if tail is not None else "the request body"
                raise ProtocolError(400, f"{part} is not valid JSON: {e.errors()[0]['msg']}") from None
            raise ProtocolError(
                400,
                "the request does not follow the Open Inference Protocol: "
                + "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()[:5]),
            ) from None
        del body  # the flat lists were copied out: the text can go before the arrays are built
        req = parsed.request
        binary = (
            {} if tail is None else binary_feeds(req, tail, {t.name: t for t in model.inputs}, config.max_body_bytes)
        )
        feeds = _feeds(req, model, parsed.lists, config.max_body_bytes // 2, binary)  # a JSON value takes >= 2 bytes
        wanted = [o.name for o in req.outputs] if req.outputs else [t.name for t in model.outputs]
        unknown = sorted(set(wanted) - {t.name for t in model.outputs})
        if unknown:
            raise ProtocolError(
                400, f"unknown output(s) {unknown}; the model's outputs are {[t.name for t in model.outputs]}."
            )
        outputs = await infer_feeds(entry, feeds)
        encoded, raw = [], []
        for n in wanted:
            if wants_binary(req, n):
                meta, data = binary_output(n, outputs[n])
                encoded.append(meta)
                raw.append(data)
            else:
                encoded.append(encode_output(n, outputs[n]))
        response = InferResponse(model_name=model.name, model_version=model.version, id=req.id, outputs=encoded)
        text = response.model_dump_json(exclude_none=True).encode()
        if not raw:
            return text, {"content-type": "application/json"}
        return b"".join([text, *raw]), {
            "inference-header-content-length": str(len(text)),
            "content-type": "application/octet-stream",
        }

    routes: Any = app
    if config.http_fast_path:
        routes = InferRoute(app, handle, admit, config.max_body_bytes, refused)
    # Observe (outermost: it counts what the gate refuses too), then Gate, then the routes: the inference route
    # (unless http_fast_path is off) and FastAPI for the rest. Kept out of FastAPI's own middleware stack,
    # which would add its exception and telemetry layers to every request.
    return ServerApp(Observe(Gate(routes, token=config.token, max_requests=config.max_connections), metrics), app)


def _stats_row(model: ServedModel, stats: Stats, rejected: int) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "inference_count": stats.rows,
        "request_count": stats.requests,
        "execution_count": stats.batches,
        "mean_batch_rows": stats.rows / stats.batches if stats.batches else 0.0,
        "compute_seconds": stats.compute_s,
        "rejected_requests": rejected,  # refused before reaching a model: counted server-wide
    }


async def _read_body(request: Request, config: ServeConfig) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > config.max_body_bytes:
            raise body_too_large(config.max_body_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _feeds(
    req: Any, model: ServedModel, lists: dict[str, bytes], max_elements: int, binary: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    given = [i.name for i in req.inputs]
    expected = [t.name for t in model.inputs]
    if len(set(given)) != len(given) or set(given) != set(expected):
        raise ProtocolError(
            400, f"the request's inputs {given} do not match the model's inputs {expected}; send each exactly once."
        )
    specs = {t.name: t for t in model.inputs}
    feeds = {
        i.name: binary[i.name]
        if binary_size(i.name, i.parameters) is not None and i.name in binary
        else decode_input(i, specs[i.name], lists, max_elements=max_elements)
        for i in req.inputs
    }
    if len({len(a) for a in feeds.values()}) > 1:
        raise ProtocolError(400, "all inputs must have the same batch size (first axis).")
    return feeds


def uvicorn_server(app: ServerApp, config: ServeConfig) -> Any:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server that treats SIGTERM as "drain and exit 0" (uvicorn re-raises it, which kills the
        process with status -15) and starts the gRPC drain as the HTTP listeners close."""

        terminated = False

        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig == signal.SIGTERM:
                self.terminated = self.should_exit = True
            else:
                super().handle_exit(sig, frame)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            drains = [asyncio.ensure_future(hook()) for hook in app.state.drain_hooks]
            await super().shutdown(sockets)
            await asyncio.gather(*drains)

    return DrainingServer(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            http=guarded_protocol(config),
            timeout_keep_alive=config.keep_alive_s,
            timeout_graceful_shutdown=config.drain_s,
        )
    )


def serve(models: ServedModel | list[ServedModel], config: ServeConfig, *, loader: Loader | None = None) -> None:
    """Serve until stopped. SIGTERM drains (requests in flight finish) and returns normally (exit 0); Ctrl-C
    shuts down gracefully too, then uvicorn re-raises it (the CLI's exit status 130).

    Args:
        models: the models to serve (see :func:`create_app`).
        config: the server's options.
        loader: opens models for the repository load route.
    """
    check_exposure(config)
    server = uvicorn_server(create_app(models, config, loader=loader), config)
    # Everything loaded so far (torch, ONNX Runtime, the model) lives as long as the server: out of the
    # collector's reach, the garbage collections that the per-request objects trigger stay short.
    gc.collect()
    gc.freeze()
    server.run()  # uvicorn re-raises a Ctrl-C that stopped it once it has shut down ...
    if server.should_exit and not server.terminated:  # ... but if that was lost, it still ends as an interrupt
        raise KeyboardInterrupt


class ServerURL(str):
    """The base URL of a server in a thread; ``grpc`` is its gRPC ``host:port`` (None without gRPC)."""

    grpc: str | None = None


@contextlib.contextmanager
def serve_in_thread(
    models: ServedModel | list[ServedModel],
    config: ServeConfig | None = None,
    *,
    loader: Loader | None = None,
    startup_timeout_s: float = 30.0,
) -> Iterator[ServerURL]:
    """Run the server on 127.0.0.1 and a free port in a background thread (gRPC too, on a free port, if
    ``config.grpc_port`` is set); yields its base URL and always shuts it down on exit. For tests and benchmarks."""
    update = {
        "host": "127.0.0.1",
        "port": 0,
        **({} if config is None or config.grpc_port is None else {"grpc_port": 0}),
    }
    config = (config or ServeConfig()).model_copy(update=update)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    app = create_app(models, config, loader=loader)
    server = uvicorn_server(app, config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="lepton-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the inference server did not start")
            time.sleep(0.01)
        url = ServerURL(f"http://127.0.0.1:{sock.getsockname()[1]}")
        url.grpc = None if app.state.grpc_port is None else f"127.0.0.1:{app.state.grpc_port}"
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
