"""DDP on this machine: images/s for 1 and N worker processes (scaling efficiency), gradient bytes
per step for no hook / fp16 / PowerSGD, and test accuracy of each after the same epochs.

Every run trains LeNet-5 on the same MNIST subset with the same seed and the same *global* batch
(``--batch`` samples per step, split over the workers), launched through torchrun like
``lepton train --nproc N``. Across machines, run it on each node with the same
``--nnodes/--rdzv-endpoint`` (see docs/distributed.md).

    python benchmarks/ddp_scaling.py --train 6000 --epochs 3 --nproc 2
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from lepton.data import load_mnist
from lepton.train import TrainConfig
from lepton.train.job import train_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=6000, help="MNIST training samples (a subset keeps it minutes)")
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="global batch per step")
    ap.add_argument("--nproc", type=int, default=2, help="workers for the multi-process rows")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4], help="PowerSGD ranks to try")
    ap.add_argument("--warmup", type=int, default=50, help="PowerSGD plain all-reduce steps first")
    args = ap.parse_args()

    data = load_mnist().subset(args.train, args.test)
    base = dict(epochs=args.epochs, lr=0.05, seed=0, threads=1)
    runs: list[tuple[str, int, dict]] = [
        ("1 process", 1, {}),
        (f"{args.nproc} proc, none", args.nproc, {"kind": "none"}),
        (f"{args.nproc} proc, fp16", args.nproc, {"kind": "fp16"}),
    ]
    runs += [
        (f"{args.nproc} proc, PowerSGD r{r}", args.nproc, {"kind": "powersgd", "rank": r, "warmup_steps": args.warmup})
        for r in args.ranks
    ]
    rows, single_ips, plain_acc = [], None, None
    for label, n, hook in runs:
        cfg = TrainConfig(
            **base,
            batch_size=args.batch // n,
            distributed={"nproc": n, "timeout_s": 120, "comm_hook": hook or {"kind": "none"}},
        )
        job = train_model(data, "lenet5", cfg, progress=False)
        ips, comm = job.train.images_per_second, job.train.communication
        single_ips = single_ips or ips
        if hook.get("kind") == "none":
            plain_acc = job.test.accuracy
        rows.append(
            [
                label,
                f"{ips:,.0f}",
                f"{ips / (n * single_ips):.0%}",
                f"{comm.bytes_last_step:,}" if comm else "-",
                f"{comm.compression_ratio:.1f}x" if comm else "-",
                f"{100 * job.test.accuracy:.2f}%",
                f"{100 * (job.test.accuracy - plain_acc):+.2f}" if plain_acc is not None and comm else "-",
            ]
        )
    table = Table(
        title=f"LeNet-5, MNIST {args.train:,} train / {args.test:,} test, {args.epochs} epochs, "
        f"global batch {args.batch}"
    )
    for col in ("run", "images/s", "scaling eff.", "grad bytes/step/worker", "vs plain", "test acc", "Δ pp vs none"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


if __name__ == "__main__":
    main()
