"""fp32 or int8 on this machine: the decision follows the measured numbers, excluded layers stay float in the
int8 file and keep its accuracy, and a real export records a choice consistent with its own measurements."""

import onnx
import pytest
import torch

from lepton.edge.bench import onnx_accuracy
from lepton.edge.deploy import export_model
from lepton.edge.export import export_onnx
from lepton.edge.int8plan import Int8Tolerance, choose_deploy, slow_int8_nodes, spread
from lepton.edge.quantize import QuantizeConfig, calibration_sample, quantize_onnx
from lepton.errors import ConfigError
from lepton.models import ModelSpec

TOL = Int8Tolerance(accuracy_tolerance=0.005, noise_floor=0.03)


@pytest.mark.parametrize(
    ("fp32_ms", "int8_ms", "acc8", "noise", "faster", "deploy", "why"),
    [
        (0.080, 0.064, 0.990, 0.01, "int8", "int8", "faster"),  # LeNet-5 here: int8 20% faster
        (0.080, 0.120, 0.990, 0.01, "fp32", "fp32", "slower beyond"),  # an AVX2-only host, int8 1.5x slower
        (0.080, 0.082, 0.990, 0.01, "fp32", "int8", "within noise"),  # 2.5% slower: inside the 3% floor
        (0.080, 0.088, 0.990, 0.12, "fp32", "int8", "within noise"),  # 10% slower but repeats spread 12%
        (0.080, 0.088, 0.990, 0.01, "fp32", "fp32", "slower beyond"),  # 10% slower, repeats agree to 1%
        (0.080, 0.040, 0.980, 0.01, "int8", "fp32", "loses 1.00 pp"),  # twice as fast but 1 pp less accurate
        (0.080, 0.040, 0.986, 0.01, "int8", "int8", "faster"),  # 0.4 pp lost: within 0.5 pp
    ],
)
def test_choice_follows_the_measured_numbers(fp32_ms, int8_ms, acc8, noise, faster, deploy, why):
    c = choose_deploy(fp32_ms, int8_ms, 0.990, acc8, noise=noise, tolerance=TOL)
    assert (c.faster, c.deploy) == (faster, deploy)
    assert why in c.reason
    assert c.noise == max(noise, TOL.noise_floor)
    assert (c.fp32_p50_ms, c.int8_p50_ms, c.int8_accuracy) == (fp32_ms, int8_ms, acc8)


def test_choice_rejects_impossible_latencies():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="positive latency"):
            choose_deploy(bad, 0.05, 0.99, 0.99, noise=0.01)


def test_spread_is_the_largest_relative_range_of_the_repeats():
    assert spread([[1.0, 1.1, 1.05], [2.0, 2.0, 2.0]]) == pytest.approx(0.1 / 1.05)
    # from five repeats on, the fastest and the slowest are left out: one burst of load is not the noise
    assert spread([[1.0, 1.02, 1.04, 1.06, 1.6], [2.0] * 5]) == pytest.approx(0.04 / 1.04)


@pytest.fixture(scope="module")
def lenet_files(trained, mnist, tmp_path_factory):
    model, spec, _ = trained
    d = tmp_path_factory.mktemp("int8plan")
    export_onnx(model, d / "m.onnx", input_shape=spec.input_shape)
    cal = calibration_sample(mnist.tensors("train")[0].numpy(), 256)
    quantize_onnx(d / "m.onnx", d / "m8.onnx", cal, QuantizeConfig(calibration_images=256))
    return d, cal


def _float_convs(path):
    """Names of Conv/Gemm nodes whose weight is a plain float initializer (not the output of a DequantizeLinear)."""
    g = onnx.load(str(path)).graph
    floats = {i.name for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT}
    return {n.name for n in g.node if n.op_type in ("Conv", "Gemm") and n.input[1] in floats}


def test_excluded_layers_stay_float_in_the_int8_file_and_accuracy_holds(lenet_files, mnist, tmp_path):
    d, cal = lenet_files
    keep = ["/conv1/Conv", "/fc2/Gemm"]
    report = quantize_onnx(d / "m.onnx", tmp_path / "mixed.onnx", cal, QuantizeConfig(nodes_to_exclude=keep))
    assert report.nodes_excluded == keep
    assert _float_convs(tmp_path / "mixed.onnx") == set(keep)
    assert _float_convs(d / "m8.onnx") == set()  # without exclusions every Conv/Gemm weight is int8
    g = onnx.load(str(tmp_path / "mixed.onnx")).graph
    producers = {o: n.op_type for n in g.node for o in n.output}
    conv1 = next(n for n in g.node if n.name == "/conv1/Conv")
    assert producers.get(conv1.input[0]) != "DequantizeLinear"  # its input is float, not dequantized int8
    x, y = (t.numpy()[:2000] for t in mnist.tensors("test"))
    a32, a8 = onnx_accuracy(d / "m.onnx", x, y), onnx_accuracy(tmp_path / "mixed.onnx", x, y)
    assert abs(a32 - a8) <= 0.004  # 8 of 2,000 images


def test_excluding_a_node_the_file_lacks_is_refused(lenet_files, tmp_path):
    d, cal = lenet_files
    with pytest.raises(ConfigError, match="does not have"):
        quantize_onnx(d / "m.onnx", tmp_path / "x.onnx", cal, QuantizeConfig(nodes_to_exclude=["/conv9/Conv"]))
    assert not (tmp_path / "x.onnx").exists()


def test_per_layer_profile_covers_every_quantized_layer(lenet_files):
    d, cal = lenet_files
    rows, slow = slow_int8_nodes(d / "m.onnx", d / "m8.onnx", cal[:1], runs=20)
    assert [r.node for r in rows] == ["/conv1/Conv", "/conv2/Conv", "/fc1/Gemm", "/fc2/Gemm"]
    assert all(r.fp32_us > 0 and r.int8_us > 0 for r in rows)
    assert set(slow) == {r.node for r in rows if r.int8_us > 1.2 * r.fp32_us}


def test_export_records_a_choice_consistent_with_its_measurements(digits, tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec("lenet-300-100", input_shape=(1, 8, 8))
    model = spec.build().eval()
    x, y = digits.tensors("train")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    r = export_model(
        model.eval(), spec, digits, tmp_path / "m.onnx", tmp_path / "m8.onnx", calibration_images=128,
        choice_iterations=50,
    )  # fmt: skip
    c, t = r.choice, r.int8_tuning
    assert c is not None and t is not None and r.int8 is not None
    assert c.faster == ("int8" if c.int8_p50_ms < c.fp32_p50_ms else "fp32")
    again = choose_deploy(c.fp32_p50_ms, c.int8_p50_ms, c.fp32_accuracy, c.int8_accuracy, noise=c.noise)
    assert (again.deploy, again.reason) == (c.deploy, c.reason)
    assert (c.fp32_accuracy, c.int8_accuracy) == (r.fp32.test_accuracy, r.int8.test_accuracy)
    assert c.fp32_accuracy > 0.9 and abs(c.fp32_accuracy - c.int8_accuracy) <= 0.02
    assert set(t.excluded) <= set(t.candidates) and [row.node for row in t.layers] == [
        "/fc1/Gemm",
        "/fc2/Gemm",
        "/fc3/Gemm",
    ]
    assert _float_convs(tmp_path / "m8.onnx") == set(t.excluded)
    assert r.int8.bytes == (tmp_path / "m8.onnx").stat().st_size
    assert not list(tmp_path.glob(".*tmp"))  # the mixed candidate leaves nothing behind
