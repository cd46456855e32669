"""Many models straight from the registry: a real server serving two models and two versions from a real
registry folder (logits equal to ONNX Runtime in-process), Triton's repository routes through tritonclient
(load a new version without a restart, unload), a corrupted blob refused while the others keep answering,
and the guards on load/unload."""

import concurrent.futures

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from lepton.edge.export import export_onnx, onnx_session
from lepton.edge.registry import Registry, blob_key
from lepton.edge.server import ServeConfig, create_app, load_served_model, serve_in_thread
from lepton.edge.sources import ModelLoader, parse_model_arg
from tests.cli.invoke import invoke
from tests.edge.test_registry import s3, s3_server  # noqa: F401 (the moto fixtures)


def perturbed_onnx(model, spec, path, seed):
    """``model`` with seeded noise on its weights, exported: a different version with different logits."""
    copy = spec.build()
    copy.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    copy.eval()
    export_onnx(copy, path, input_shape=spec.input_shape)
    return path


@pytest.fixture(scope="module")
def files(trained, tmp_path_factory):
    """Four ONNX files with different weights: lenet:1, lenet:2, lenet:3 and other:1."""
    model, spec, _ = trained
    folder = tmp_path_factory.mktemp("repo-src")
    return {
        key: perturbed_onnx(model, spec, folder / f"{key}.onnx", seed)
        for seed, key in enumerate(["l1", "l2", "l3", "o1"])
    }


@pytest.fixture
def registry(tmp_path, files):
    root = tmp_path / "registry"
    reg = Registry(root)
    reg.push(files["l1"], "lenet", "1")
    reg.push(files["l2"], "lenet", "2")
    reg.push(files["o1"], "other", "1")
    return root, reg


@pytest.fixture(scope="module")
def images(mnist):
    return mnist.tensors("test")[0][:7].numpy()


def reference(path, images):
    return onnx_session(path).run(None, {"input": images})[0]


def infer(url, path, images):
    body = {
        "inputs": [{"name": "input", "shape": list(images.shape), "datatype": "FP32", "data": images.ravel().tolist()}]
    }
    r = httpx.post(f"{url}{path}/infer", json=body, timeout=30)
    return r.status_code, r.json()


def logits(answer):
    out = answer["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def start(root, tmp_path, refs, **config):
    loader = ModelLoader(tmp_path / "cache")
    models = [loader.open(parse_model_arg(f"{root}/{ref}")) for ref in refs]
    return serve_in_thread(models, ServeConfig(**config), loader=loader.load)


@pytest.mark.timeout(180)
def test_two_models_and_two_versions_answer_with_their_own_logits(registry, tmp_path, files, images):
    import tritonclient.grpc as tgrpc

    root, _ = registry
    want = {k: reference(files[k], images) for k in ("l1", "l2", "o1")}
    with start(root, tmp_path, ["lenet:1", "lenet:2", "other"], default_versions={"lenet": "1"}, grpc_port=0) as url:
        for path, key in [
            ("/v2/models/lenet/versions/1", "l1"),
            ("/v2/models/lenet/versions/2", "l2"),
            ("/v2/models/lenet", "l1"),  # the declared default
            ("/v2/models/other", "o1"),
        ]:
            status, answer = infer(url, path, images)
            assert status == 200, answer
            np.testing.assert_allclose(logits(answer), want[key], rtol=0, atol=1e-5)
        assert not np.allclose(want["l1"], want["l2"], atol=1e-3)  # the versions really differ
        assert httpx.get(f"{url}/v2/models/lenet", timeout=5).json()["versions"] == ["1", "2"]
        status, answer = infer(url, "/v2/models/lenet/versions/7", images)
        assert status == 404 and "lenet:1" in answer["error"] and "other:1" in answer["error"]

        client = tgrpc.InferenceServerClient(url.grpc)
        for version, key in [("1", "l1"), ("2", "l2"), ("", "l1")]:
            inp = tgrpc.InferInput("input", list(images.shape), "FP32")
            inp.set_data_from_numpy(images)
            got = client.infer("lenet", [inp], model_version=version).as_numpy("logits")
            np.testing.assert_allclose(got, want[key], rtol=0, atol=1e-5)
        with pytest.raises(Exception, match="not served"):
            client.infer("lenet", [inp], model_version="9")
        client.close()

        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'lepton_model_requests_total{model="lenet",version="2"} 2.0' in metrics  # HTTP and gRPC


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_load_a_new_version_without_restart_then_unload_with_tritonclient(registry, tmp_path, files, images):
    import tritonclient.http as thttp

    root, reg = registry
    with start(root, tmp_path, ["lenet:1", "other"]) as url:
        client = thttp.InferenceServerClient(url.removeprefix("http://"))
        assert {(m["name"], m["version"], m["state"]) for m in client.get_model_repository_index()} == {
            ("lenet", "1", "READY"),
            ("other", "1", "READY"),
        }
        reg.push(files["l3"], "lenet", "3")  # published while the server runs
        client.load_model("lenet")  # no version: the registry's latest
        status, answer = infer(url, "/v2/models/lenet", images)  # the highest version is the default now
        assert status == 200 and answer["model_version"] == "3"
        np.testing.assert_allclose(logits(answer), reference(files["l3"], images), rtol=0, atol=1e-5)
        status, answer = infer(url, "/v2/models/lenet/versions/1", images)
        np.testing.assert_allclose(logits(answer), reference(files["l1"], images), rtol=0, atol=1e-5)

        # reloading a version while requests keep arriving: every request gets a complete, correct answer
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            sent = [pool.submit(infer, url, "/v2/models/lenet/versions/3", images) for _ in range(40)]
            r = httpx.post(f"{url}/v2/repository/models/lenet/load", json={"parameters": {"version": "3"}}, timeout=60)
            assert r.status_code == 200, r.text
            for f in sent:
                status, answer = f.result()
                assert status == 200, answer
                np.testing.assert_allclose(logits(answer), reference(files["l3"], images), rtol=0, atol=1e-5)

        client.unload_model("lenet")
        index = {(m["name"], m["version"]): m for m in client.get_model_repository_index()}
        assert index[("lenet", "3")]["state"] == "UNAVAILABLE" and index[("lenet", "3")]["reason"] == "unloaded"
        assert index[("other", "1")]["state"] == "READY"
        assert infer(url, "/v2/models/lenet", images)[0] == 404
        assert not client.is_model_ready("lenet") and client.is_model_ready("other")
        np.testing.assert_allclose(
            logits(infer(url, "/v2/models/other", images)[1]), reference(files["o1"], images), rtol=0, atol=1e-5
        )
        client.close()


@pytest.mark.timeout(180)
def test_a_corrupted_blob_is_refused_and_the_others_keep_answering(registry, tmp_path, files, images):
    root, reg = registry
    manifest = reg.push(files["l3"], "lenet", "3")
    blob = root / blob_key(manifest.sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the same size
    blob.write_bytes(bytes(data))
    with start(root, tmp_path, ["lenet:1", "other"]) as url:
        r = httpx.post(f"{url}/v2/repository/models/lenet/load", json={"parameters": {"version": "3"}}, timeout=60)
        assert r.status_code == 400 and "corrupted" in r.json()["error"] and "sha256" in r.json()["error"]
        index = httpx.post(f"{url}/v2/repository/index", timeout=5).json()
        row = next(m for m in index if m["version"] == "3")
        assert row["name"] == "lenet" and row["state"] == "UNAVAILABLE" and "corrupted" in row["reason"]
        status, answer = infer(url, "/v2/models/lenet", images)
        assert status == 200 and answer["model_version"] == "1"
        np.testing.assert_allclose(logits(answer), reference(files["l1"], images), rtol=0, atol=1e-5)
        assert infer(url, "/v2/models/lenet/versions/3", images)[0] == 404
        assert not list((tmp_path / "cache").rglob("3/lenet.onnx*"))  # nothing of it was left in the cache


def test_serve_names_the_model_that_fails_at_start(registry, tmp_path):
    root, reg = registry
    missing = invoke(["serve", f"{root}/lenet:1", f"{root}/lenet:9", "--cache-dir", str(tmp_path / "c")])
    assert missing.code == 2 and f"{root}/lenet:9" in missing.message and "not published" in missing.message
    blob = root / blob_key(reg.manifest("other", "1").sha256)
    blob.write_bytes(blob.read_bytes()[:-10])
    corrupt = invoke(["serve", f"{root}/other", "--cache-dir", str(tmp_path / "c")])
    assert corrupt.code == 2 and f"{root}/other" in corrupt.message and "corrupted" in corrupt.message
    absent = invoke(["serve", str(tmp_path / "nothing.onnx")])
    assert absent.code == 2 and "no such file" in absent.message


def test_repository_control_is_guarded(files):
    model = load_served_model(files["l1"], name="lenet")
    exposed = ServeConfig(host="0.0.0.0", token="s3cret-token")
    with TestClient(create_app(model, exposed)) as client:
        assert client.post("/v2/repository/models/lenet/unload").status_code == 401  # the token comes first
        auth = {"Authorization": "Bearer s3cret-token"}
        r = client.post("/v2/repository/models/lenet/unload", headers=auth)
        assert r.status_code == 403 and "--allow-repository-control" in r.json()["error"]
        assert client.post("/v2/repository/index", headers=auth).json()[0]["state"] == "READY"
    allowed = exposed.model_copy(update={"allow_repository_control": True})
    with TestClient(create_app(model, allowed)) as client:
        auth = {"Authorization": "Bearer s3cret-token"}
        bad = client.post("/v2/repository/models/lenet/load", headers=auth, json={"parameters": {"config": "{}"}})
        assert bad.status_code == 400 and "unsupported parameter" in bad.json()["error"]
        assert client.post("/v2/repository/models/nope/unload", headers=auth).status_code == 404
        assert client.post("/v2/repository/models/lenet/unload", headers=auth).status_code == 200
        assert client.get("/v2/models/lenet/ready", headers=auth).status_code == 404


@pytest.mark.timeout(120)
def test_serves_a_model_pulled_from_s3(request, tmp_path, files, images):
    client, bucket = request.getfixturevalue("s3")  # moto on loopback, the registry tests' fixture
    Registry(f"s3://{bucket}/models", s3_client=client).push(files["o1"], "other", "1")
    with start(f"s3://{bucket}/models", tmp_path, ["other:1"]) as url:
        status, answer = infer(url, "/v2/models/other", images)
        assert status == 200, answer
        np.testing.assert_allclose(logits(answer), reference(files["o1"], images), rtol=0, atol=1e-5)
