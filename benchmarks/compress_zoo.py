"""Issue 20's bar on the zoo: channel pruning gives a batch-1 latency gain >= 1.5x at <= 1.0 pp accuracy loss
(ResNet-20 and MobileNetV2-small on Fashion-MNIST).

Each model is trained once (the checkpoint is cached under --cache, so reruns skip training), then pruned
at each --ratios (Torch-Pruning's dependency graph; layers whose channels reach an untracked op, such as
ResNet-20's zero-padded shortcuts, keep their width) and fine-tuned with distillation from the dense model.
Latency is the batch-1, 1-thread p50 of the BatchNorm-folded models (what an export runs), the median over
rounds that alternate between the models. One function per table; ``main`` prints them.

    .venv/bin/python benchmarks/compress_zoo.py                                   # the full run (hours on 2 cores)
    .venv/bin/python benchmarks/compress_zoo.py --dataset digits --epochs 1 --tune-epochs 1   # a smoke test
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lepton.compress.distill import distillation_objective
from lepton.compress.fold import fold_batchnorm
from lepton.compress.structured import measure_latency, prune_channels_with_report
from lepton.data.dataset import ImageDataset
from lepton.data.sources import load_dataset
from lepton.models import ModelSpec, count_macs, count_params
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, seed_everything
from lepton.train.checkpoint import load_checkpoint, paths, save_checkpoint

MODELS = {"resnet20": "ResNet-20", "mobilenetv2-small": "MobileNetV2-small"}


def trained_model(name: str, data: ImageDataset, epochs: int, cache: Path) -> nn.Module:
    """``name`` trained on ``data`` for ``epochs`` (SGD, cosine), read from ``cache`` when it was trained before."""
    spec = ModelSpec(name, data.input_shape, data.num_classes)
    stem = cache / f"{name}-{data.name}-{len(data.y_train)}-{epochs}e"
    if paths(stem)[0].is_file():
        return load_checkpoint(stem).build_model()
    seed_everything(0)
    model = spec.build()
    x, y = data.tensors("train")
    fit(model, TensorBatches(x, y, 128, seed=0), TrainConfig(epochs=epochs, batch_size=128, lr=0.1), progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    save_checkpoint(stem, model, spec)
    return model


def batch1_p50(models: list[nn.Module], shape: tuple[int, ...], rounds: int, repeats: int) -> list[float]:
    """Batch-1 1-thread p50 in ms of each (BatchNorm-folded) model, median over alternating rounds."""
    folded = [fold_batchnorm(m, torch.zeros(1, *shape)).eval() for m in models]
    times: list[list[float]] = [[] for _ in folded]
    for _ in range(rounds):
        for t, m in zip(times, folded):
            t.append(float(measure_latency(m, shape, threads=1, repeats=repeats)["p50_ms"]))
    return [statistics.median(t) for t in times]


def channel_table(name: str, data: ImageDataset, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row for the dense model and one per pruning ratio: params, MACs, latency, accuracy."""
    dense = trained_model(name, data, args.epochs, Path(args.cache)).eval()
    shape, test = data.input_shape, data.tensors("test")
    x, y = data.tensors("train")
    nets, rows = [dense], [{"ratio": 0.0, "kept_full": 0}]
    for ratio in args.ratios:
        small, report = prune_channels_with_report(dense, torch.zeros(1, *shape), ratio)
        if args.tune_epochs:
            fit(
                small,
                TensorBatches(x, y, 128, seed=1),
                TrainConfig(epochs=args.tune_epochs, batch_size=128, lr=args.tune_lr),
                objective=distillation_objective(dense),
                progress=True,
            )
        nets.append(small.eval())
        rows.append({"ratio": ratio, "kept_full": len(report.kept_full)})
    latencies = batch1_p50(nets, shape, args.rounds, args.repeats)
    base_acc = evaluate(dense, *test).accuracy
    for row, net, ms in zip(rows, nets, latencies):
        acc = evaluate(net, *test).accuracy
        row.update(
            model=MODELS[name],
            params=count_params(net),
            macs=count_macs(net, shape),
            p50_ms=ms,
            speedup=latencies[0] / ms,
            accuracy=acc,
            delta_pp=100 * (acc - base_acc),
        )
    return rows


def print_channel_table(rows: list[dict[str, Any]]) -> None:
    print("| model | ratio | params | MACs | batch-1 p50 ms (1 thread) | speed-up | test acc | Δpp | kept full |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['ratio']:.2f} | {r['params']:,} | {r['macs']:,} | {r['p50_ms']:.3f} | "
            f"{r['speedup']:.2f}x | {100 * r['accuracy']:.2f}% | {r['delta_pp']:+.2f} | {r['kept_full']} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist, mnist or digits")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--subset", type=int, default=None, help="first N training images (default: all)")
    ap.add_argument("--epochs", type=int, default=30, help="training epochs of the dense model")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7], help="fractions of channels removed")
    ap.add_argument("--tune-epochs", type=int, default=8, help="fine-tuning epochs after pruning")
    ap.add_argument("--tune-lr", type=float, default=0.02)
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds per model")
    ap.add_argument("--repeats", type=int, default=50, help="timed forward passes per round")
    ap.add_argument("--cache", default="runs/compress_zoo", help="where trained dense checkpoints are kept")
    args = ap.parse_args()

    data = load_dataset(args.dataset)
    if args.subset:
        data = data.subset(args.subset)
    print(
        f"\nChannel pruning on {args.dataset} ({len(data.y_train):,} training images, {args.epochs} epochs, "
        f"{args.tune_epochs} fine-tuning epochs with distillation), torch {torch.__version__}\n"
    )
    print_channel_table([row for name in args.models for row in channel_table(name, data, args)])


if __name__ == "__main__":
    main()
