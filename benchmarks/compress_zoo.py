"""Compression of models Lepton has no preset for (issue 20): ResNet-20 and MobileNetV2-small.

Each model is trained once (the dense checkpoint is cached as OUT/<model>-<data>/model.safetensors, the
files `lepton train` writes, so reruns skip training); then two tables, one function each:

- ``lep``: the default recipe, exactly what `lepton compress CHECKPOINT` does with no options
  (sensitivity-allocated sparsity with no per-model constants, BatchNorm folded after pruning, 5-bit
  weight sharing, distillation from the dense model); size and test accuracy of the model decoded from
  the `.lep` file, every byte counted; fp32 is 4 bytes per parameter of the dense model.
  Bar: >= 10x smaller than fp32 at <= 1.0 pp.
- ``channels``: channel pruning at each --ratios (Torch-Pruning's dependency graph; layers whose
  channels reach an untracked op, such as ResNet-20's zero-padded shortcuts, keep their width),
  fine-tuned with distillation; batch-1, 1-thread p50 latency of the BatchNorm-folded models (what an
  export runs), the median over rounds that alternate between the models.
  Bar: >= 1.5x batch-1 latency gain at <= 1.0 pp.

    .venv/bin/python benchmarks/compress_zoo.py --models resnet20                 # both tables, Fashion-MNIST
    .venv/bin/python benchmarks/compress_zoo.py --tables channels --ratios 0.5 0.7
    .venv/bin/python benchmarks/compress_zoo.py --models mobilenetv2-small --subset 10000   # a 10k-image train split
    .venv/bin/python benchmarks/compress_zoo.py --data digits --epochs 1 --tune-epochs 1 --out /tmp/zoo  # smoke

`lepton train --data fashion-mnist --model resnet20 --epochs 8 --batch-size 128 --lr 0.1
--set train.warmup_epochs=0.5 -o runs/zoo/resnet20-fashion-mnist` writes the same dense checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lepton.artifacts import load_model_file
from lepton.compress.chain import compress_model
from lepton.compress.channel_step import batch1_latency
from lepton.compress.config import CompressConfig
from lepton.compress.distill import distillation_objective
from lepton.compress.fold import fold_batchnorm
from lepton.compress.structured import prune_channels_with_report
from lepton.data import load_dataset
from lepton.data.dataset import ImageDataset
from lepton.models import count_macs, count_params
from lepton.train import TensorBatches, TrainConfig, evaluate, fit
from lepton.train.checkpoint import save_checkpoint
from lepton.train.job import train_model
from lepton.utils.io import atomic_write_text

MODELS = {"resnet20": "ResNet-20", "mobilenetv2-small": "MobileNetV2-small"}


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=128, lr=0.1, warmup_epochs=0.5)


def dense_model(name: str, data: ImageDataset, cfg: TrainConfig, cache: Path) -> tuple[Any, Any, float]:
    """The trained dense (model, spec) and its training seconds (0 when read from the cache)."""
    path = cache / f"{name}-{data.name}" / "model.safetensors"
    if path.exists():
        loaded = load_model_file(path)
        return loaded.model, loaded.spec, 0.0
    t0 = time.perf_counter()
    job = train_model(data, name, cfg, progress=True)
    seconds = time.perf_counter() - t0
    save_checkpoint(path, job.model, job.spec, extra={"train": cfg.model_dump(mode="json")})
    return job.model, job.spec, seconds


def lep_row(name: str, data: ImageDataset, cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """The default recipe's `.lep` against fp32: bytes, ratio, accuracy from the decoded file."""
    model, spec, train_s = dense_model(name, data, cfg, out)
    x_test, y_test = data.tensors("test")
    dense_acc = evaluate(model, x_test, y_test).accuracy
    t0 = time.perf_counter()
    report = compress_model(model, spec, data, CompressConfig(), TrainConfig(), out / f"{name}-{data.name}.lep")
    compress_s = time.perf_counter() - t0
    return {
        "model": name,
        "data": data.name,
        "params": count_params(model),
        "macs": count_macs(model, spec.input_shape),
        "dense_test_accuracy": dense_acc,
        "fp32_bytes": report.dense_bytes,
        "lep_bytes": report.file_bytes,
        "ratio": round(report.ratio, 2),
        "lep_test_accuracy": report.test_accuracy,
        "loss_pp": round(100 * (dense_acc - report.test_accuracy), 2),
        "bit_exact": report.bit_exact,
        "sparsity": {k: round(v, 3) for k, v in report.sparsity.items()},
        "bits": report.bits,
        "train_seconds": round(train_s, 1),
        "compress_seconds": round(compress_s, 1),
        "steps": [s.model_dump() for s in report.steps],
    }


def print_lep_table(rows: list[dict[str, Any]]) -> None:
    print("\n.lep with the default recipe (bar: >= 10x smaller than fp32 at <= 1.0 pp)")
    print(
        f"{'model':<18} {'data':<14} {'fp32 B':>10} {'.lep B':>9} {'ratio':>7} {'dense':>7} {'.lep':>7} {'loss pp':>8}"
    )
    for r in rows:
        print(
            f"{r['model']:<18} {r['data']:<14} {r['fp32_bytes']:>10,} {r['lep_bytes']:>9,} {r['ratio']:>6.1f}x "
            f"{100 * r['dense_test_accuracy']:>6.2f}% {100 * r['lep_test_accuracy']:>6.2f}% {r['loss_pp']:>8.2f}"
        )


def batch1_p50(models: list[nn.Module], shape: tuple[int, ...], rounds: int, repeats: int) -> list[float]:
    """Batch-1 1-thread p50 in ms of each model, BatchNorm folded (what an export runs)."""
    folded = [fold_batchnorm(m, torch.zeros(1, *shape)).eval() for m in models]
    return batch1_latency(folded, shape, rounds=rounds, repeats=repeats)


def channel_table(name: str, data: ImageDataset, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row for the dense model and one per pruning ratio: params, MACs, latency, accuracy."""
    dense = dense_model(name, data, train_config(args), args.out)[0].eval()
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--tables", nargs="+", default=["lep", "channels"], choices=["lep", "channels"])
    parser.add_argument("--data", default="fashion-mnist", help="dataset name (fashion-mnist, mnist, digits)")
    parser.add_argument("--epochs", type=int, default=8, help="dense training epochs")
    parser.add_argument(
        "--subset", type=int, default=None, help="train and fine-tune on the first N training images (full test set)"
    )
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7], help="fractions of channels removed")
    parser.add_argument("--tune-epochs", type=int, default=4, help="fine-tuning epochs after channel pruning")
    parser.add_argument("--tune-lr", type=float, default=0.01)
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds per model")
    parser.add_argument("--repeats", type=int, default=50, help="timed forward passes per round")
    parser.add_argument("--out", type=Path, default=Path("runs/zoo"), help="checkpoint cache and .lep files")
    args = parser.parse_args()
    data = load_dataset(args.data)
    if args.subset:  # its own name, so its checkpoint and files never mix with the full dataset's
        data = dataclasses.replace(data.subset(args.subset), name=f"{data.name}-n{args.subset}")
    print(f"{args.data}: {len(data.y_train):,} training images; torch {torch.__version__}")
    results: dict[str, Any] = {}
    if "lep" in args.tables:
        results["lep"] = [lep_row(name, data, train_config(args), args.out) for name in args.models]
        print_lep_table(results["lep"])
    if "channels" in args.tables:
        results["channels"] = [row for name in args.models for row in channel_table(name, data, args)]
        print(
            f"\nChannel pruning ({args.tune_epochs} fine-tuning epochs with distillation; bar: >= 1.5x batch-1 "
            "latency at <= 1.0 pp)"
        )
        print_channel_table(results["channels"])
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"compress_zoo-{args.data}-{'-'.join(args.tables)}.json"
    atomic_write_text(args.out / name, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
