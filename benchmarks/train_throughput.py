"""Training throughput of lepton.train.fit against a plain hand-written PyTorch loop.

Same model (LeNet-5), same data (MNIST), same batch size, same optimizer, same thread count; the two
loops alternate for several rounds in one process and the median images/s of each is reported.

    .venv/bin/python benchmarks/train_throughput.py [--images 20000] [--rounds 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from lepton.data import load_mnist
from lepton.models import build_model
from lepton.train import TensorBatches, TrainConfig, fit, seed_everything
from lepton.train.loop import build_optimizer


def plain_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> float:
    opt = build_optimizer(model.parameters(), cfg)
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(len(x))
    for i in range(0, len(x), cfg.batch_size):
        idx = perm[i : i + cfg.batch_size]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(x) / (time.perf_counter() - t0)


def lepton_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> float:
    report = fit(model, TensorBatches(x, y, cfg.batch_size, seed=cfg.seed), cfg, progress=True)
    return report.images_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()

    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, threads=args.threads)
    seed_everything(0, args.threads)
    x, y = load_mnist().subset(args.images).tensors("train")
    results: dict[str, list[float]] = {"plain PyTorch loop": [], "lepton.train.fit": []}
    for r in range(args.rounds + 1):  # round 0 warms up both and is not counted
        for name, loop in (("plain PyTorch loop", plain_loop), ("lepton.train.fit", lepton_loop)):
            torch.manual_seed(r)
            ips = loop(build_model("lenet5"), x, y, cfg)
            if r:
                results[name].append(ips)
    base = statistics.median(results["plain PyTorch loop"])
    print(
        f"\nLeNet-5 on MNIST, batch {args.batch_size}, {args.images:,} images per round, {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print("| loop | median images/s | all rounds | vs plain |\n|---|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} | {med / base:.3f}x |")


if __name__ == "__main__":
    main()
