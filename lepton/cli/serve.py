"""``lepton serve``: an Open Inference Protocol (KServe V2) HTTP server for a model file."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from lepton.cli.app import app
from lepton.cli.output import TrustCode, console


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="a .onnx file (fp32 or int8), a .lep file or a checkpoint")],
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port)")] = 8000,
    host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 to accept other machines")] = "127.0.0.1",
    name: Annotated[Optional[str], typer.Option(help="model name in the URLs [default: the file's stem]")] = None,
    version: Annotated[str, typer.Option(help="model version reported and accepted in /versions/ URLs")] = "1",
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads")] = 1,
    max_batch_size: Annotated[int, typer.Option(help="most rows one batched model call runs")] = 64,
    max_delay_ms: Annotated[float, typer.Option(help="longest wait for more concurrent requests to batch")] = 1.0,
    max_body_mb: Annotated[float, typer.Option(help="larger request bodies are refused with 413")] = 8.0,
    trust_code: TrustCode = False,
) -> None:
    """Serve MODEL over HTTP with the Open Inference Protocol (KServe V2), batching concurrent requests.

    Routes: GET /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready,
    /v2/models/NAME/stats; POST /v2/models/NAME/infer. A .lep file or checkpoint is exported to ONNX first.

    Examples:
      lepton serve model.onnx --port 8000
      lepton serve model.int8.onnx --name lenet5 --threads 2
      curl localhost:8000/v2/models/model
    """
    from pydantic import ValidationError

    from lepton.edge.server import ServeConfig, load_served_model
    from lepton.edge.server import serve as run_server
    from lepton.errors import ConfigError

    try:
        config = ServeConfig(host=host, port=port, name=name, version=version, threads=threads,
                             max_batch_size=max_batch_size, max_delay_ms=max_delay_ms,
                             max_body_bytes=int(max_body_mb * (1 << 20)))
    except ValidationError as e:
        raise ConfigError("; ".join(f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}"
                                    for err in e.errors())) from None
    with tempfile.TemporaryDirectory(prefix="lepton-serve-") as workdir:
        served = load_served_model(model, name=config.name, version=config.version, threads=config.threads,
                                   workdir=workdir, trust_code=trust_code)
        console.print(f"serving {served.name!r} version {served.version} from {model} on "
                      f"http://{config.host}:{config.port}/v2/models/{served.name} (Ctrl-C stops)", highlight=False)
        run_server(served, config)
