"""SIGTERM under load: `lepton serve` (a subprocess) stops accepting, answers every request it had already
accepted (HTTP binary and gRPC, held in the batcher's window when the signal comes), and exits 0; its JSON
access log has one line per request."""

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lepton.edge.export import export_onnx, onnx_session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def arrived(url: str) -> tuple[float, float]:
    """(requests in flight, requests that arrived in all: in flight + finished), HTTP and gRPC together."""
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text)}
    flying = sum(s.value for s in families["lepton_requests_in_flight"].samples)
    done = sum(s.value for s in families["lepton_requests"].samples if s.name == "lepton_requests_total")
    return flying, flying + done


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_answers_every_accepted_request_and_exits_0(trained, mnist, tmp_path):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    model, spec, _ = trained
    path = tmp_path / "lenet5.onnx"
    export_onnx(model, path, input_shape=spec.input_shape)
    x = mnist.tensors("test")[0][:40].numpy()
    reference = onnx_session(path).run(None, {"input": x})[0]
    port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "lepton", "serve", str(path), "--port", str(port), "--grpc-port", str(grpc_port)]
    # a long batching window holds requests inside the server when the signal comes
    cmd += ["--max-batch-size", "1024", "--max-delay-ms", "1000", "--drain", "20", "--access-log", "json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        local = threading.local()

        def http_one(i: int) -> np.ndarray:
            if not hasattr(local, "client"):
                local.client = thttp.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60)
            inp = thttp.InferInput("input", [1, 1, 28, 28], "FP32")
            inp.set_data_from_numpy(x[i : i + 1], binary_data=True)
            return local.client.infer("lenet5", [inp]).as_numpy("logits")

        def grpc_one(i: int) -> np.ndarray:
            client = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            inp = tgrpc.InferInput("input", [1, 1, 28, 28], "FP32")
            inp.set_data_from_numpy(x[i : i + 1])
            return client.infer("lenet5", [inp], client_timeout=60).as_numpy("logits")

        before = arrived(url)[1]
        with ThreadPoolExecutor(40) as pool:
            futures = [pool.submit(http_one, i) for i in range(32)]
            futures += [pool.submit(grpc_one, i) for i in range(32, 40)]
            deadline = time.monotonic() + 30
            while (state := arrived(url))[1] - before < 40:  # every request has reached the server
                assert time.monotonic() < deadline, state
                time.sleep(0.02)
            assert state[0] > 0  # ... and some are still in flight: the batching window holds them
            proc.send_signal(signal.SIGTERM)
            got = np.concatenate([f.result(timeout=60) for f in futures])
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        log = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
        infers = [e for e in log if e.get("path", "").endswith("/infer") or e.get("method") == "ModelInfer"]
        assert sorted((e["protocol"], e["status"]) for e in infers) == [("grpc", "OK")] * 8 + [("http", "200")] * 32
        with pytest.raises(httpx.TransportError):  # and it no longer accepts anything
            httpx.get(f"{url}/v2/health/live", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
