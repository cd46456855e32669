"""The server under the attacks of an outside security test, each reproduced on loopback with bounded counts and
times: memory per in-flight request, slowloris connections, non-finite numbers, and bearer-token authentication.
A tiny untrained model (Flatten + Linear) keeps the model's own cost out of the measurements."""

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from lepton.edge.export import export_onnx
from lepton.edge.oip import ProtocolError, TensorMetadata, decode_input, parse_infer_request
from lepton.edge.server import ServeConfig, check_exposure, load_served_model, serve_in_thread
from lepton.errors import ConfigError

INFER = "/v2/models/tiny/infer"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("attacks") / "tiny.onnx"
    export_onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval(), path, input_shape=(1, 28, 28))
    return path


def body(rows, data=None):
    data = data if data is not None else ",".join(["0.5"] * rows * 784)
    return (
        f'{{"inputs": [{{"name": "input", "shape": [{rows}, 1, 28, 28], "datatype": "FP32", "data": [{data}]}}]}}'
    ).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


# 7. memory per in-flight request ------------------------------------------------------------------------------

CEILING = 1536 << 20  # the server's RSS may grow at most 1.5 GiB over its idle baseline


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_64_concurrent_7mb_requests_stay_under_a_memory_ceiling(tiny):
    rows = 4464  # "0," per value: 4464 x 784 values = 7.0 MB, the costliest body per byte for list-based parsing
    big = body(rows, ",".join(["0"] * rows * 784))
    assert 6.9e6 < len(big) < 8 << 20
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lepton", "serve", str(tiny), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    peak, stop = [0], threading.Event()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert httpx.post(url + INFER, content=body(1), timeout=10).status_code == 200
        baseline = rss_bytes(proc.pid)

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_bytes(proc.pid))
                if peak[0] > baseline + CEILING:
                    proc.kill()  # the attack worked: stop it before it takes the machine
                    return
                time.sleep(0.02)

        def send(_):
            try:
                return httpx.post(url + INFER, content=big, timeout=50).status_code
            except httpx.TransportError as e:
                return type(e).__name__

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(64) as pool:
            statuses = list(pool.map(send, range(64)))
        stop.set()
        sampler.join(5)
        growth = peak[0] - baseline
        print(
            f"baseline {baseline >> 20} MiB, peak {peak[0] >> 20} MiB, growth {growth >> 20} MiB, "
            f"ceiling {CEILING >> 20} MiB; statuses {sorted(map(str, statuses))}"
        )
        assert growth < CEILING, f"RSS grew by {growth >> 20} MiB"
        assert set(statuses) <= {200, 503} and 200 in statuses, statuses
        assert httpx.post(url + INFER, content=body(1), timeout=10).status_code == 200  # still serving
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# 8. slowloris ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_600_slow_connections_do_not_lock_out_good_clients(tiny):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    config = ServeConfig(header_timeout_s=6)
    partial = b"GET /v2/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    slow: list[socket.socket] = []
    latencies, statuses = [], []
    try:
        with serve_in_thread(load_served_model(tiny), config) as url:
            for _ in range(600):
                s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5)
                s.sendall(partial[:1])
                slow.append(s)
            start, sent = time.monotonic(), 1
            with httpx.Client(base_url=url, timeout=5) as good:
                while time.monotonic() - start < 5:  # all 600 trickle one byte a second; good clients keep asking
                    if time.monotonic() - start >= sent:
                        for s in slow:
                            s.sendall(partial[sent : sent + 1])
                        sent += 1
                    t = time.monotonic()
                    r = good.post(INFER, content=body(1), headers={"connection": "close"})
                    latencies.append(time.monotonic() - t)
                    statuses.append(r.status_code)
                    time.sleep(0.1)
                time.sleep(max(0.0, start + 8 - time.monotonic()))  # past the 6 s header deadline
                closed = 0
                for s in slow:
                    s.settimeout(2)
                    try:
                        closed += s.recv(4096).startswith(b"HTTP/1.1 408") or True
                    except (TimeoutError, OSError):
                        pass
                assert good.get("/v2/models/tiny").status_code == 200
    finally:
        for s in slow:
            s.close()
    print(
        f"{len(latencies)} good requests during the attack: worst {max(latencies) * 1000:.0f} ms, "
        f"statuses {set(statuses)}; {closed}/600 slow connections closed by the server"
    )
    assert set(statuses) == {200} and max(latencies) < 1.0
    assert closed == 600


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
@pytest.mark.timeout(60)
@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_body_that_trickles_is_cut_off(tiny, http):
    with serve_in_thread(load_served_model(tiny), ServeConfig(body_timeout_s=1, http=http)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
            start = time.monotonic()
            reply = s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 3
        assert httpx.post(url + INFER, content=body(1), timeout=10).status_code == 200


# 9. non-finite numbers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny):
    with serve_in_thread(load_served_model(tiny, name="tiny"), ServeConfig(token="s3cret-token")) as url:
        yield url


AUTH = {"Authorization": "Bearer s3cret-token"}
ones = ["1"] * 783


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e39"])
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_non_finite_numbers_get_400_naming_the_input(server, value, layout):
    data = ",".join([value, *ones]) if layout == "flat" else "[" + ",".join([value, *ones]) + "]"
    r = httpx.post(server + INFER, content=body(1, data), headers=AUTH, timeout=10)
    assert r.status_code == 400, r.text
    assert "input 'input'" in r.json()["error"] and "finite FP32" in r.json()["error"]


@pytest.mark.parametrize(
    "data, words",
    [
        ([1, 300], r"range \[-128, 127\]"),
        ([1, float("nan")], "NaN"),
        ([1.5, 2], "whole numbers"),
        ([1, 10**400], "must hold only"),
    ],
)
def test_int8_inputs_refuse_values_they_cannot_hold(data, words):
    spec = TensorMetadata(name="x", datatype="INT8", shape=[-1])
    values = str(data).replace("nan", "NaN")
    text = f'{{"inputs": [{{"name": "x", "shape": [2], "datatype": "INT8", "data": {values}}}]}}'
    parsed = parse_infer_request(text.encode())
    with pytest.raises(ProtocolError, match=words):
        decode_input(parsed.request.inputs[0], spec, parsed.lists)


def test_flat_data_is_parsed_like_json_and_placeholders_cannot_be_forged():
    spec = TensorMetadata(name="x", datatype="FP32", shape=[-1])
    parsed = parse_infer_request(
        b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [ -1.5e-3, 2E+2 ,0]}]}'
    )
    assert parsed.lists  # the fast path took it
    np.testing.assert_array_equal(
        decode_input(parsed.request.inputs[0], spec, parsed.lists), np.array([-1.5e-3, 200, 0], np.float32)
    )
    for bad in (b"[+1, 2, 3]", b"[.5, 2, 3]", b"[1., 2, 3]", b"[01, 2, 3]", b"[1 2, 3]"):
        parsed = parse_infer_request(b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": %s}]}' % bad)
        with pytest.raises(ProtocolError, match="malformed number|needs 3"):
            decode_input(parsed.request.inputs[0], spec, parsed.lists)
    forged = parse_infer_request(
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": "lepton-data:00:0"}]}'
    )
    with pytest.raises(ProtocolError, match="'data' is a string"):
        decode_input(forged.request.inputs[0], spec, forged.lists)


# 10. bearer token ------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_token_guards_every_route_but_health(server):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    x = np.full((2, 1, 28, 28), 0.5, np.float32)
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()  # probes stay open
        inp = triton.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        for headers in (None, {"Authorization": "Bearer wrong-token!"}, {"Authorization": "s3cret-token"}):
            with pytest.raises(InferenceServerException, match="Bearer TOKEN"):
                client.infer("tiny", [inp], headers=headers)
            with pytest.raises(InferenceServerException, match="Bearer TOKEN"):
                client.get_model_metadata("tiny", headers=headers)
        result = client.infer("tiny", [inp], headers=AUTH)
        assert result.as_numpy(client.get_model_metadata("tiny", headers=AUTH)["outputs"][0]["name"]).shape == (2, 10)
        assert client.is_model_ready("tiny", headers={"Authorization": "bearer s3cret-token"})
    finally:
        client.close()
    with httpx.Client(base_url=server, timeout=10) as c:
        for path in ("/v2", "/v2/models/tiny", "/v2/models/tiny/ready", "/v2/models/tiny/stats", "/v3/anything"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
            assert "Bearer TOKEN" in r.json()["error"]
        assert c.get("/v2/health/live").json() == {"live": True}


def test_a_non_loopback_host_needs_a_token_or_no_auth():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(ServeConfig(host=host))
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.com"):
        with pytest.raises(ConfigError, match="--no-auth"):
            check_exposure(ServeConfig(host=host))
        check_exposure(ServeConfig(host=host, token="long-enough"))
        check_exposure(ServeConfig(host=host, no_auth=True))
    with pytest.raises(ConfigError, match="contradict"):
        check_exposure(ServeConfig(token="long-enough", no_auth=True))


@pytest.mark.timeout(60)
def test_lepton_serve_on_all_interfaces_without_a_token_exits_2(tiny):
    env = {k: v for k, v in os.environ.items() if k != "LEPTON_SERVE_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "lepton", "serve", str(tiny), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--token" in lines[0] and "--no-auth" in lines[0], r.stderr
