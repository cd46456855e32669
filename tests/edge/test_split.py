import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lepton.edge.cuts import head_tail, layer_chain
from lepton.edge.split import (
    LayerTime,
    ModelProfile,
    NetworkProfile,
    decode_tensor,
    encode_tensor,
    parse_bandwidth,
    parse_duration_ms,
    plan_split,
    profile_layers,
)
from lepton.edge.splitrun import run_split
from lepton.errors import ConfigError


def _layer(name, ms, nbytes):
    return LayerTime(
        name=name, ms=ms, out_shape=[1], out_bytes={"fp32": nbytes, "int8": nbytes / 4, "int8+zstd": nbytes / 8}
    )


def test_prediction_of_a_synthetic_profile_matches_hand_computation():
    profile = ModelProfile(
        input_shape=[1, 28, 28],
        input_bytes={"fp32": 3136, "int8": 800, "int8+zstd": 200},
        layers=[_layer("a", 1.0, 4000), _layer("b", 0.5, 1000), _layer("c", 6.0, 40)],
    )
    net = NetworkProfile(bandwidth_bps=1e6, rtt_ms=10, edge_slowdown=4, cloud_speedup=2)
    plan = plan_split(profile, net)
    # T(k) = 4 * edge layers + (bytes * 8 / 1e6 s + 10 ms) + cloud layers / 2; edge-only sends nothing
    expected = [
        0 + (25.088 + 10) + 7.5 / 2,  # 38.838
        4 * 1.0 + (32.0 + 10) + 6.5 / 2,  # 49.25
        4 * 1.5 + (8.0 + 10) + 6.0 / 2,  # 27.0
        4 * 7.5,
    ]  # 30.0
    np.testing.assert_allclose([r.total_ms for r in plan.rows], expected)
    assert (plan.best_cut, plan.best_after) == (2, "b") and plan.best_ms == pytest.approx(27.0)
    assert plan.speedup_vs_cloud_only == pytest.approx(38.838 / 27.0)
    int8 = plan_split(profile, net.model_copy(update={"encoding": "int8"}))
    assert int8.rows[1].total_ms == pytest.approx(4 + (8.0 + 10) + 3.25)


def test_units_are_parsed():
    assert parse_bandwidth("10Mbit") == 10e6 and parse_bandwidth("500kbit") == 5e5 and parse_bandwidth("2MB") == 16e6
    assert parse_duration_ms("20ms") == 20 and parse_duration_ms("0.1s") == 100
    with pytest.raises(ConfigError, match="bandwidth"):
        parse_bandwidth("fast")


def test_head_then_tail_is_the_model_at_every_cut(trained, mnist):
    model, _, _ = trained
    x = mnist.tensors("test")[0][:4]
    chain = layer_chain(model, x[:1])
    assert [n for n, _ in chain] == ["conv1", "max_pool2d", "conv2", "max_pool2d_1", "flatten", "fc1", "relu", "fc2"]
    with torch.no_grad():
        ref = model(x)
        for cut in range(len(chain) + 1):
            head, tail = head_tail(chain, cut)
            torch.testing.assert_close(tail(head(x)), ref)


def test_a_skip_connection_is_one_segment():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + x

    chain = layer_chain(Skip(), torch.zeros(1, 4))  # between fc and the add, fc's output and x both cross
    assert [n for n, _ in chain] == ["add"]


@pytest.mark.parametrize("encoding", ["fp32", "int8", "int8+zstd"])
@pytest.mark.parametrize("batch", [1, 3])
def test_payload_round_trip(encoding, batch):
    x = np.random.default_rng(0).normal(size=(batch, 20, 12, 12)).astype(np.float32)
    x[1:] *= 10  # a wider range for the other samples must not coarsen the first one's quantization
    x[:, 3] *= 100  # nor one wide channel the others
    data = encode_tensor(x, encoding)
    y = decode_tensor(data, x.shape, encoding)
    for i in range(batch):
        for c in range(20):  # int8: each channel of each sample has its own scale; error <= half its step
            xc = x[i, c]
            tol = 0 if encoding == "fp32" else (xc.max() - xc.min()) / 255 / 2 + 1e-5 * np.abs(xc).max()
            assert np.abs(xc - y[i, c]).max() <= tol
    header = 8 * 20 * batch  # scale + minimum, float32, per channel per sample
    assert len(data) <= {"fp32": x.nbytes, "int8": x.size + header, "int8+zstd": x.size + header + 64}[encoding]
    if encoding == "int8":  # the first sample's bytes are what a batch of one would send
        assert data[: 8 * 20 + x[0].size] == encode_tensor(x[:1], encoding)


@pytest.mark.parametrize("shape", [(4, 10), (2,), (), (3, 0, 5, 5), (1, 2, 0)])
def test_payload_round_trip_of_flat_and_empty_tensors(shape):
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    y = decode_tensor(encode_tensor(x, "int8"), x.shape, "int8")
    assert y.shape == x.shape
    if x.size:
        assert np.abs(x - y).max() <= (x.max() - x.min()) / 255 / 2 + 1e-5 * np.abs(x).max()


@pytest.mark.parametrize("encoding", ["fp32", "int8", "int8+zstd"])
def test_a_payload_of_the_wrong_size_is_refused(encoding):
    data = encode_tensor(np.ones((2, 5), np.float32), encoding)
    with pytest.raises(ValueError):
        decode_tensor(data, (3, 5), encoding)


def test_profile_payloads_follow_the_layer_shapes(trained, mnist):
    model, _, _ = trained
    profile = profile_layers(model, mnist.tensors("test")[0][:2].numpy(), warmup=2, iterations=10)
    assert profile.layers[0].out_bytes["fp32"] == 20 * 24 * 24 * 4 and profile.layers[-1].out_shape == [1, 10]
    assert all(layer.ms > 0 for layer in profile.layers)


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
@pytest.mark.timeout(120)
def test_a_split_runs_across_two_processes(trained, mnist):
    _, _, path = trained
    run = run_split(path, 4, mnist.tensors("test")[0][:10].numpy(), encoding="int8+zstd", warmup=1)
    assert run.requests == 10 and run.agreement >= 0.9 and run.payload_bytes > 0
    assert run.total_ms >= run.edge_ms + run.cloud_ms


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_cli_smoke(trained, tmp_path):
    _, _, path = trained

    def lepton(*args):
        return subprocess.run([sys.executable, "-m", "lepton", *args], capture_output=True, text=True, timeout=180)

    out = lepton(
        *[
            "edge",
            "export",
            str(path),
            "-o",
            str(tmp_path / "m.onnx"),
            "--int8",
            str(tmp_path / "m8.onnx"),
            "--calibration",
            "64",
            "--format",
            "json",
        ]
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["files"]  # beside "choice" and "int8_tuning"
    assert rows[0]["max_abs_diff_vs_torch"] < 1e-4 and rows[1]["bytes"] < 0.3 * rows[0]["bytes"]
    out = lepton(
        *[
            "edge",
            "split",
            str(path),
            "--bandwidth",
            "10Mbit",
            "--rtt",
            "20ms",
            "--edge-slowdown",
            "8",
            "--no-run",
            "--plot",
            str(tmp_path / "s.png"),
        ]
    )
    assert out.returncode == 0, out.stderr
    assert "best cut" in out.stdout and (tmp_path / "s.png").stat().st_size > 0
    out = lepton(*["edge", "split", str(path), "--bandwidth", "fast", "--no-run"])
    assert out.returncode == 2 and "bandwidth" in out.stderr + out.stdout
