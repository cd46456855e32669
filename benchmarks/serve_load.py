"""Load test of `lepton serve` on loopback: N requests (one MNIST test image each) from C concurrent clients.

Starts `lepton serve` as a separate process on 127.0.0.1 and a free port and drives it with C clients. The
default `--client lean` costs far less CPU than the server (like wrk): one keep-alive connection per client
writing pre-built request bytes and parsing only the status line and Content-Length of each answer; for gRPC,
pre-serialised ModelInferRequest bytes on one grpc.aio channel. It checks every --verify-every-th answer's
logits against ONNX Runtime; `--client httpx|tritonclient` uses a real client library and checks every answer.
Prints requests/s, p50/p90/p99 latency, errors, CPU per request of server and clients, requests per model call
and the 1-minute load average. --protocol picks the wire format: JSON tensors, Triton's binary tensor extension
over HTTP, or KServe V2 gRPC with raw tensor contents. The server is always stopped at the end.

    python benchmarks/serve_load.py                         # 10,000 requests, 32 clients, LeNet-5, JSON
    OMP_NUM_THREADS=1 python benchmarks/serve_load.py --model model.int8.onnx --requests 20000 --protocol binary
    python benchmarks/serve_load.py --protocol grpc --requests 20000
    python benchmarks/serve_load.py --protocol binary --client tritonclient --requests 2000
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
from typing import Any

import httpx
import numpy as np

HEADER = "inference-header-content-length"  # Triton's binary tensor extension


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


class Checker:
    """Compares a sample of answers (every ``every``-th request) with ONNX Runtime's logits; collects errors."""

    def __init__(self, reference: np.ndarray, every: int) -> None:
        self.reference, self.every, self.errors, self.checked = reference, every, [], 0

    def wanted(self, i: int) -> bool:
        return i % self.every == 0

    def check(self, i: int, k: int, logits: np.ndarray) -> None:
        self.checked += 1
        if logits.shape != self.reference[k].shape or not np.allclose(logits, self.reference[k], rtol=0, atol=1e-4):
            self.errors.append(f"request {i}: logits differ from ONNX Runtime's")


def http_logits(head: bytes, body: bytes) -> np.ndarray:
    """The logits of an infer response (binary tensors if its headers say so, else JSON)."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == HEADER.encode():
            return binary_logits(body, value.strip().decode())
    return np.asarray(json.loads(body)["outputs"][0]["data"], dtype=np.float32)


class RawHTTP(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends pre-built request bytes and parses only the status line and
    Content-Length of each answer (like wrk): the load generator must cost far less CPU than the server."""

    def __init__(self) -> None:
        self.buffer, self.waiter, self.transport = bytearray(), None, None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]) + b"\r\n"
        at = head.lower().find(b"\r\ncontent-length:")
        length = int(head[at + 17 : head.find(b"\r\n", at + 2)]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((int(head[9:12]), head, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the server closed the connection: {exc}"))

    async def send(self, request: bytes) -> tuple[int, bytes, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def raw_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def drive_http(
    url: str, name: str, images: np.ndarray, checker: Checker, requests: int, clients: int, protocol: str, client: str
) -> tuple[list[float], float]:
    """C concurrent HTTP clients, one keep-alive connection each, sending JSON or binary-tensor requests."""
    if protocol == "binary":
        bodies = [binary_body(image) for image in images]
    else:
        bodies = [(body, {"content-type": "application/json"}) for body in json_bodies(images)]
    path = f"/v2/models/{name}/infer"
    latencies: list[float] = []
    counter = iter(range(requests))
    loop = asyncio.get_running_loop()
    host, port = url.removeprefix("http://").split(":")

    async def lean() -> None:
        prebuilt = [raw_request(path, body, headers) for body, headers in bodies]
        _, conn = await loop.create_connection(RawHTTP, host, int(port))
        try:
            for i in counter:
                k = i % len(prebuilt)
                start = time.perf_counter()
                try:
                    status, head, body = await conn.send(prebuilt[k])
                except ConnectionError as e:
                    checker.errors.append(f"request {i}: {e}")
                    _, conn = await loop.create_connection(RawHTTP, host, int(port))
                    continue
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    checker.errors.append(f"request {i}: HTTP {status}: {body[:200]!r}")
                elif checker.wanted(i):
                    checker.check(i, k, http_logits(head, body))
        finally:
            conn.transport.close()

    async def with_httpx(http: httpx.AsyncClient) -> None:
        for i in counter:
            k = i % len(bodies)
            start = time.perf_counter()
            try:
                r = await http.post(path, content=bodies[k][0], headers=bodies[k][1])
            except httpx.HTTPError as e:
                checker.errors.append(f"request {i}: {type(e).__name__}: {e}")
                continue
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200:
                checker.errors.append(f"request {i}: HTTP {r.status_code}: {r.text[:200]}")
                continue
            header_length = r.headers.get(HEADER)
            if header_length is not None:
                checker.check(i, k, binary_logits(r.content, header_length))
            else:
                checker.check(i, k, np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32))

    async def with_tritonclient(triton: Any) -> None:
        import tritonclient.http as th

        for i in counter:
            k = i % len(images)
            tensor = th.InferInput("input", [1, *images.shape[1:]], "FP32")
            tensor.set_data_from_numpy(images[k : k + 1], binary_data=protocol == "binary")
            start = time.perf_counter()
            try:
                result = await triton.infer(
                    name, [tensor], outputs=[th.InferRequestedOutput("logits", binary_data=protocol == "binary")]
                )
            except Exception as e:  # tritonclient raises InferenceServerException and transport errors
                checker.errors.append(f"request {i}: {type(e).__name__}: {str(e)[:200]}")
                continue
            latencies.append(time.perf_counter() - start)
            checker.check(i, k, result.as_numpy("logits").ravel())

    start = time.perf_counter()
    if client == "lean":
        await asyncio.gather(*(lean() for _ in range(clients)))
    elif client == "httpx":
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
            await asyncio.gather(*(with_httpx(http) for _ in range(clients)))
    else:
        import tritonclient.http.aio as tha

        triton = tha.InferenceServerClient(url.removeprefix("http://"), conn_limit=clients)
        try:
            await asyncio.gather(*(with_tritonclient(triton) for _ in range(clients)))
        finally:
            await triton.close()
    return latencies, time.perf_counter() - start


async def drive_grpc(
    target: str, name: str, images: np.ndarray, checker: Checker, requests: int, clients: int, client: str
) -> tuple[list[float], float]:
    """C concurrent callers on one gRPC channel. lean: pre-serialised ModelInferRequest bytes (raw tensor contents)
    sent without protobuf work per call, answers parsed only for the verified sample; tritonclient: its aio client."""
    import grpc
    from tritonclient.grpc import service_pb2

    latencies: list[float] = []
    counter = iter(range(requests))

    async def lean(call: Any, prebuilt: list[bytes]) -> None:
        for i in counter:
            k = i % len(prebuilt)
            start = time.perf_counter()
            try:
                answer = await call(prebuilt[k], timeout=30)
            except grpc.aio.AioRpcError as e:
                checker.errors.append(f"request {i}: {e.code().name}: {e.details()[:200]}")
                continue
            latencies.append(time.perf_counter() - start)
            if checker.wanted(i):
                r = service_pb2.ModelInferResponse.FromString(answer)
                checker.check(i, k, np.frombuffer(r.raw_output_contents[0], dtype="<f4"))

    async def with_tritonclient(triton: Any) -> None:
        import tritonclient.grpc as tg

        for i in counter:
            k = i % len(images)
            tensor = tg.InferInput("input", [1, *images.shape[1:]], "FP32")
            tensor.set_data_from_numpy(images[k : k + 1])
            start = time.perf_counter()
            try:
                result = await triton.infer(name, [tensor])
            except Exception as e:  # tritonclient raises InferenceServerException
                checker.errors.append(f"request {i}: {type(e).__name__}: {str(e)[:200]}")
                continue
            latencies.append(time.perf_counter() - start)
            checker.check(i, k, result.as_numpy("logits").ravel())

    start = time.perf_counter()
    if client == "tritonclient":
        import tritonclient.grpc.aio as tga

        triton = tga.InferenceServerClient(target)
        try:
            await asyncio.gather(*(with_tritonclient(triton) for _ in range(clients)))
        finally:
            await triton.close()
        return latencies, time.perf_counter() - start
    prebuilt = []
    for image in images:
        req = service_pb2.ModelInferRequest(model_name=name, raw_input_contents=[image.astype("<f4").tobytes()])
        req.inputs.add(name="input", datatype="FP32", shape=[1, *image.shape])
        prebuilt.append(req.SerializeToString())
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
        await asyncio.gather(*(lean(call, prebuilt) for _ in range(clients)))
    return latencies, time.perf_counter() - start


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
    ap.add_argument("--inline-rows", type=int, default=64, help="batches up to this many rows run on the event loop")
    ap.add_argument("--protocol", choices=["json", "binary", "grpc"], default="json", help="wire format")
    ap.add_argument(
        "--client",
        choices=["lean", "httpx", "tritonclient"],
        default="lean",
        help="lean: pre-built request bytes on raw keep-alive connections (gRPC: pre-serialised messages), answers "
        "checked on a sample; httpx / tritonclient: a real client library, every answer checked",
    )
    ap.add_argument("--verify-every", type=int, default=10, help="lean client: check every N-th answer's logits")
    args = ap.parse_args()
    if not (1 <= args.requests <= 1_000_000 and 1 <= args.clients <= 1024 and args.verify_every >= 1):
        sys.exit("--requests must be in [1, 1e6], --clients in [1, 1024] and --verify-every at least 1")

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
            "--inline-rows",
            str(args.inline_rows),
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
            checker = Checker(reference, 1 if args.client != "lean" else args.verify_every)
            if args.protocol == "grpc":
                target = f"127.0.0.1:{grpc_port}"
                run = drive_grpc(target, "bench", images, checker, args.requests, args.clients, args.client)
            else:
                run = drive_http(url, "bench", images, checker, args.requests, args.clients, args.protocol, args.client)
            load_before, server_cpu, client_cpu = os.getloadavg(), cpu_seconds(server.pid), time.process_time()
            latencies, seconds = asyncio.run(run)
            errors = checker.errors
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
            f"max delay {args.max_delay_ms} ms, inline rows {args.inline_rows}",
        ),
        (
            "protocol",
            {"json": "HTTP, JSON tensors", "binary": "HTTP, binary tensors", "grpc": "gRPC, raw"}[args.protocol],
        ),
        ("client", f"{args.client}, {checker.checked:,} answers checked against ONNX Runtime"),
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
