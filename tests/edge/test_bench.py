import torch

from lepton.edge.bench import BenchConfig, bench_onnx, bench_torch
from lepton.edge.export import export_onnx


def test_percentiles_and_throughput_are_measured(trained, mnist, tmp_path):
    model, spec, _ = trained
    export_onnx(model, tmp_path / "m.onnx", input_shape=spec.input_shape)
    images = mnist.tensors("test")[0][:32].numpy()
    cfg = BenchConfig(warmup=5, iterations=50, throughput_batch=64, throughput_iterations=3)
    threads = torch.get_num_threads()
    for r in (bench_onnx(tmp_path / "m.onnx", images, cfg), bench_torch(model, images, cfg)):
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
        assert r.images_per_second > 0 and r.throughput_batch == 64 and r.threads == 1
    assert torch.get_num_threads() == threads  # the thread setting is restored
