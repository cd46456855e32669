"""Bring your own model: a plain state dict (``torch.save(model.state_dict())`` or ``.safetensors``) with ``--arch``
through eval, compress, edge export/bench/split and serve; an ONNX file from elsewhere through bench and serve."""

import json

import httpx
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import save_file

from lepton.edge.export import onnx_session, run_session
from lepton.edge.server import load_served_model, serve_in_thread
from lepton.models import ModelSpec
from tests.cli.invoke import invoke
from tests.fixtures.user_nets import make_resnet

ARCH = ["--arch", "lenet-300-100", "--data", "digits", "--input-shape", "1,8,8"]


def _fit(model, digits):
    torch.manual_seed(0)
    x, y = digits.tensors("train")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def weights(digits, tmp_path_factory):
    """LeNet-300-100 for 8x8 digits trained briefly, saved by the real writers: .pt and .safetensors."""
    root = tmp_path_factory.mktemp("byo")
    model = _fit(ModelSpec("lenet-300-100", (1, 8, 8), 10).build(), digits)
    torch.save(model.state_dict(), root / "w.pt")
    save_file(model.state_dict(), root / "w.safetensors")
    return model, root


def _accuracy(model, digits):
    x, y = digits.tensors("test")
    with torch.no_grad():
        return (model(x).argmax(1) == y).sum().item() / len(y)


@pytest.mark.parametrize("file", ["w.pt", "w.safetensors"])
def test_eval_of_a_weight_file_matches_the_model_in_memory(weights, digits, file):
    model, root = weights
    out = invoke(["eval", str(root / file), *ARCH, "--format", "json"])
    assert out.code == 0, out.message
    result = json.loads(out.stdout)
    assert result["kind"] == "weights" and result["model"] == "lenet-300-100"
    assert result["accuracy"] == pytest.approx(_accuracy(model, digits), abs=1e-9) and result["accuracy"] > 0.8


def test_edge_export_bench_and_serve_take_a_weight_file(weights, digits, tmp_path):
    model, root = weights
    int8 = ["--int8", str(tmp_path / "m8.onnx"), "--calibration", "128"]
    out = invoke(
        ["edge", "export", str(root / "w.pt"), *ARCH, "-o", str(tmp_path / "m.onnx"), *int8, "--format", "json"]
    )
    assert out.code == 0, out.message
    result = json.loads(out.stdout)
    choice = result["choice"]  # both files timed here, the one to deploy named
    assert [f["file"] for f in result["files"]] == [str(tmp_path / "m.onnx"), str(tmp_path / "m8.onnx")]
    assert choice["faster"] == ("int8" if choice["int8_p50_ms"] < choice["fp32_p50_ms"] else "fp32")
    assert choice["deploy"] in ("int8", "fp32") and choice["reason"]
    assert [r["node"] for r in result["int8_tuning"]["layers"]] == ["/fc1/Gemm", "/fc2/Gemm", "/fc3/Gemm"]
    x = digits.tensors("test")[0][:16]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(run_session(onnx_session(tmp_path / "m.onnx"), x.numpy()), ref, atol=1e-4)
    bench = ["edge", "bench", str(tmp_path / "m.onnx"), "--torch", str(root / "w.pt"), *ARCH]
    out = invoke([*bench, "--iterations", "10", "--batch", "8", "--format", "json"])
    assert out.code == 0, out.message
    assert [r["name"] for r in json.loads(out.stdout)] == ["pytorch eager fp32", "m.onnx"]
    served = load_served_model(
        root / "w.safetensors",
        name="w",
        workdir=tmp_path,
        arch=ModelSpec.from_dict({"name": "lenet-300-100", "input_shape": [1, 8, 8], "num_classes": 10}),
    )
    body = {"inputs": [{"name": "input", "shape": [16, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}]}
    with serve_in_thread(served) as url:
        reply = httpx.post(f"{url}/v2/models/w/infer", json=body, timeout=30).json()
    np.testing.assert_allclose(np.array(reply["outputs"][0]["data"]).reshape(16, 10), ref, atol=1e-4)


def test_a_user_factory_runs_only_with_trust_code(digits, tmp_path):
    model = _fit(make_resnet(1, 8, 10), digits)
    torch.save(model.state_dict(), tmp_path / "user.pt")
    args = ["eval", str(tmp_path / "user.pt"), "--arch", "tests.fixtures.user_nets:make_resnet", "--data", "digits"]
    args += ["--input-shape", "1,8,8", "--format", "json"]
    refused = invoke(args)
    assert refused.kind == "user" and "--trust-code" in refused.message
    out = invoke([*args, "--trust-code"])
    assert out.code == 0, out.message
    assert json.loads(out.stdout)["accuracy"] == pytest.approx(_accuracy(model, digits), abs=1e-9)


@pytest.mark.slow  # fine-tunes while compressing, and starts the split's second process
def test_compress_and_split_take_a_weight_file(weights, digits, tmp_path):
    model, root = weights
    out = invoke(
        ["compress", str(root / "w.pt"), *ARCH, "-o", str(tmp_path / "m.lep"), "--quiet", "--format", "json"]
        + ["--set", "compress.prune.epochs=1", "--set", "compress.share.epochs=0"],
        timeout=300,
    )
    assert out.code == 0, out.message
    report = json.loads(out.stdout)
    assert report["bit_exact"] and report["test_accuracy"] > 0.7  # one pruning epoch: the plumbing, not the recipe
    evaluated = json.loads(invoke(["eval", str(tmp_path / "m.lep"), "--format", "json"]).stdout)
    assert evaluated["accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-9)
    split = ["edge", "split", str(root / "w.safetensors"), *ARCH, "--requests", "20", "--plot", str(tmp_path / "s.svg")]
    out = invoke([*split, "--format", "json"], timeout=300)
    assert out.code == 0, out.message
    assert json.loads(out.stdout)["measured"]["agreement"] == 1.0


def test_weights_trained_on_normalized_input_state_it_with_the_arch(digits, tmp_path):
    """Weights trained on (x - mean) / std: with --normalize-mean/--normalize-std eval and the exported ONNX take
    raw [0, 1] pixels and agree with the model in memory; without them the accuracy drops."""
    norm = ((0.9,), (0.05,))  # far from the identity, so leaving it out shows
    model = _fit(ModelSpec("lenet-300-100", (1, 8, 8), 10, normalize=norm).build(), digits)
    torch.save(model.state_dict(), tmp_path / "n.pt")
    flags = ["--normalize-mean", "0.9", "--normalize-std", "0.05"]
    out = invoke(["eval", str(tmp_path / "n.pt"), *ARCH, *flags, "--format", "json"])
    assert out.code == 0, out.message
    assert json.loads(out.stdout)["accuracy"] == pytest.approx(_accuracy(model, digits), abs=1e-9)
    bare = invoke(["eval", str(tmp_path / "n.pt"), *ARCH, "--format", "json"])
    assert json.loads(bare.stdout)["accuracy"] < json.loads(out.stdout)["accuracy"] - 0.05
    out = invoke(["edge", "export", str(tmp_path / "n.pt"), *ARCH, *flags, "-o", str(tmp_path / "n.onnx")])
    assert out.code == 0, out.message
    x = digits.tensors("test")[0][:16]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(run_session(onnx_session(tmp_path / "n.onnx"), x.numpy()), ref, atol=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "{root}/w.pt", "--data", "digits"], "pass --arch NAME"),
        (["eval", "{root}/w.safetensors", "--data", "digits"], "no Lepton sidecar"),
        (["eval", "{root}/w.pt", "--data", "digits", "--input-shape", "1,8,8"], "pass --arch NAME with them"),
        (["eval", "{root}/w.pt", "--arch", "lenet-300-100", "--input-shape", "8,8"], "expected C,H,W"),
        (["eval", "{root}/w.pt", "--arch", "lenet-300-100", "--data", "digits"], "--input-shape (now 1,28,28)"),
        (["eval", "{root}/w.pt", "--arch", "resnet20", "--data", "digits", "--input-shape", "1,8,8"], "do not fit"),
        (["eval", "{root}/w.pt", "--arch", "nosuch", "--data", "digits"], "unknown model 'nosuch'"),
        (["edge", "bench", "{root}/m.onnx", "--arch", "lenet-300-100"], "pass --torch FILE"),
        (["serve", "{root}/m.onnx", "--arch", "lenet-300-100", "--port", "0"], "drop --arch"),
        (["eval", "{root}/w.pt", "--data", "digits", "--normalize-mean", "0.3"], "pass --arch NAME with them"),
        (["eval", "{root}/w.pt", *ARCH, "--normalize-mean", "0.3"], "go together"),
        (["eval", "{root}/w.pt", *ARCH, "--normalize-mean", "a", "--normalize-std", "1"], "numbers separated"),
        (["eval", "{root}/w.pt", *ARCH, "--normalize-mean", "0.3,0.3", "--normalize-std", "1,1"], "1 numbers"),
        (["eval", "{root}/w.pt", *ARCH, "--normalize-mean", "0.3", "--normalize-std", "0"], "std > 0"),
        (["eval", "{root}/w.pt", *ARCH, "--normalize-mean", "nan", "--normalize-std", "1"], "finite"),
    ],
)
def test_weight_file_mistakes_are_one_line_errors(weights, args, message):
    _, root = weights
    (root / "m.onnx").write_bytes(b"")
    out = invoke([a.format(root=root) for a in args])
    assert out.kind == "user" and message in out.message, out.message


def _onnx(path, inputs):
    """An ONNX model adding its inputs (or returning the one), declared with ``inputs``: [(name, type, shape)]."""
    values = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    names = [n for n, _, _ in inputs]
    node = helper.make_node("Identity" if len(names) == 1 else "Add", names, ["out"])
    out = helper.make_tensor_value_info("out", inputs[0][1], inputs[0][2])
    model = helper.make_model(
        helper.make_graph([node], "g", values, [out]), opset_imports=[helper.make_opsetid("", 17)]
    )
    onnx.save(model, path)


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([("a", TensorProto.FLOAT, ["n", 1, 8, 8]), ("b", TensorProto.FLOAT, ["n", 1, 8, 8])], "has 2 inputs (a, b)"),
        ([("ids", TensorProto.INT64, ["n", 1, 8, 8])], "tensor(int64)"),
        ([("x", TensorProto.FLOAT, ["n", 64])], "not an image batch"),
    ],
)
def test_bench_and_serve_refuse_onnx_files_without_one_image_input(tmp_path, inputs, message):
    _onnx(tmp_path / "m.onnx", inputs)
    for args in (["edge", "bench", str(tmp_path / "m.onnx"), "--data", "digits"], ["serve", str(tmp_path / "m.onnx")]):
        out = invoke([*args, "--iterations", "10"] if args[0] == "edge" else [*args, "--port", "0"])
        assert out.kind == "user" and message in out.message, out.message


def test_bench_and_serve_take_an_onnx_file_lepton_did_not_write(digits, tmp_path):
    """An image classifier exported by torch.onnx itself (static batch of 1, another input name)."""
    model = _fit(ModelSpec("lenet-300-100", (1, 8, 8), 10).build(), digits)
    torch.onnx.export(
        model, (torch.zeros(1, 1, 8, 8),), tmp_path / "foreign.onnx", input_names=["pixels"], dynamo=False
    )
    out = invoke(
        [
            "edge",
            "bench",
            str(tmp_path / "foreign.onnx"),
            "--data",
            "digits",
            "--iterations",
            "10",
            "--batch",
            "1",
            "--format",
            "json",
        ]
    )
    assert out.code == 0, out.message
    x = digits.tensors("test")[0][:1]
    body = {"inputs": [{"name": "pixels", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}]}
    with serve_in_thread(load_served_model(tmp_path / "foreign.onnx")) as url:
        reply = httpx.post(f"{url}/v2/models/foreign/infer", json=body, timeout=30).json()
    with torch.no_grad():
        np.testing.assert_allclose(np.array(reply["outputs"][0]["data"]), model(x).numpy().ravel(), atol=1e-4)
