"""TTLinear compression of LeNet-300-100's first layer (784×300) on MNIST: ratio and accuracy.

Trains LeNet-300-100 with lepton.train.fit, converts fc1 by TT-SVD at the largest rank whose layer
compression ratio (bias counted on both sides) is at least --ratio, fine-tunes the whole model, and prints
accuracy before/after. Bar (issue 7): ≥ 20× on the layer with ≤ 0.5 pp accuracy loss after fine-tuning.

    .venv/bin/python benchmarks/quantum_tt.py [--epochs 4] [--finetune-epochs 2] [--ratio 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from lepton.data import load_mnist
from lepton.models import build_model
from lepton.models.tensor_train import tt_for_ratio
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, seed_everything


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=20.0)
    ap.add_argument("--in-modes", type=int, nargs="+", default=[4, 7, 4, 7])
    ap.add_argument("--out-modes", type=int, nargs="+", default=[3, 4, 5, 5])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    ds = load_mnist()
    (x_tr, y_tr), (x_te, y_te) = ds.tensors("train"), ds.tensors("test")
    model = build_model("lenet-300-100")
    t0 = time.perf_counter()
    fit(
        model,
        TensorBatches(x_tr, y_tr, 128, seed=0),
        TrainConfig(epochs=args.epochs, batch_size=128, lr=0.05),
        progress=False,
    )
    train_s = time.perf_counter() - t0
    dense_acc = evaluate(model, x_te, y_te).accuracy

    tt = tt_for_ratio(model.fc1, args.ratio, in_modes=args.in_modes, out_modes=args.out_modes)
    model.fc1 = tt
    svd_acc = evaluate(model, x_te, y_te).accuracy
    t0 = time.perf_counter()
    fit(
        model,
        TensorBatches(x_tr, y_tr, 128, seed=1),
        TrainConfig(epochs=args.finetune_epochs, batch_size=128, lr=0.01, seed=1),
        progress=False,
    )
    ft_s = time.perf_counter() - t0
    tt_acc = evaluate(model, x_te, y_te).accuracy

    total = sum(p.numel() for p in model.parameters())
    print(
        f"LeNet-300-100 on MNIST, fc1 784x300 -> TTLinear in_modes={tt.in_modes} out_modes={tt.out_modes} "
        f"ranks={tt.ranks}"
    )
    print(f"{'model':<44} {'fc1 params':>11} {'fc1 ratio':>10} {'model params':>13} {'test acc':>9}")
    print(
        f"{f'dense, {args.epochs} epochs ({train_s:.0f} s)':<44} {tt.dense_params():>11,} {1.0:>9.1f}x "
        f"{total - tt.num_params() + tt.dense_params():>13,} {dense_acc:>9.2%}"
    )
    print(
        f"{'TT-SVD of fc1, no fine-tuning':<44} {tt.num_params():>11,} {tt.compression_ratio():>9.1f}x "
        f"{total:>13,} {svd_acc:>9.2%}"
    )
    print(
        f"{f'TT + fine-tune {args.finetune_epochs} epochs ({ft_s:.0f} s)':<44} {tt.num_params():>11,} "
        f"{tt.compression_ratio():>9.1f}x {total:>13,} {tt_acc:>9.2%}"
    )
    print(
        f"accuracy change after fine-tuning: {100 * (tt_acc - dense_acc):+.2f} pp "
        f"(bar: >= -0.50 pp at >= 20x on the layer)"
    )


if __name__ == "__main__":
    main()
