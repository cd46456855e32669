"""LeNet-5 training throughput fed from the packed store against in-memory arrays (bar: >= 0.9x).

For each dataset: pack the training images (the store's default `auto` image codec unless --codec),
then time `--epochs` epochs of LeNet-5 SGD steps fed by in-memory tensors (`TensorBatches`) and by a
DataLoader over the store (`store_batches`, with 0 and `--workers` worker processes), alternating for
`--rounds` rounds; every store round opens the store afresh, so block decoding is inside the timed loop
(opening it, which reads the index and builds the codec's tables, is timed apart and printed). Prints,
for each training length, the median images/s and the median (and range) of each round's ratio to the
in-memory run beside it: the first shuffled epoch decodes every block once (the cold case), later epochs
read decoded blocks, so a longer run spreads that one decode over more steps.

    .venv/bin/python benchmarks/data_loader.py [--datasets mnist fashion-mnist] [--codec auto]
        [--epochs 1 3] [--rounds 2] [--workers 0 2] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lepton.data.sources import load_dataset
from lepton.data.store import bits_per_pixel, open_store, pack_dataset, store_batches
from lepton.models.registry import ModelSpec
from lepton.train import TensorBatches, TrainConfig
from lepton.train.throughput import training_throughput


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    ap.add_argument("--codec", default="auto")
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 3], help="training lengths to measure, in epochs")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker processes to try")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    cfg = TrainConfig(batch_size=args.batch_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            data = load_dataset(name)
            path = Path(tmp) / f"{name}.lds"
            t0 = time.perf_counter()
            pack_dataset(data, path, image_codec=args.codec, splits=("train",))
            pack_s = time.perf_counter() - t0
            store = open_store(path)
            codec = store.split("train").fields["images"].codec.name
            spec = ModelSpec("lenet5", data.input_shape, data.num_classes)
            x, y = data.tensors("train")
            open_s: list[float] = []
            for epochs in args.epochs:
                steps = epochs * -(-len(x) // args.batch_size)
                results: dict[str, list[float]] = {"in-memory": [], **{f"store, {w} workers": [] for w in args.workers}}
                for r in range(args.rounds):
                    results["in-memory"].append(
                        training_throughput(spec, TensorBatches(x, y, args.batch_size, seed=r), steps, cfg)
                    )
                    for workers in args.workers:
                        t0 = time.perf_counter()
                        loader = store_batches(path, "train", args.batch_size, seed=r, workers=workers)
                        open_s.append(time.perf_counter() - t0)
                        results[f"store, {workers} workers"].append(training_throughput(spec, loader, steps, cfg))
                        del loader
                    print(
                        f"{name}, {epochs} epoch(s), round {r}: "
                        + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in results.items()),
                        flush=True,
                    )
                for feed, values in results.items():
                    # each round's ratio to the in-memory run beside it: the VM's speed drifts between rounds
                    ratios = [v / b for v, b in zip(values, results["in-memory"])]
                    ratio = statistics.median(ratios)
                    rows.append(
                        (
                            name,
                            codec,
                            f"{store.file_bytes:,}",
                            f"{bits_per_pixel(store):.3f}",
                            f"{pack_s:.0f}",
                            str(epochs),
                            feed,
                            f"{statistics.median(values):,.0f}",
                            f"{ratio:.2f}",
                            f"{min(ratios):.2f}-{max(ratios):.2f}",
                            "yes" if ratio >= 0.9 else "NO",
                        )
                    )
            print(
                f"{name}: opening the store (index, codec tables) took {1e3 * statistics.median(open_s):.0f} ms "
                "(median), outside the timed loop",
                flush=True,
            )
    head = (
        "dataset",
        "image codec",
        "store bytes",
        "bits/px",
        "pack s",
        "epochs",
        "fed from",
        "images/s",
        "x in-memory",
        "range",
        ">= 0.9x",
    )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(
        f"\nLeNet-5 SGD steps of {args.batch_size} images; images/s: median of {args.rounds} rounds; x in-memory: median "
        "(and range) of each round's ratio to the in-memory run beside it. The store's blocks are decoded inside the "
        "timed loop (fresh store each round, decoded on all cores at its first shuffled batch)."
    )


if __name__ == "__main__":
    main()
