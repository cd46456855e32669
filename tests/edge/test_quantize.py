import io

import numpy as np
import onnx
import pytest
from rich.console import Console

from lepton.edge.bench import onnx_accuracy
from lepton.edge.export import export_onnx
from lepton.edge.quantize import QuantizeConfig, calibration_sample, quantize_onnx
from lepton.errors import ConfigError


@pytest.fixture(scope="module")
def onnx_pair(trained, mnist, tmp_path_factory):
    model, spec, _ = trained
    d = tmp_path_factory.mktemp("q")
    export_onnx(model, d / "m.onnx", input_shape=spec.input_shape)
    cal = calibration_sample(mnist.tensors("train")[0].numpy(), 256)
    report = quantize_onnx(d / "m.onnx", d / "m8.onnx", cal, QuantizeConfig(calibration_images=256))
    return d / "m.onnx", d / "m8.onnx", report


def test_int8_keeps_accuracy_on_real_test_images(onnx_pair, mnist):
    fp32, int8, _ = onnx_pair
    x, y = (t.numpy() for t in mnist.tensors("test"))
    a32, a8 = onnx_accuracy(fp32, x[:3000], y[:3000]), onnx_accuracy(int8, x[:3000], y[:3000])
    assert a32 > 0.9
    assert abs(a32 - a8) <= 0.004  # 12 of 3,000 images; the full-set figure is in benchmarks/edge_latency.py


def test_int8_file_is_qdq_and_small(onnx_pair):
    fp32, int8, report = onnx_pair
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    assert report.bytes == int8.stat().st_size and report.fp32_bytes == fp32.stat().st_size
    assert report.size_ratio <= 0.3


def test_calibration_input_is_checked(onnx_pair, tmp_path):
    fp32, _, _ = onnx_pair
    with pytest.raises(ConfigError, match="calibration"):
        quantize_onnx(fp32, tmp_path / "q.onnx", np.zeros((4, 28, 28), np.float32))
    with pytest.raises(ConfigError, match="does not exist"):
        quantize_onnx(tmp_path / "none.onnx", tmp_path / "q.onnx", np.zeros((4, 1, 28, 28), np.float32))
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_shows_progress_with_time_left_and_quiet_shows_nothing(onnx_pair, mnist, tmp_path):
    fp32, _, _ = onnx_pair
    cal = calibration_sample(mnist.tensors("train")[0].numpy(), 128)
    outs = {}
    for shown in (False, True):
        outs[shown] = io.StringIO()
        console = Console(file=outs[shown], force_terminal=True, width=160)
        quantize_onnx(fp32, tmp_path / f"{shown}.onnx", cal, QuantizeConfig(), progress=shown, console=console)
    assert outs[False].getvalue() == ""
    text = outs[True].getvalue()
    assert "int8 calibration" in text and "eta" in text and "2/2" in text  # 128 images in batches of 64
    assert (tmp_path / "True.onnx").read_bytes() == (tmp_path / "False.onnx").read_bytes()
