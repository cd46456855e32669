"""Deep-Compression chain on MNIST: our `.lep` files beside the published Deep Compression rows.

For each model: train the dense baseline (the default recipe), run `lepton.compress` with the default
config (prune → share → code), measure test error on the model decoded from the file, and time batch-1
inference (1 thread) of the dense, the unstructured-pruned and a structured-pruned (channels removed,
fine-tuned) model.

    .venv/bin/python benchmarks/compress_lenet.py [--models lenet5 lenet-300-100] [--out runs/bench-compress]
    .venv/bin/python benchmarks/compress_lenet.py --models lenet-300-100 --tt fc1=20   # + a tensor-train fc1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lepton.artifacts import load_model_file
from lepton.compress.chain import compress_model
from lepton.compress.config import CompressConfig
from lepton.compress.structured import measure_latency, prune_channels
from lepton.data import load_mnist
from lepton.models import count_macs, count_params
from lepton.train import TensorBatches, TrainConfig, evaluate, fit
from lepton.train.job import train_model

DEEP_COMPRESSION = {  # Han, Mao, Dally, ICLR 2016, Table 1
    "lenet-300-100": {"params": "267K", "error": "1.64% → 1.58%", "size": "1070 KB → 27 KB", "ratio": "40x"},
    "lenet5": {"params": "431K", "error": "0.80% → 0.74%", "size": "1720 KB → 44 KB", "ratio": "39x"},
}
STRUCTURED_RATIO = {"lenet5": 0.5, "lenet-300-100": 0.5}


def bench(name: str, out: Path, train_cfg: TrainConfig, cfg: CompressConfig) -> dict:
    data = load_mnist()
    t0 = time.perf_counter()
    job = train_model(data, name, train_cfg, progress=False)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = compress_model(job.model, job.spec, data, cfg, train_cfg, out / f"{name}.lep", progress=False)
    compress_s = time.perf_counter() - t0
    decoded = load_model_file(out / f"{name}.lep").model

    x_test, y_test = data.tensors("test")
    shape = job.spec.input_shape
    structured = prune_channels(job.model, torch.zeros(1, *shape), STRUCTURED_RATIO[name])
    x_train, y_train = data.tensors("train")
    fit(
        structured,
        TensorBatches(x_train, y_train, 64, seed=0),
        train_cfg.model_copy(update={"epochs": 2, "lr": 0.01}),
        progress=False,
    )
    latency = {
        label: measure_latency(m, shape, batch=1, threads=1)["p50_ms"]
        for label, m in (("dense", job.model), ("pruned", decoded), ("structured", structured))
    }
    return {
        "model": name,
        "params": report.params,
        "kept": report.kept,
        "baseline_error": 1 - report.baseline_test_accuracy,
        "error": 1 - report.test_accuracy,
        "dense_bytes": report.dense_bytes,
        "file_bytes": report.file_bytes,
        "ratio": report.ratio,
        "huffman_bytes": report.huffman_bytes,
        "ans_bytes": report.ans_bytes,
        "bit_exact": report.bit_exact,
        "structured": {
            "ratio": STRUCTURED_RATIO[name],
            "params": count_params(structured),
            "macs": count_macs(structured, shape),
            "dense_macs": count_macs(job.model, shape),
            "error": 1 - evaluate(structured, x_test, y_test).accuracy,
        },
        "latency_p50_ms": latency,
        "train_seconds": train_s,
        "compress_seconds": compress_s,
        "steps": [s.model_dump() for s in report.steps],
        "layers": report.layers,
        "tt": report.tt,
        "recipe": report.recipe,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["lenet-300-100", "lenet5"])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-compress"))
    ap.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    ap.add_argument(
        "--tt",
        nargs="+",
        default=[],
        metavar="LAYER=RATIO",
        help="also replace these linear layers by tensor-train layers of at least RATIO fewer parameters",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train_cfg = TrainConfig(epochs=args.epochs)
    cfg = CompressConfig()
    if args.tt:
        layers = {k: float(v) for k, _, v in (a.partition("=") for a in args.tt)}
        cfg = CompressConfig(tt={"enabled": True, "layers": layers})
    rows = [bench(m, args.out, train_cfg, cfg) for m in args.models]
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))

    print(
        f"\nMNIST, torch {torch.__version__}, {torch.get_num_threads()} threads; sizes count every byte of the file\n"
    )
    print("| model | source | params kept | error dense → compressed | size | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        dc = DEEP_COMPRESSION[r["model"]]
        print(f"| {r['model']} | Deep Compression | — | {dc['error']} | {dc['size']} | {dc['ratio']} |")
        tt = "".join(f" + TT {k} ({v['ratio']:.0f}x)" for k, v in r["tt"].items())
        print(
            f"| {r['model']} | Lepton (.lep, ANS){tt} | {r['kept']:,} / {r['params']:,} "
            f"({100 * r['kept'] / r['params']:.2f}%) | {100 * r['baseline_error']:.2f}% → {100 * r['error']:.2f}% | "
            f"{r['dense_bytes'] / 1000:,.0f} KB → {r['file_bytes'] / 1000:.1f} KB | **{r['ratio']:.0f}x** |"
        )
    print("\n| model | Huffman bytes | ANS bytes | decoded bit-exact |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['huffman_bytes']:,} | {r['ans_bytes']:,} | {r['bit_exact']} |")
    print("\nBatch-1 inference, 1 thread, p50 (the unstructured-pruned model runs dense kernels on zeros):\n")
    print(
        "| model | dense ms | pruned (unstructured) ms | structured ms | structured params / MACs | structured error |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        s, lat = r["structured"], r["latency_p50_ms"]
        print(
            f"| {r['model']} | {lat['dense']:.3f} | {lat['pruned']:.3f} | {lat['structured']:.3f} "
            f"({lat['dense'] / lat['structured']:.2f}x) | {s['params']:,} / {s['macs']:,} "
            f"(dense MACs {s['dense_macs']:,}) | {100 * s['error']:.2f}% |"
        )


if __name__ == "__main__":
    main()
