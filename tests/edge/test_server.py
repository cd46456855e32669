"""The Open Inference Protocol server against independent references: Triton's own HTTP client, ONNX Runtime
and torch on real MNIST test images; every class of bad request gets a 4xx JSON error and the server lives on."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from lepton.edge.export import export_onnx, onnx_session
from lepton.edge.server import ServeConfig, load_served_model, serve_in_thread
from lepton.models import build_model
from lepton.models.registry import ModelSpec
from lepton.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory):
    """LeNet-5 trained briefly (one pass over 3,200 MNIST images, one thread: the machine is shared) and its
    ONNX file."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = mnist.tensors("train")
    model = build_model("lenet5")
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    try:
        for i in range(0, 3200, 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path = tmp_path_factory.mktemp("serve") / "lenet5.onnx"
    export_onnx(model, path, input_shape=(1, 28, 28))
    return model, path


LIMIT = 2 << 20


@pytest.fixture(scope="module")
def server(trained):
    _, path = trained
    with serve_in_thread(load_served_model(path), ServeConfig(max_body_bytes=LIMIT)) as url:
        yield url


@pytest.fixture(scope="module")
def images(mnist):
    x, y = mnist.tensors("test")
    return x[:200].numpy(), y[:200].numpy()


@pytest.mark.timeout(120)  # includes training the module's model
def test_triton_client_gets_the_onnxruntime_and_torch_predictions(trained, server, images):
    import tritonclient.http as triton

    model, path = trained
    x, y = images
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("lenet5")
        meta = client.get_model_metadata("lenet5")
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
        assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
        got = []
        for batch in (x[:1], x[1:8], x[8:72], x[72:200]):  # 1, 7, 64 and 128 rows (above max_batch_size)
            inp = triton.InferInput("input", list(batch.shape), "FP32")
            inp.set_data_from_numpy(batch, binary_data=False)
            result = client.infer("lenet5", [inp], outputs=[triton.InferRequestedOutput("logits", binary_data=False)])
            got.append(result.as_numpy("logits"))
    finally:
        client.close()
    logits = np.concatenate(got)
    ort = onnx_session(path).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert logits.shape == (200, 10)
    np.testing.assert_allclose(logits, ort, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-4)
    assert (logits.argmax(1) == ref.argmax(1)).all()
    assert (logits.argmax(1) == y).mean() > 0.85  # a trained model: the predictions are the right digits


def infer_body(x, **changes):
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist(), **changes}
    return {"inputs": [tensor]}


@pytest.mark.timeout(60)
def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(trained, server, images):
    model, _ = trained
    x, _ = images
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:96])).numpy()
    with httpx.Client(base_url=server, timeout=30) as c:
        before = c.get("/v2/models/lenet5/stats").json()["model_stats"][0]

        def one(i):
            r = c.post("/v2/models/lenet5/infer", json={**infer_body(x[i : i + 1]), "id": f"req-{i}"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["id"] == f"req-{i}" and body["model_name"] == "lenet5"
            return np.array(body["outputs"][0]["data"], dtype=np.float32)

        with ThreadPoolExecutor(32) as pool:
            got = np.stack(list(pool.map(one, range(96))))
        after = c.get("/v2/models/lenet5/stats").json()["model_stats"][0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    requests = after["request_count"] - before["request_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 96 and executions < requests  # some model calls served several requests


X1 = np.full((1, 1, 28, 28), 0.5, dtype=np.float32)
BAD = {
    "wrong shape": (infer_body(X1, shape=[1, 1, 28, 27]), 400, "shape"),
    "wrong rank": (infer_body(X1, shape=[784]), 400, "shape"),
    "empty batch": (infer_body(np.zeros((0, 1, 28, 28), np.float32)), 400, "batch"),
    "element count": (infer_body(X1, shape=[2, 1, 28, 28]), 400, "needs 1568"),
    "wrong datatype": (infer_body(X1, datatype="INT64"), 400, "datatype"),
    "unknown datatype": (infer_body(X1, datatype="FLOAT"), 400, "not an Open Inference Protocol datatype"),
    "string data": (infer_body(X1, data=["0.5"] * 784), 400, "must hold only FP32"),
    "ragged data": (infer_body(X1, data=[[0.5] * 783, [0.5]]), 400, "regular array"),
    "unknown input": (infer_body(X1, name="image"), 400, "inputs"),
    "no inputs": ({"inputs": []}, 400, "Open Inference Protocol"),
    "missing field": ({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "data": [0.5] * 784}]}, 400, "datatype"),
    "unknown output": ({**infer_body(X1), "outputs": [{"name": "probs"}]}, 400, "unknown output"),
    "binary input": (infer_body(X1, parameters={"binary_data_size": 3136}), 400, "binary"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_inference_requests_get_4xx_json_errors(server, case):
    body, status, words = BAD[case]
    r = httpx.post(f"{server}/v2/models/lenet5/infer", json=body, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and words in r.json()["error"]


@pytest.mark.timeout(60)
def test_malformed_json_unknown_models_and_oversized_bodies_get_4xx(server):
    good = json.dumps(infer_body(X1)).encode()
    with httpx.Client(base_url=server, timeout=10) as c:
        cases = [
            (c.post("/v2/models/lenet5/infer", content=b'{"inputs": [{"name": '), 400, "not valid JSON"),
            (c.post("/v2/models/lenet5/infer", content=b"\xff\xfe not utf-8"), 400, "not valid JSON"),
            (
                c.post("/v2/models/lenet5/infer", content=b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
                400,
                "recursion limit",
            ),
            (c.post("/v2/models/lenet5/infer", content=b"[1, 2]"), 400, "Open Inference Protocol"),
            (c.post("/v2/models/resnet50/infer", content=good), 404, "not served here"),
            (c.post("/v2/models/lenet5/versions/7/infer", content=good), 404, "version 7"),
            (c.get("/v2/models/resnet50"), 404, "not served here"),
            (c.get("/v2/models/resnet50/ready"), 404, "not served here"),
            (c.post("/v2/models/lenet5/infer", content=b" " * (LIMIT + 1)), 413, "limit"),
            # a chunked upload declares no length: the server counts while reading
            (c.post("/v2/models/lenet5/infer", content=iter([b" " * (LIMIT // 2 + 1)] * 2)), 413, "limit"),
            (
                c.post("/v2/models/lenet5/infer", content=good, headers={"Inference-Header-Content-Length": "10"}),
                400,
                "binary",
            ),
            (c.get("/v2/models/lenet5/infer"), 405, "Method Not Allowed"),
            (c.get("/v3/anything"), 404, "Not Found"),
        ]
        for r, status, words in cases:
            assert r.status_code == status, (r.request.url, r.text)
            assert words in r.json()["error"], r.text
        # the server is still up and still right
        assert c.get("/v2/health/live").json() == {"live": True}
        r = c.post("/v2/models/lenet5/versions/1/infer", content=good)
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 10]


@pytest.mark.timeout(60)
def test_a_checkpoint_is_exported_on_the_fly_and_served(trained, images, tmp_path):
    model, _ = trained
    x, _ = images
    save_checkpoint(tmp_path / "ckpt.safetensors", model, ModelSpec("lenet5"))
    served = load_served_model(tmp_path / "ckpt.safetensors", name="digits", workdir=tmp_path)
    with serve_in_thread(served) as url:
        r = httpx.post(f"{url}/v2/models/digits/infer", json=infer_body(x[:5]), timeout=10)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:5])).numpy()
    np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"]).reshape(5, 10), ref, rtol=0, atol=1e-4)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_lepton_serve_command_serves_and_stops_on_ctrl_c(trained):
    _, path = trained
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton", "serve", str(path), "--port", str(port), "--name", "mnist"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/models/mnist/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/v2/models/mnist/infer", json=infer_body(X1), timeout=10)
        assert r.status_code == 200 and len(r.json()["outputs"][0]["data"]) == 10
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130  # the CLI's exit status for Ctrl-C, after a graceful shutdown
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
