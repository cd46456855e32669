"""``lepton serve``: an Open Inference Protocol (KServe V2) server for a model file, over HTTP (JSON or binary
tensors) and optionally gRPC."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from lepton.cli.app import app
from lepton.cli.checks import arch_spec, input_file
from lepton.cli.options import Arch, InputShape, NormalizeMean, NormalizeStd, NumClasses, TrustCode
from lepton.cli.output import console


def _no_empty(values: list[str]) -> list[str]:
    if "" in values:  # Path("") would silently mean the current folder
        raise typer.BadParameter("an empty path; give a model file or ROOT/NAME[:VERSION].")
    return values


@app.command()
def serve(
    models: Annotated[
        list[str],
        typer.Argument(
            metavar="MODEL",
            callback=_no_empty,
            help="each a .onnx file (fp32 or int8, one image input), a .lep file, a checkpoint, a plain weight file "
            "with --arch, or a registry reference ROOT/NAME[:VERSION] (folder or s3://), pulled and verified",
        ),
    ],
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port)")] = 8000,
    host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 to accept other machines")] = "127.0.0.1",
    name: Annotated[
        str | None, typer.Option(help="model name in the URLs (one local file only) [default: the file's stem]")
    ] = None,
    version: Annotated[
        str, typer.Option(help="model version reported and accepted in /versions/ URLs (one local file only)")
    ] = "1",
    default: Annotated[
        list[str] | None,
        typer.Option(
            "--default",
            metavar="NAME:VERSION",
            help="the version unversioned URLs of NAME get [default: the highest loaded] (repeatable)",
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(help="registry that load requests for new model names pull from [default: $LEPTON_REGISTRY]"),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="where pulled models are kept and verified [default: a temporary folder]")
    ] = None,
    allow_repository_control: Annotated[
        bool,
        typer.Option(
            "--allow-repository-control",
            help="allow POST /v2/repository/models/NAME/load and /unload when --host is not loopback",
        ),
    ] = False,
    threads: Annotated[
        int, typer.Option("--threads", "--intra-op-threads", help="ONNX Runtime intra-op threads (1 suits batch-1)")
    ] = 1,
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", "--max-batch", help="most rows one batched model call runs")
    ] = 64,
    max_delay_ms: Annotated[
        float,
        typer.Option(
            "--max-delay-ms", "--max-queue-delay-ms", help="longest wait for more concurrent requests to batch"
        ),
    ] = 1.0,
    inline_rows: Annotated[
        int,
        typer.Option(
            help="batches of at most this many rows run on the event loop (no thread hand-off); larger ones on "
            "the model's thread; 0 suits a large model"
        ),
    ] = 64,
    http: Annotated[
        Literal["httptools", "h11"], typer.Option(help="HTTP/1.1 parser: httptools (C) or h11 (pure Python)")
    ] = "httptools",
    max_body_mb: Annotated[float, typer.Option(help="larger request bodies are refused with 413")] = 8.0,
    max_inflight_mb: Annotated[float, typer.Option(help="request bodies held at once; more wait, then get 503")] = 64.0,
    header_timeout: Annotated[float, typer.Option(help="seconds a connection has to send its request headers")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="seconds a request has to send its body")] = 30.0,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LEPTON_SERVE_TOKEN",
            show_default=False,
            help="require 'Authorization: Bearer TOKEN' on every route except /v2/health/*",
        ),
    ] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="serve a non-loopback --host without a token")] = False,
    grpc_port: Annotated[
        int | None, typer.Option(help="also serve the KServe V2 gRPC protocol on this port [default: off]")
    ] = None,
    request_timeout: Annotated[
        float | None, typer.Option(help="seconds an inference may wait for the model, else 504 / DEADLINE_EXCEEDED")
    ] = None,
    access_log: Annotated[
        Literal["none", "json"], typer.Option(help="json: one JSON line per request on stderr")
    ] = "none",
    drain: Annotated[float, typer.Option(help="on SIGTERM, seconds requests in flight may take to finish")] = 10.0,
    trust_code: TrustCode = False,
    arch: Arch = None,
    input_shape: InputShape = None,
    num_classes: NumClasses = None,
    normalize_mean: NormalizeMean = None,
    normalize_std: NormalizeStd = None,
) -> None:
    """Serve MODELs over HTTP with the Open Inference Protocol (KServe V2), batching concurrent requests.

    Several models and versions are served at once; a registry reference (ROOT/NAME[:VERSION]) is pulled into
    --cache-dir and its SHA-256 verified before it loads. POST /v2/repository/index lists them;
    POST /v2/repository/models/NAME/load ({"parameters": {"version": "3"}} optional) loads a new version
    without a restart, .../unload removes one (off beyond loopback unless --allow-repository-control).

    Routes: GET /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready,
    /v2/models/NAME/stats, /metrics (Prometheus); POST /v2/models/NAME/infer (JSON, or Triton's binary
    tensors with an Inference-Header-Content-Length header). --grpc-port adds the KServe V2 gRPC service
    (inference.GRPCInferenceService), batched together with HTTP. SIGTERM drains: requests in flight finish,
    then exit 0. A .lep file, checkpoint or plain weight file (.pt or .safetensors with --arch) is exported
    to ONNX first.
    With a token, every route except /v2/health/* needs it; a --host other than loopback needs --token
    (or LEPTON_SERVE_TOKEN) or an explicit --no-auth.

    Examples:
      lepton serve model.onnx --port 8000
      lepton serve ./registry/lenet5:1 ./registry/lenet5:2 s3://bucket/models/resnet20 --default lenet5:1
      curl -X POST localhost:8000/v2/repository/models/lenet5/load -d '{"parameters": {"version": "3"}}'
      lepton serve model.int8.onnx --name lenet5 --threads 2
      lepton serve model.int8.onnx --intra-op-threads 1 --max-batch 64 --max-queue-delay-ms 1
      lepton serve model.onnx --grpc-port 8001 --access-log json --request-timeout 2
      curl localhost:8000/metrics
      lepton serve weights.pt --arch resnet20 --input-shape 1,28,28 --num-classes 10
      curl localhost:8000/v2/models/model
      LEPTON_SERVE_TOKEN=$(openssl rand -hex 16) lepton serve model.onnx --host 0.0.0.0
      curl -H "Authorization: Bearer $LEPTON_SERVE_TOKEN" host:8000/v2/models/model
      lepton serve model.onnx --host 0.0.0.0 --no-auth   # behind an authenticating proxy
    """
    from pydantic import ValidationError

    from lepton.edge.server import ServeConfig, check_exposure
    from lepton.edge.server import serve as run_server
    from lepton.edge.sources import ModelLoader, parse_model_arg
    from lepton.errors import ConfigError, LeptonError

    defaults = {}
    for item in default or []:
        n, sep, v = item.partition(":")
        if not sep or not n or not v:
            raise ConfigError(f"--default {item!r}: write NAME:VERSION, e.g. --default lenet5:2.")
        defaults[n] = v

    try:
        config = ServeConfig(
            host=host,
            port=port,
            name=name,
            version=version,
            threads=threads,
            max_batch_size=max_batch_size,
            max_delay_ms=max_delay_ms,
            inline_rows=inline_rows,
            http=http,
            max_body_bytes=int(max_body_mb * (1 << 20)),
            max_inflight_bytes=int(max_inflight_mb * (1 << 20)),
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
            token=token,
            no_auth=no_auth,
            grpc_port=grpc_port,
            request_timeout_s=request_timeout,
            access_log=access_log,
            drain_s=drain,
            default_versions=defaults,
            allow_repository_control=allow_repository_control,
        )
    except ValidationError as e:
        raise ConfigError(
            "; ".join(
                f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}".replace(
                    "--token: String should match pattern '^[\\x21-\\x7e]{8,4096}$'",
                    "--token: must be 8 to 4096 visible ASCII characters (no spaces)",
                )
                for err in e.errors()
            )
        ) from None
    check_exposure(config)
    spec = arch_spec(arch, input_shape, num_classes, normalize_mean, normalize_std)
    sources = [parse_model_arg(m) for m in models]
    if (name is not None or version != "1") and (len(sources) != 1 or sources[0].kind != "file"):
        raise ConfigError("--name and --version name one local model file; a registry reference carries both.")
    with tempfile.TemporaryDirectory(prefix="lepton-serve-") as workdir:
        loader = ModelLoader(
            cache_dir or workdir, registry=registry, threads=config.threads, trust_code=trust_code, arch=spec
        )
        served = []
        for arg, source in zip(models, sources):
            if source.kind == "file":
                input_file(Path(arg), "MODEL")
            try:
                served.append(loader.open(source, name=config.name, version=config.version))
            except LeptonError as e:
                raise type(e)(f"model {arg}: {e}") from None
            except Exception as e:  # ONNX Runtime refusing the file, and the like: name the model, exit non-zero
                raise ConfigError(f"model {arg}: cannot load it: {type(e).__name__}: {e}") from None
        grpc = "" if config.grpc_port is None else f" and gRPC {config.host}:{config.grpc_port}"
        for arg, m in zip(models, served):
            console.print(f"serving {m.name!r} version {m.version} from {arg}", highlight=False)
        console.print(f"on http://{config.host}:{config.port}/v2/models/NAME{grpc} (Ctrl-C stops)", highlight=False)
        run_server(served, config, loader=loader.load)
