"""The server's other wire formats and its operations against real clients: Triton's binary tensor extension
(tritonclient.http, binary_data=True) and the KServe V2 gRPC service (tritonclient.grpc) give ONNX Runtime's
logits; forged binary lengths get 400s; /metrics counts what was sent; request timeouts answer 504."""

import json
import struct

import httpx
import numpy as np
import pytest

from lepton.edge.export import onnx_session
from lepton.edge.server import ServeConfig, load_served_model, serve_in_thread


@pytest.fixture(scope="module")
def images(mnist):
    return mnist.tensors("test")[0][:72].numpy()


@pytest.fixture(scope="module")
def server(onnx_path):
    with serve_in_thread(load_served_model(onnx_path), ServeConfig(grpc_port=0, max_body_bytes=1 << 20)) as url:
        yield url


@pytest.mark.timeout(120)
def test_binary_http_and_grpc_clients_get_onnxruntime_logits(onnx_path, server, images):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    reference = onnx_session(onnx_path).run(None, {"input": images})[0]
    http = thttp.InferenceServerClient(server.removeprefix("http://"))
    grpc = tgrpc.InferenceServerClient(server.grpc)
    try:
        assert grpc.is_server_live() and grpc.is_server_ready() and grpc.is_model_ready("lenet5")
        meta = grpc.get_model_metadata("lenet5")
        assert meta.name == "lenet5" and list(meta.inputs[0].shape) == [-1, 1, 28, 28]
        for lo, hi in ((0, 1), (1, 8), (8, 72)):  # batches of 1, 7 and 64
            x = images[lo:hi]
            inp = thttp.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=True)
            out = thttp.InferRequestedOutput("logits", binary_data=True)
            got_http = http.infer("lenet5", [inp], outputs=[out]).as_numpy("logits")
            got_default = http.infer("lenet5", [inp]).as_numpy("logits")  # binary_data_output, no outputs named
            ginp = tgrpc.InferInput("input", list(x.shape), "FP32")
            ginp.set_data_from_numpy(x)
            got_grpc = grpc.infer("lenet5", [ginp]).as_numpy("logits")
            for got in (got_http, got_default, got_grpc):
                assert got.shape == (hi - lo, 10)
                np.testing.assert_allclose(got, reference[lo:hi], rtol=0, atol=1e-5)
    finally:
        http.close()
        grpc.close()


def binary_request(x: np.ndarray, size: int | None = None, header: str | None = None, tail: bytes = b""):
    raw = x.astype("<f4").tobytes()
    params = {"binary_data_size": len(raw) if size is None else size}
    text = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "parameters": params}]})
    body = text.encode() + raw + tail
    return body, {"Inference-Header-Content-Length": str(len(text)) if header is None else header}


X1 = np.full((1, 1, 28, 28), 0.5, dtype=np.float32)
FORGED = {
    "header length past the body": (binary_request(X1, header="999999"), "says the JSON takes 999999"),
    "header length zero": (binary_request(X1, header="0"), "says the JSON takes 0"),
    "header length negative": (binary_request(X1, header="-5"), "whole number"),
    "header length huge": (binary_request(X1, header="9" * 40), "whole number"),
    "header length cuts the JSON": (binary_request(X1, header="20"), "not valid JSON"),
    "size short of shape x dtype": (binary_request(X1, size=3132, tail=b""), "trailing"),
    "size past the body": (binary_request(X1, size=3140), "runs past the end"),
    "size negative": (binary_request(X1, size=-4), "non-negative"),
    "size huge": (binary_request(X1, size=1 << 62), "runs past the end"),
    "size not a number": (binary_request(X1, size="3136"), "non-negative"),
    "trailing bytes": (binary_request(X1, tail=b"\0" * 8), "after the JSON"),
    "shape beyond the limit": (binary_request(np.zeros((1, 1, 28, 28), np.float32)), None),
    "NaN in binary data": (binary_request(np.full((1, 1, 28, 28), np.nan, np.float32)), "NaN"),
    "unknown binary input": (
        (binary_request(X1)[0].replace(b'"name": "input"', b'"name": "image"'), binary_request(X1)[1]),
        "do not match the model's inputs",
    ),
    "data and binary data": (
        (binary_request(X1)[0].replace(b'"datatype"', b'"data": [1], "datatype"', 1), None),
        "both 'data' and binary_data_size",
    ),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(FORGED))
def test_forged_binary_lengths_get_400(server, case):
    (body, headers), words = FORGED[case]
    if case == "size short of shape x dtype":
        words = "needs 3136"
        body = body[:-4]  # the bytes match the forged size, not the shape
    if case == "data and binary data":
        text = body[: body.index(b"}]}") + 3]
        headers = {"Inference-Header-Content-Length": str(len(text))}
    if case == "shape beyond the limit":
        text = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [1 << 40, 1, 28, 28],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": 16},
                    }
                ]
            }
        ).encode()
        body, headers, words = text + b"\0" * 16, {"Inference-Header-Content-Length": str(len(text))}, "limit"
    r = httpx.post(f"{server}/v2/models/lenet5/infer", content=body, headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"], r.text
    assert httpx.get(f"{server}/v2/health/live", timeout=10).status_code == 200


@pytest.mark.timeout(60)
def test_grpc_refuses_bad_tensors_with_invalid_argument(server):
    """Messages built with Triton's own protobuf classes (tritonclient.grpc.service_pb2), sent on a raw channel."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    def request(raw: list[bytes], shape=(1, 1, 28, 28), model="lenet5", datatype="FP32"):
        req = service_pb2.ModelInferRequest(model_name=model, raw_input_contents=raw)
        req.inputs.add(name="input", datatype=datatype, shape=list(shape))
        return req

    good = np.zeros(784, "<f4").tobytes()
    cases = [
        (request([good[:-4]]), grpc.StatusCode.INVALID_ARGUMENT, "needs 3136"),
        (request([good, good]), grpc.StatusCode.INVALID_ARGUMENT, "one per input"),
        (request([good], shape=(1 << 40, 1, 28, 28)), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        (request([good], shape=(-1, 1, 28, 28)), grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (request([good], datatype="FP64"), grpc.StatusCode.INVALID_ARGUMENT, "datatype"),
        (request([struct.pack("<f", float("inf")) * 784]), grpc.StatusCode.INVALID_ARGUMENT, "Infinity"),
        (request([good], model="resnet"), grpc.StatusCode.NOT_FOUND, "not served here"),
        (request([b"\0" * (2 << 20)]), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),  # past max_body_bytes
    ]
    with grpc.insecure_channel(server.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for req, code, words in cases:
            with pytest.raises(grpc.RpcError) as e:
                stub.ModelInfer(req, timeout=10)
            assert e.value.code() == code and words in e.value.details(), e.value.details()
        ok = stub.ModelInfer(request([good]), timeout=10)
        assert list(ok.outputs[0].shape) == [1, 10] and len(ok.raw_output_contents[0]) == 40


@pytest.mark.timeout(60)
def test_metrics_count_the_requests_sent(onnx_path, images):
    import tritonclient.grpc as tgrpc
    from prometheus_client.parser import text_string_to_metric_families

    body = {
        "inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": images[0].ravel().tolist()}]
    }
    bad = {"inputs": [{**body["inputs"][0], "shape": [1, 1, 28, 27]}]}
    with serve_in_thread(load_served_model(onnx_path), ServeConfig(grpc_port=0)) as url:
        with httpx.Client(base_url=url, timeout=10) as c:
            assert all(c.post("/v2/models/lenet5/infer", json=body).status_code == 200 for _ in range(5))
            assert all(c.post("/v2/models/lenet5/infer", json=bad).status_code == 400 for _ in range(3))
            client = tgrpc.InferenceServerClient(url.grpc)
            inp = tgrpc.InferInput("input", [1, 1, 28, 28], "FP32")
            inp.set_data_from_numpy(images[:1])
            for _ in range(4):
                client.infer("lenet5", [inp])
            client.close()
            text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {
        (s.labels["protocol"], s.labels["status"]): s.value
        for s in families["lepton_requests"].samples
        if s.name == "lepton_requests_total"
    }
    assert counts == {("http", "200"): 5, ("http", "400"): 3, ("grpc", "OK"): 4}
    latency = {
        s.labels["protocol"]: s.value for s in families["lepton_request_seconds"].samples if s.name.endswith("_count")
    }
    assert latency == {"http": 8, "grpc": 4}
    rows = next(s.value for s in families["lepton_batch_rows"].samples if s.name == "lepton_batch_rows_sum")
    assert rows == 9  # the 400s never reached the model
    assert "lepton_queue_depth" in families


@pytest.mark.timeout(60)
def test_a_request_past_its_timeout_gets_504_and_deadline_exceeded(onnx_path, images):
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    body = {
        "inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": images[0].ravel().tolist()}]
    }
    config = ServeConfig(grpc_port=0, request_timeout_s=1e-6)
    with serve_in_thread(load_served_model(onnx_path), config) as url:
        r = httpx.post(f"{url}/v2/models/lenet5/infer", json=body, timeout=10)
        assert r.status_code == 504 and "did not answer" in r.json()["error"]
        client = tgrpc.InferenceServerClient(url.grpc)
        inp = tgrpc.InferInput("input", [1, 1, 28, 28], "FP32")
        inp.set_data_from_numpy(images[:1])
        with pytest.raises(InferenceServerException) as e:
            client.infer("lenet5", [inp])
        assert "DEADLINE_EXCEEDED" in str(e.value.status())
        client.close()


@pytest.mark.timeout(60)
def test_the_token_guards_grpc_too_but_not_its_health_rpcs(onnx_path, images):
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    token = "s3cret-token"
    with serve_in_thread(load_served_model(onnx_path), ServeConfig(grpc_port=0, token=token)) as url:
        client = tgrpc.InferenceServerClient(url.grpc)
        try:
            assert client.is_server_live() and client.is_server_ready()
            inp = tgrpc.InferInput("input", [1, 1, 28, 28], "FP32")
            inp.set_data_from_numpy(images[:1])
            for headers in (None, {"authorization": "Bearer wrong-token"}):
                with pytest.raises(InferenceServerException, match="Bearer TOKEN") as e:
                    client.infer("lenet5", [inp], headers=headers)
                assert "UNAUTHENTICATED" in str(e.value.status())
            with pytest.raises(InferenceServerException, match="Bearer TOKEN"):
                client.get_model_metadata("lenet5")
            good = client.infer("lenet5", [inp], headers={"authorization": f"Bearer {token}"})
            assert good.as_numpy("logits").shape == (1, 10)
        finally:
            client.close()
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
