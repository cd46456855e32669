"""Load test of `lepton serve` on loopback: N requests (one MNIST test image each) from C concurrent clients.

Starts `lepton serve` as a separate process on 127.0.0.1 and a free port, drives it with C asyncio clients
over keep-alive connections (HTTP) or one channel (gRPC), checks every answer against ONNX Runtime's logits for
the same image, and prints p50/p99 latency, requests/s, errors and how many requests each batched model call
served. The server is always stopped at the end. --protocol picks the wire format: JSON tensors, Triton's
binary tensor extension over HTTP, or KServe V2 gRPC with raw tensor contents.

    python benchmarks/serve_load.py                         # 10,000 requests, 32 clients, LeNet-5, JSON
    python benchmarks/serve_load.py --model model.int8.onnx --requests 20000 --clients 64
    python benchmarks/serve_load.py --protocol binary --requests 2000
    python benchmarks/serve_load.py --protocol grpc --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_model(workdir: Path) -> Path:
    """A seeded LeNet-5 exported to ONNX (its latency does not depend on the weights' values)."""
    import torch

    from lepton.edge.export import export_onnx
    from lepton.models import build_model

    torch.manual_seed(0)
    path = workdir / "lenet5.onnx"
    export_onnx(build_model("lenet5"), path, input_shape=(1, 28, 28))
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def binary_body(image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """A binary-tensor request (JSON header, then the image's little-endian float32 bytes) and its headers."""
    raw = image.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, *image.shape],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}
    return header + raw, headers


def binary_logits(content: bytes, header_length: str) -> np.ndarray:
    n = int(header_length)
    out = json.loads(content[:n])["outputs"][0]
    return np.frombuffer(content[n : n + out["parameters"]["binary_data_size"]], dtype="<f4")


async def drive_grpc(
    target: str, name: str, images: np.ndarray, reference: np.ndarray, requests: int, clients: int
) -> tuple[list[float], list[str], float]:
    """C concurrent callers on one gRPC channel, with Triton's own protobuf messages and raw tensor contents."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    messages = []
    for image in images:
        req = service_pb2.ModelInferRequest(model_name=name, raw_input_contents=[image.astype("<f4").tobytes()])
        req.inputs.add(name="input", datatype="FP32", shape=[1, *image.shape])
        messages.append(req)
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        async def worker() -> None:
            for i in counter:
                k = i % len(messages)
                start = time.perf_counter()
                try:
                    r = await stub.ModelInfer(messages[k], timeout=30)
                except grpc.aio.AioRpcError as e:
                    errors.append(f"request {i}: {e.code().name}: {e.details()[:200]}")
                    continue
                latencies.append(time.perf_counter() - start)
                logits = np.frombuffer(r.raw_output_contents[0], dtype="<f4")
                if not np.allclose(logits, reference[k], rtol=0, atol=1e-4):
                    errors.append(f"request {i}: logits differ from ONNX Runtime's")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


async def drive(
    url: str, name: str, images: np.ndarray, reference: np.ndarray, requests: int, clients: int, protocol: str
) -> tuple[list[float], list[str], float]:
    """C concurrent HTTP clients sending JSON or binary-tensor requests."""
    if protocol == "binary":
        requests_ = [binary_body(image) for image in images]
    else:
        requests_ = [(body, {"content-type": "application/json"}) for body in json_bodies(images)]
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for i in counter:
                k = i % len(requests_)
                start = time.perf_counter()
                try:
                    body, headers = requests_[k]
                    r = await client.post(f"/v2/models/{name}/infer", content=body, headers=headers)
                except httpx.HTTPError as e:
                    errors.append(f"request {i}: {type(e).__name__}: {e}")
                    continue
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors.append(f"request {i}: HTTP {r.status_code}: {r.text[:200]}")
                    continue
                header_length = r.headers.get("inference-header-content-length")
                if header_length is not None:
                    logits = binary_logits(r.content, header_length)
                else:
                    logits = np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32)
                if not np.allclose(logits, reference[k], rtol=0, atol=1e-4):
                    errors.append(f"request {i}: logits differ from ONNX Runtime's")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


def json_bodies(images: np.ndarray) -> list[bytes]:
    return [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1, *images.shape[1:]],
                        "datatype": "FP32",
                        "data": images[i].ravel().tolist(),
                    }
                ]
            }
        ).encode()
        for i in range(len(images))
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a .onnx, .lep or checkpoint [default: a seeded LeNet-5]")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the server")
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--max-delay-ms", type=float, default=1.0)
    ap.add_argument("--protocol", choices=["json", "binary", "grpc"], default="json", help="wire format")
    args = ap.parse_args()
    if not (1 <= args.requests <= 1_000_000 and 1 <= args.clients <= 1024):
        sys.exit("--requests must be in [1, 1e6] and --clients in [1, 1024]")

    from lepton.data import load_mnist
    from lepton.edge.export import onnx_session

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        model = args.model or default_model(Path(tmp))
        onnx_path = model
        if model.suffix != ".onnx":  # export once here; the server and the reference then run the same file
            from lepton.artifacts import load_model_file
            from lepton.edge.export import export_onnx

            loaded = load_model_file(model)
            onnx_path = Path(tmp) / f"{model.stem}.onnx"
            export_onnx(loaded.model, onnx_path, input_shape=loaded.spec.input_shape)
        images = load_mnist().tensors("test")[0][:1000].numpy()
        reference = onnx_session(onnx_path).run(None, {"input": images})[0]
        port, grpc_port = free_port(), free_port()
        cmd = [
            sys.executable,
            "-m",
            "lepton",
            "serve",
            str(onnx_path),
            "--port",
            str(port),
            "--name",
            "bench",
            "--threads",
            str(args.threads),
            "--max-batch-size",
            str(args.max_batch_size),
            "--max-delay-ms",
            str(args.max_delay_ms),
            *(["--grpc-port", str(grpc_port)] if args.protocol == "grpc" else []),
        ]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    why = server.stderr.read() if server.poll() is not None else "no answer within 120 s"
                    sys.exit(f"the server did not start: {why}")
                try:
                    if httpx.get(f"{url}/v2/models/bench/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            if args.protocol == "grpc":
                run = drive_grpc(f"127.0.0.1:{grpc_port}", "bench", images, reference, args.requests, args.clients)
            else:
                run = drive(url, "bench", images, reference, args.requests, args.clients, args.protocol)
            load_before, server_cpu, client_cpu = os.getloadavg(), cpu_seconds(server.pid), time.process_time()
            latencies, errors, seconds = asyncio.run(run)
            load_after = os.getloadavg()
            server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
            stats = httpx.get(f"{url}/v2/models/bench/stats", timeout=5).json()["model_stats"][0]
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    ms = np.asarray(latencies) * 1000
    rows = [
        ("model", str(args.model or "LeNet-5 (seeded), ONNX fp32")),
        (
            "server",
            f"lepton serve, {args.threads} ORT thread(s), max batch {args.max_batch_size}, "
            f"max delay {args.max_delay_ms} ms",
        ),
        (
            "protocol",
            {"json": "HTTP, JSON tensors", "binary": "HTTP, binary tensors", "grpc": "gRPC, raw"}[args.protocol],
        ),
        ("machine", f"{os.cpu_count()} CPUs (server and clients share them)"),
        ("load average (1 min) before / after", f"{load_before[0]:.2f} / {load_after[0]:.2f}"),
        ("requests / clients", f"{args.requests:,} / {args.clients}"),
        ("errors (non-200, transport or wrong logits)", f"{len(errors)}"),
        ("p50 latency", f"{np.percentile(ms, 50):.2f} ms"),
        ("p90 latency", f"{np.percentile(ms, 90):.2f} ms"),
        ("p99 latency", f"{np.percentile(ms, 99):.2f} ms"),
        ("throughput", f"{args.requests / seconds:,.0f} requests/s ({seconds:.1f} s)"),
        (
            "CPU per request: server / clients",
            f"{server_cpu / args.requests * 1000:.2f} ms / {client_cpu / args.requests * 1000:.2f} ms",
        ),
        ("model calls / mean requests per call", f"{stats['execution_count']:,} / {stats['mean_batch_rows']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for e in errors[:5]:
        print("error:", e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
