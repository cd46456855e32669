"""Compression of models Lepton has no preset for (issue 20): ResNet-20 and MobileNetV2-small.

For each model: train the dense baseline (or reuse the checkpoint cached by an earlier run), then
compress it with the default recipe — exactly what `lepton compress CHECKPOINT` does with no options:
BatchNorm folded, sensitivity-allocated sparsity (no per-model constants), 5-bit weight sharing,
distillation from the dense model — and measure size and test accuracy on the model decoded from the
`.lep` file. Every byte of the file is counted; fp32 is 4 bytes per parameter of the dense model.

    .venv/bin/python benchmarks/compress_zoo.py                       # both models, Fashion-MNIST
    .venv/bin/python benchmarks/compress_zoo.py --models resnet20 --data mnist
    .venv/bin/python benchmarks/compress_zoo.py --data digits --epochs 2 --out /tmp/zoo   # a smoke run

The dense checkpoints are cached as OUT/<model>-<data>/model.safetensors, the files `lepton train`
writes (`lepton train --data fashion-mnist --model resnet20 --epochs 8 --batch-size 128 --lr 0.1
--set train.warmup_epochs=0.5 -o runs/zoo/resnet20-fashion-mnist` gives the same checkpoint).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from lepton.artifacts import load_model_file
from lepton.compress.chain import compress_model
from lepton.compress.config import CompressConfig
from lepton.data import load_dataset
from lepton.data.dataset import ImageDataset
from lepton.models import count_macs, count_params
from lepton.train import TrainConfig, evaluate
from lepton.train.checkpoint import save_checkpoint
from lepton.train.job import train_model
from lepton.utils.io import atomic_write_text

MODELS = ("resnet20", "mobilenetv2-small")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--data", default="fashion-mnist", help="dataset name (fashion-mnist, mnist, digits)")
    parser.add_argument("--epochs", type=int, default=8, help="dense training epochs")
    parser.add_argument("--out", type=Path, default=Path("runs/zoo"), help="checkpoint cache and .lep files")
    args = parser.parse_args()
    data = load_dataset(args.data)
    cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.1, warmup_epochs=0.5)
    rows = [lep_row(name, data, cfg, args.out) for name in args.models]
    print_lep_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"compress_zoo-{args.data}.json", json.dumps({"lep": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
