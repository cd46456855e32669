"""Hybrid PCA-8 → 8-qubit classifier on MNIST beside classical baselines on the same PCA-8 features.

For digits 0–3 (4-class) and all ten digits: test accuracy of the hybrid model (PCA → trainable affine →
8-qubit variational circuit → linear head), logistic regression, and a one-hidden-layer MLP with about the
hybrid's parameter count, all trained by lepton.train.fit; plus seconds per training epoch (the hybrid's
is the quantum simulation, forward + backward). Bars (issue 7): hybrid ≥ 90% on 4-class; one epoch < 10 s.

    .venv/bin/python benchmarks/quantum_mnist.py [--epochs 5] [--layers 3] [--reupload] [--init-std 0.1|uniform]
"""

from __future__ import annotations

import argparse

import torch

from lepton.data import load_mnist
from lepton.quantum.hybrid import HybridConfig, run_hybrid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--reupload", action="store_true")
    ap.add_argument("--init-std", default="0.1", help="std of the initial quantum angles, or 'uniform' for U[0, 2π)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--tasks", nargs="+", default=["4", "10"], choices=["4", "10"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_mnist()
    print(
        f"MNIST, PCA-8 features, {args.epochs} epochs, batch {args.batch}, adam lr {args.lr}, cosine, "
        f"initial angles {args.init_std}, {torch.get_num_threads()} thread(s)"
    )
    print(f"{'task':<16} {'model':<42} {'params':>7} {'test acc':>9} {'s/epoch':>8}")
    for task in args.tasks:
        classes = list(range(int(task)))
        cfg = HybridConfig(
            classes=classes,
            n_layers=args.layers,
            reupload=args.reupload,
            epochs=args.epochs,
            batch_size=args.batch,
            lr=args.lr,
            train_subset=args.train_subset,
            init_std=None if args.init_std == "uniform" else float(args.init_std),
        )
        rep = run_hybrid(ds, cfg)
        name = f"{task}-class ({rep.n_train // 1000}k)"
        for r in rep.results:
            print(f"{name:<16} {r.model:<42} {r.params:>7} {r.test_accuracy:>9.2%} {r.seconds_per_epoch:>8.1f}")


if __name__ == "__main__":
    main()
