"""ResNet-20 split between edge and cloud: the planner lists only cuts where one tensor crosses (residual blocks
whole), and the real two-process split (int8 payload) agrees with the whole model's predictions on the test set.

Trains ResNet-20 briefly (the checkpoint is cached under the Lepton cache), prints the plan (cut, payload bytes
per encoding, predicted total ms for the network below), runs the best cut at batch 1 for latency, then runs the
real split at every valid cut on the whole test set (int8 on the wire, each channel of each image quantized on its own, requests
of --batch images) and prints the agreement per cut.

    .venv/bin/python benchmarks/split_zoo.py --dataset digits --epochs 10
    .venv/bin/python benchmarks/split_zoo.py --dataset mnist --epochs 1 --subset 10000
    .venv/bin/python benchmarks/split_zoo.py --dataset fashion-mnist --checkpoint runs/zoo/resnet20-fashion-mnist/model.safetensors
"""

from __future__ import annotations

import argparse
import time

import torch

from lepton.artifacts import load_model_file
from lepton.data import load_dataset
from lepton.edge.cuts import layer_chain
from lepton.edge.split import NetworkProfile, plan_split, profile_layers
from lepton.edge.splitrun import run_split
from lepton.models import ModelSpec
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, seed_everything
from lepton.train.checkpoint import paths, save_checkpoint
from lepton.utils.paths import cache_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits", help="digits, mnist or fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs (the checkpoint is cached)")
    ap.add_argument("--subset", type=int, default=0, help="train on the first N training images (0: all)")
    ap.add_argument(
        "--checkpoint", default=None, help="a trained ResNet-20 checkpoint (or .lep) to split instead of training one"
    )
    ap.add_argument("--batch", type=int, default=250, help="images per request in the agreement runs")
    ap.add_argument("--latency-requests", type=int, default=100, help="batch-1 requests at the best cut")
    ap.add_argument("--bandwidth", default="10Mbit", help="link rate the plan assumes")
    ap.add_argument("--rtt-ms", type=float, default=20.0, help="round trip the plan assumes")
    ap.add_argument("--edge-slowdown", type=float, default=8.0, help="how much slower the edge is than this host")
    args = ap.parse_args()

    seed_everything(0, threads=1)
    data = load_dataset(args.dataset)
    (x, y), (xt, yt) = data.tensors("train"), data.tensors("test")
    if args.subset:
        x, y = x[: args.subset], y[: args.subset]
    spec = ModelSpec("resnet20", data.input_shape, data.num_classes)
    ckpt = cache_dir() / "benchmarks" / f"split_zoo-resnet20-{args.dataset}-e{args.epochs}-n{len(x)}"
    if args.checkpoint:
        model, origin = load_model_file(args.checkpoint).model, f"read from {args.checkpoint}"
    elif paths(ckpt)[0].exists():
        model, origin = load_model_file(paths(ckpt)[0]).model, f"cached {paths(ckpt)[0]}"
    else:
        model = spec.build()
        start = time.perf_counter()
        cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05, threads=1)
        fit(model, TensorBatches(x, y, 64, seed=0), cfg, progress=False)
        origin = f"trained here in {time.perf_counter() - start:.0f} s"
        save_checkpoint(ckpt, model.eval(), spec)
    model.eval()
    acc = evaluate(model, xt, yt, num_classes=data.num_classes).accuracy
    print(f"ResNet-20 on {args.dataset}: {len(x)} training images, {args.epochs} epoch(s), {origin}")
    print(f"whole-model test accuracy {acc:.4f} on {len(xt)} images\n")

    images = xt.numpy()
    net = NetworkProfile(
        bandwidth_bps=args.bandwidth, rtt_ms=args.rtt_ms, edge_slowdown=args.edge_slowdown, encoding="int8"
    )
    profile = profile_layers(model, images[:8], warmup=5, iterations=50)
    plan = plan_split(profile, net)
    chain = layer_chain(model, torch.from_numpy(images[:1]))
    print(
        f"plan ({len(chain)} segments, {len(plan.rows)} valid cuts; {args.bandwidth}, {args.rtt_ms} ms RTT, "
        f"edge {args.edge_slowdown}x slower):"
    )
    print(f"{'cut':>4}  {'after':<20} {'fp32 B':>9} {'int8 B':>9} {'int8+zstd B':>12} {'predicted ms':>13}")
    for r in plan.rows:
        sent = profile.input_bytes if r.cut == 0 else profile.layers[r.cut - 1].out_bytes
        edge_only = r.cut == len(plan.rows) - 1
        fp32, int8, zstd = (0.0, 0.0, 0.0) if edge_only else (sent["fp32"], sent["int8"], sent["int8+zstd"])
        mark = "  <- best" if r.cut == plan.best_cut else ""
        print(f"{r.cut:>4}  {r.after:<20} {fp32:>9.0f} {int8:>9.0f} {zstd:>12.0f} {r.total_ms:>13.3f}{mark}")

    path = args.checkpoint or paths(ckpt)[0]
    lat = run_split(path, plan.best_cut, images[: args.latency_requests], encoding="int8")
    print(
        f"\nbest cut {plan.best_cut} (after {plan.best_after}), batch 1, {lat.requests} requests over loopback: "
        f"median {lat.total_ms:.2f} ms (edge {lat.edge_ms:.2f}, transfer {lat.transfer_ms:.2f}, "
        f"cloud {lat.cloud_ms:.2f}), {lat.payload_bytes:.0f} B, agreement {lat.agreement:.4f}\n"
    )
    print(f"real split at every cut, int8 payload, all {len(images)} test images ({args.batch} per request):")
    print(f"{'cut':>4}  {'after':<20} {'agreement':>10} {'differ':>7} {'seconds':>8}")
    worst = 1.0
    for r in plan.rows:
        start = time.perf_counter()
        run = run_split(path, r.cut, images, encoding="int8", batch=args.batch, warmup=0)
        differ = round((1 - run.agreement) * len(images))
        worst = min(worst, run.agreement)
        print(f"{r.cut:>4}  {run.after:<20} {run.agreement:>10.4%} {differ:>7} {time.perf_counter() - start:>8.1f}")
    print(f"\nlowest agreement over the {len(plan.rows)} cuts: {worst:.4%} (bar: 99.9%)")


if __name__ == "__main__":
    main()
