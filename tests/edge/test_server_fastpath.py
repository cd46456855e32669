"""The lean inference route (lepton.edge.fastpath, httptools) answers byte for byte what the FastAPI route (h11)
answers: the same requests, good and forged, JSON and binary, sent to both servers give the same status, headers
that matter and body, and both count the same refusals; answers are also checked against ONNX Runtime."""

import json
import re

import httpx
import numpy as np
import pytest

from lepton.edge.export import onnx_session
from lepton.edge.fastpath import INFER_PATH
from lepton.edge.server import ServeConfig, load_served_model, serve_in_thread

TOKEN = "fast-path-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
LIMIT = 1 << 20


def json_body(x, **changes):
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist(), **changes}
    return json.dumps({"inputs": [tensor], "id": "r1"}).encode()


def binary_body(x, size=None, header_length=None, output=True):
    raw = x.astype("<f4").tobytes()
    size = len(raw) if size is None else size
    inputs = [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": size}}]
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": output}}).encode()
    length = str(len(header)) if header_length is None else header_length
    return header + raw, {"inference-header-content-length": length, **AUTH}


def first_value(body, value):
    """``body`` with the first number of its data list replaced by ``value`` (a forged number)."""
    return re.sub(rb'"data": \[[^,]+,', b'"data": [' + value + b",", body, count=1)


def cases(images):
    x1, x7 = images[:1], images[1:8]
    good = json_body(x1)
    path = "/v2/models/lenet5/infer"
    return {
        "json batch 1": ("POST", path, good, AUTH),
        "json batch 7, versioned URL": ("POST", "/v2/models/lenet5/versions/1/infer", json_body(x7), AUTH),
        "binary batch 7": ("POST", path, *binary_body(x7)),
        "binary in, JSON out": ("POST", path, *binary_body(x1, output=False)),
        "binary output asked by name": (
            "POST",
            path,
            json.dumps(
                {**json.loads(json_body(x1)), "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}
            ).encode(),
            AUTH,
        ),
        "no token": ("POST", path, good, {}),
        "wrong token": ("POST", path, good, {"authorization": "Bearer wrong-token!"}),
        "unknown model": ("POST", "/v2/models/resnet50/infer", good, AUTH),
        "unknown version": ("POST", "/v2/models/lenet5/versions/7/infer", good, AUTH),
        "trailing slash": ("POST", path + "/", good, AUTH),
        "GET on the infer route": ("GET", path, None, AUTH),
        "malformed JSON": ("POST", path, b'{"inputs": [{"name": ', AUTH),
        "not UTF-8": ("POST", path, b"\xff\xfe not utf-8", AUTH),
        "deep nesting": ("POST", path, b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", AUTH),
        "wrong shape": ("POST", path, json_body(x1, shape=[1, 1, 28, 27]), AUTH),
        "element count": ("POST", path, json_body(x1, shape=[2, 1, 28, 28]), AUTH),
        "NaN": ("POST", path, first_value(good, b"NaN"), AUTH),
        "leading zero": ("POST", path, first_value(good, b"00.5"), AUTH),
        "leading plus": ("POST", path, first_value(good, b"+0.5"), AUTH),
        "bare dot": ("POST", path, first_value(good, b".5"), AUTH),
        "forged placeholder": ("POST", path, json_body(x1, data="lepton-data:00:0"), AUTH),
        "unknown output": (
            "POST",
            path,
            json.dumps({**json.loads(good), "outputs": [{"name": "probs"}]}).encode(),
            AUTH,
        ),
        "body over the limit": ("POST", path, b" " * (LIMIT + 1), AUTH),
        "binary header not a number": ("POST", path, *binary_body(x1, header_length="12ab")),
        "binary header past the body": ("POST", path, *binary_body(x1, header_length="999999")),
        "binary size too small": ("POST", path, *binary_body(x1, size=3132)),
        "binary size negative": ("POST", path, *binary_body(x1, size=-4)),
        "binary header on JSON": ("POST", path, good, {"inference-header-content-length": "10", **AUTH}),
    }


@pytest.fixture(scope="module")
def servers(onnx_path):
    model = load_served_model(onnx_path)
    base = ServeConfig(token=TOKEN, max_body_bytes=LIMIT)
    fast = base.model_copy(update={"http": "httptools", "http_fast_path": True})
    reference = base.model_copy(update={"http": "h11", "http_fast_path": False})
    with serve_in_thread(model, fast) as fast_url, serve_in_thread(model, reference) as reference_url:
        yield fast_url, reference_url


def answer(client, method, path, body, headers):
    r = client.request(method, path, content=body, headers=headers)
    kept = {k: r.headers.get(k) for k in ("content-type", "content-length", "inference-header-content-length")}
    return r.status_code, kept, r.content


@pytest.mark.timeout(120)
def test_the_fast_route_answers_what_the_fastapi_route_answers(onnx_path, servers, mnist):
    images = mnist.tensors("test")[0][:8].numpy()
    reference = onnx_session(onnx_path).run(None, {"input": images})[0]
    fast_url, reference_url = servers
    with httpx.Client(base_url=fast_url, timeout=30) as fast, httpx.Client(base_url=reference_url, timeout=30) as ref:
        for case, (method, path, body, headers) in cases(images).items():
            got, want = answer(fast, method, path, body, headers), answer(ref, method, path, body, headers)
            assert got == want, case
            status, kept, content = got
            if case.startswith(("json", "binary batch", "binary in", "binary output")):
                assert status == 200, (case, content)
                n = kept["inference-header-content-length"]
                head = json.loads(content if n is None else content[: int(n)])["outputs"][0]
                logits = head.get("data") or np.frombuffer(content[int(n) :], dtype="<f4")
                rows = head["shape"][0]
                want_logits = reference[1:8] if rows == 7 else reference[:1]
                np.testing.assert_allclose(np.reshape(logits, (rows, 10)), want_logits, rtol=0, atol=1e-5)
            elif case != "trailing slash":
                assert 400 <= status < 500 and "error" in json.loads(content), (case, content)
        # a chunked upload declares no length: both count while reading
        chunked = [
            c.post("/v2/models/lenet5/infer", content=iter([b" " * (LIMIT // 2 + 1)] * 2), headers=AUTH)
            for c in (fast, ref)
        ]
        assert chunked[0].status_code == chunked[1].status_code == 413
        assert chunked[0].content == chunked[1].content
        stats = [c.get("/v2/models/lenet5/stats", headers=AUTH).json()["model_stats"][0] for c in (fast, ref)]
        for key in ("rejected_requests", "request_count", "inference_count"):
            assert stats[0][key] == stats[1][key], key
        assert stats[0]["rejected_requests"] >= 20
        metrics = [
            sorted(
                line for line in c.get("/metrics", headers=AUTH).text.splitlines() if "lepton_requests_total{" in line
            )
            for c in (fast, ref)
        ]
        assert metrics[0] == metrics[1] and len(metrics[0]) >= 5  # the same statuses, the same counts


def test_the_fast_route_takes_exactly_the_fastapi_infer_urls():
    assert INFER_PATH.fullmatch("/v2/models/m/infer").groups() == ("m", None)
    assert INFER_PATH.fullmatch("/v2/models/m/versions/2/infer").groups() == ("m", "2")
    for path in ("/v2/models/m/infer/", "/v2/models//infer", "/v2/models/a/b/infer", "/v2/models/m/versions/infer"):
        assert INFER_PATH.fullmatch(path) is None, path
