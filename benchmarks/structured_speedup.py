"""What structured channel pruning buys on LeNet-5: parameters, MACs, single-thread latency, accuracy.

A LeNet-5 is trained briefly on MNIST, pruned to keep 50% and 25% of the channels of every layer but
the classifier (L1 filter norm, Torch-Pruning), and each pruned copy is fine-tuned with the same loop.
Latency is the median of the per-round p50 (rounds alternate between models, so background load hits
them alike), on one thread, at batch 1 and batch 256.

    .venv/bin/python benchmarks/structured_speedup.py [--images 60000] [--epochs 1] [--ratios 0.5 0.75]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from lepton.compress.structured import measure_latency, prune_channels, spec_for
from lepton.data import load_mnist
from lepton.models import ModelSpec, count_macs, count_params
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60000, help="training images (MNIST has 60,000)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of training and of each fine-tune")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.75], help="fractions of channels removed")
    ap.add_argument("--rounds", type=int, default=5, help="latency rounds per model")
    ap.add_argument("--repeats", type=int, default=30, help="timed forward passes per round")
    args = ap.parse_args()

    seed_everything(0)
    data = load_mnist().subset(args.images)
    (x, y), test = data.tensors("train"), data.tensors("test")
    shape = data.input_shape
    base_spec = ModelSpec("lenet5", shape, data.num_classes)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05)
    tune_cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=0.01)

    base = base_spec.build()
    fit(base, TensorBatches(x, y, 64, seed=0), train_cfg, progress=False)
    rows = [
        {
            "model": "LeNet-5",
            "ratio": 0.0,
            "spec": base_spec,
            "net": base,
            "pruned_acc": None,
            "acc": evaluate(base, *test).accuracy,
        }
    ]
    for ratio in args.ratios:
        small = prune_channels(base, torch.zeros(1, *shape), ratio)
        pruned_acc = evaluate(small, *test).accuracy
        fit(small, TensorBatches(x, y, 64, seed=1), tune_cfg, progress=False)
        rows.append(
            {
                "model": f"pruned {ratio:.0%}",
                "ratio": ratio,
                "spec": spec_for(small, base_spec),
                "net": small,
                "pruned_acc": pruned_acc,
                "acc": evaluate(small, *test).accuracy,
            }
        )

    p50: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for row in rows:
            for batch in (1, 256):
                t = measure_latency(row["net"], shape, batch=batch, threads=1, repeats=args.repeats)
                p50.setdefault((row["model"], batch), []).append(t["p50_ms"])
    lat = {k: statistics.median(v) for k, v in p50.items()}

    print(
        f"\nLeNet-5 on MNIST ({len(x):,} training images, {args.epochs} epoch(s) of training and of each "
        f"fine-tune), L1 filter pruning, 1 thread, torch {torch.__version__}\n"
    )
    print(
        "| model | widths conv1-conv2-fc1 | params | MACs | p50 ms b=1 | p50 ms b=256 | speed-up b=256 "
        "| acc after pruning | acc after fine-tune |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ref = lat[("LeNet-5", 256)]
    for row in rows:
        kw = {"conv1": 20, "conv2": 50, "fc1": 500, **row["spec"].kwargs}
        pruned = "-" if row["pruned_acc"] is None else f"{row['pruned_acc']:.4f}"
        print(
            f"| {row['model']} | {kw['conv1']}-{kw['conv2']}-{kw['fc1']} | {count_params(row['net']):,} "
            f"| {count_macs(row['net'], shape):,} | {lat[(row['model'], 1)]:.3f} | {lat[(row['model'], 256)]:.2f} "
            f"| {ref / lat[(row['model'], 256)]:.2f}x | {pruned} | {row['acc']:.4f} |"
        )


if __name__ == "__main__":
    main()
