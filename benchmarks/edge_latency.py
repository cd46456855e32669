"""LeNet-5 at the edge: PyTorch eager fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8 (static, QDQ), and the
structured-pruned LeNet-5 (50% of the channels, fine-tuned one epoch) in ONNX int8: file size, full MNIST test-set
accuracy, p50/p99 latency at batch 1 on one thread, throughput at batch 256 — side by side in one run.

Latency is measured in rounds that alternate between the models (background load on a shared machine
hits them alike); each row reports the median over rounds of the per-round percentiles.

    .venv/bin/python benchmarks/edge_latency.py [--model runs/x/model.safetensors] [--epochs 2] [--rounds 5] [--tune-images 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import onnxruntime
import torch

from lepton.artifacts import load_model_file
from lepton.compress.structured import prune_channels
from lepton.data import load_mnist
from lepton.edge.bench import BenchConfig, bench_onnx, bench_torch, onnx_accuracy
from lepton.edge.export import export_onnx, max_abs_diff, onnx_session
from lepton.edge.quantize import QuantizeConfig, calibration_sample, cpu_int8_features, quantize_onnx
from lepton.models import ModelSpec
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a trained LeNet-5 checkpoint or .lep [default: train one here]")
    ap.add_argument("--epochs", type=int, default=2, help="epochs when training here, and of the pruned fine-tune")
    ap.add_argument("--calibration", type=int, default=1024, help="training images for int8 calibration")
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds (alternating between the models)")
    ap.add_argument("--iterations", type=int, default=1000, help="timed batch-1 calls per round")
    ap.add_argument("--tune-images", type=int, default=20000, help="training images for the pruned model's fine-tune")
    ap.add_argument("--no-pruned", action="store_true", help="skip the structured-pruned row")
    args = ap.parse_args()

    seed_everything(0)
    data = load_mnist()
    (x, y), (xt, yt) = data.tensors("train"), data.tensors("test")
    if args.model is not None:
        model = load_model_file(args.model).model
        origin = str(args.model)
    else:
        model = ModelSpec("lenet5").build()
        fit(
            model,
            TensorBatches(x, y, 64, seed=0),
            TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05),
            progress=False,
        )
        origin = f"trained here, {args.epochs} epoch(s)"
    model.eval()
    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    cal = calibration_sample(x.numpy(), args.calibration)
    export_onnx(model, work / "fp32.onnx", input_shape=(1, 28, 28))
    quantize_onnx(work / "fp32.onnx", work / "int8.onnx", cal, QuantizeConfig(calibration_images=args.calibration))
    rows = {
        "pytorch eager fp32": (
            "eager",
            model,
            sum(p.numel() * 4 for p in model.parameters()),
            evaluate(model, xt, yt).accuracy,
        ),
        "onnx runtime fp32": (
            "onnx",
            work / "fp32.onnx",
            (work / "fp32.onnx").stat().st_size,
            onnx_accuracy(work / "fp32.onnx", xt.numpy(), yt.numpy()),
        ),
        "onnx runtime int8": (
            "onnx",
            work / "int8.onnx",
            (work / "int8.onnx").stat().st_size,
            onnx_accuracy(work / "int8.onnx", xt.numpy(), yt.numpy()),
        ),
    }
    diffs = {name: max_abs_diff(model, onnx_session(work / f"{name}.onnx"), xt[:2000]) for name in ("fp32", "int8")}
    if not args.no_pruned:
        small = prune_channels(model, torch.zeros(1, 1, 28, 28), 0.5)
        n = args.tune_images
        fit(
            small,
            TensorBatches(x[:n], y[:n], 64, seed=1),
            TrainConfig(epochs=1, batch_size=64, lr=0.01),
            progress=False,
        )
        small.eval()
        export_onnx(small, work / "pruned.onnx", input_shape=(1, 28, 28))
        quantize_onnx(
            work / "pruned.onnx", work / "pruned8.onnx", cal, QuantizeConfig(calibration_images=args.calibration)
        )
        rows["pruned 50% onnx int8"] = (
            "onnx",
            work / "pruned8.onnx",
            (work / "pruned8.onnx").stat().st_size,
            onnx_accuracy(work / "pruned8.onnx", xt.numpy(), yt.numpy()),
        )

    print(f"models ready in {work}; timing {args.rounds} rounds", file=sys.stderr, flush=True)
    cfg = BenchConfig(threads=1, warmup=100, iterations=args.iterations, throughput_batch=256)
    images = xt[:256].numpy()
    stats: dict[str, list[tuple[float, float, float]]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, (kind, obj, _, _) in rows.items():
            r = bench_torch(obj, images, cfg) if kind == "eager" else bench_onnx(obj, images, cfg)
            stats[name].append((r.p50_ms, r.p99_ms, r.images_per_second))
    med = {name: [statistics.median(col) for col in zip(*v)] for name, v in stats.items()}

    eager_p50, fp32 = med["pytorch eager fp32"][0], rows["onnx runtime fp32"]
    print(
        f"\nLeNet-5 ({origin}) on the full MNIST test set (10,000 images); torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, 1 thread, median of {args.rounds} alternating rounds of "
        f"{args.iterations} batch-1 calls; CPU int8 dot-product instructions: "
        f"{', '.join(cpu_int8_features()) or 'none (no VNNI: AVX2 u8*s8 via vpmaddubsw, 7-bit weights)'}\n"
    )
    print(
        "| model | bytes | size vs ONNX fp32 | test accuracy | p50 ms b=1 | p99 ms b=1 | speed-up vs eager (p50) "
        "| images/s b=256 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (_, _, size, acc) in rows.items():
        p50, p99, ips = med[name]
        print(
            f"| {name} | {size:,} | {size / fp32[2]:.3f} | {acc:.4f} | {p50:.4f} | {p99:.4f} | "
            f"{eager_p50 / p50:.2f}x | {ips:,.0f} |"
        )
    int8 = rows["onnx runtime int8"]
    print(f"\nmax |onnx - torch| on 2,000 test images: fp32 {diffs['fp32']:.2e}, int8 {diffs['int8']:.3f} (logits)")
    print(
        f"bars: int8 accuracy drop {100 * (fp32[3] - int8[3]):+.2f} pp (<= 0.1), int8 size "
        f"{int8[2] / fp32[2]:.3f}x fp32 ONNX (<= 0.3), int8 p50 {eager_p50 / med['onnx runtime int8'][0]:.2f}x "
        f"lower than eager (>= 3)"
    )


if __name__ == "__main__":
    main()
