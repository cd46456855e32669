"""The model zoo: shapes on 28 and 32 px inputs, parameter counts, fx capture, ONNX export."""

import json

import numpy as np
import pytest
import torch

from lepton.errors import ConfigError
from lepton.models.graph import build_graph, capture
from lepton.models.registry import build_model, count_params
from tests.edge.served import served_logits

ZOO = ["resnet20", "mobilenetv2-small", "mlp-mixer-small"]


def resnet20_params(c: int, classes: int) -> int:
    """ResNet-20 counted by hand: 19 bias-free 3x3 convs, 19 BatchNorms (2 params each), the linear head."""
    convs = 16 * c * 9 + 6 * 16 * 16 * 9 + (16 * 32 + 5 * 32 * 32) * 9 + (32 * 64 + 5 * 64 * 64) * 9
    norms = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    return convs + norms + 64 * classes + classes


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("shape, classes", [((1, 28, 28), 10), ((3, 32, 32), 100)])
def test_zoo_models_take_the_dataset_shape(name, shape, classes):
    model = build_model(name, shape, classes).eval()
    x = torch.randn(3, *shape)
    assert model(x).shape == (3, classes)
    rebuilt = build_graph(capture(model)).eval()
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt(x), model(x))


def test_resnet20_has_he_et_al_s_parameter_count():
    assert count_params(build_model("resnet20", (3, 32, 32), 10)) == resnet20_params(3, 10) == 269_722
    assert count_params(build_model("resnet20", (1, 28, 28), 10)) == resnet20_params(1, 10)


def test_mobilenet_uses_depthwise_convolutions_and_residual_adds():
    model = build_model("mobilenetv2-small")
    depthwise = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]
    assert len(depthwise) == 7
    ops = [n["target"] for n in capture(model)["nodes"] if n["op"] == "function"]
    assert ops.count("operator.add") == 4  # the blocks whose input and output shapes agree


@pytest.mark.parametrize(
    "name, shape, kwargs, match",
    [
        ("resnet20", (1, 4, 4), {}, "at least 8x8"),
        ("mlp-mixer-small", (1, 30, 30), {}, "not a multiple of the patch size"),
        ("mlp-mixer-small", (1, 28, 28), {"patch": 5}, "not a multiple of the patch size"),
        ("mlp-mixer-small", (1, 28, 28), {"dim": 0}, "dim=0"),
        ("resnet20", (1, 28, 28), {"depth": 3}, "depth"),
    ],
)
def test_bad_zoo_arguments_are_config_errors(name, shape, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_model(name, shape, 10, **kwargs)


@pytest.mark.slow  # trains and compresses four models on digits (about a minute)
@pytest.mark.parametrize("name", [*ZOO, "user"])
def test_every_stage_on_the_zoo_and_a_user_model(name, digits, tmp_path):
    """train → compress → .lep → decode bit-exact in a rebuilt model → eval → ONNX fp32 and int8, on real data →
    the int8 ONNX and the .lep each served by `lepton serve`'s server, one request agreeing with in-process runs."""
    from lepton.api import compress, export_onnx, load, train
    from lepton.edge.bench import onnx_accuracy
    from lepton.edge.export import onnx_session, run_session
    from lepton.edge.quantize import calibration_sample, quantize_onnx
    from tests.cli.invoke import invoke
    from tests.fixtures.user_nets import TinyResNet

    model = TinyResNet(1, 8, 10) if name == "user" else build_model(name, digits.input_shape, digits.num_classes)
    trained = train(model, digits, epochs=6, lr=0.05)
    small = compress(trained.model, digits)
    small.save(tmp_path / "m.lep")
    restored = load(tmp_path / "m.lep")
    x, y = digits.tensors("test")
    assert torch.equal(restored(x), small.model(x))  # the file decodes to exactly the model that was measured
    assert small.report.bit_exact and small.report.test_accuracy >= trained.test.accuracy - 0.05
    export_onnx(restored, tmp_path / "m.onnx", input_shape=digits.input_shape)
    calibration = calibration_sample(digits.tensors("train")[0].numpy(), 256)
    quantize_onnx(tmp_path / "m.onnx", tmp_path / "m.int8.onnx", calibration)
    for path in ("m.onnx", "m.int8.onnx"):
        assert onnx_accuracy(tmp_path / path, x.numpy(), y.numpy()) >= small.report.test_accuracy - 0.05, path
    bench = ["edge", "bench", str(tmp_path / "m.int8.onnx"), "--data", "digits", "--iterations", "10", "--batch", "8"]
    out = invoke([*bench, "--format", "json"])  # the exported file as the source of `lepton edge bench`
    assert out.code == 0 and json.loads(out.stdout)[0]["name"] == "m.int8.onnx", out.message
    (tmp_path / "served").mkdir()
    batch = x[:32].numpy()
    int8 = run_session(onnx_session(tmp_path / "m.int8.onnx"), batch).argmax(1)
    np.testing.assert_array_equal(served_logits(tmp_path / "m.int8.onnx", batch).argmax(1), int8)
    with torch.no_grad():
        lep = restored(x[:32]).argmax(1).numpy()
    np.testing.assert_array_equal(served_logits(tmp_path / "m.lep", batch).argmax(1), lep)
