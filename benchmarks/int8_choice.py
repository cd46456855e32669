"""fp32, all-int8 and int8 with the profiler's slow layers kept fp32, on this CPU: p50 at batch 1 on one thread
(interleaved rounds), test accuracy, and the per-layer kernel times that picked the layers — the README's
"int8 is never deployed slower than fp32" table.

    .venv/bin/python benchmarks/int8_choice.py --model runs/zoo/resnet20-fashion-mnist/model.safetensors \
        [--data fashion-mnist] [--rounds 9] [--iterations 1000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from lepton.artifacts import load_model_file, trained_dataset
from lepton.data.sources import load_dataset
from lepton.edge.bench import onnx_accuracy
from lepton.edge.export import export_onnx
from lepton.edge.int8plan import choose_deploy, interleaved_p50, slow_int8_nodes, spread
from lepton.edge.quantize import QuantizeConfig, calibration_sample, quantize_onnx


def isa() -> str:
    """The SIMD / int8 dot-product flags ``lscpu`` lists (what decides int8's speed)."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    flags = re.search(r"^Flags:\s*(.*)$", out, re.M)
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
    model = re.search(r"^Model name:\s*(.*)$", out, re.M)
    have = [f for f in wanted if flags and f in flags.group(1).split()]
    return f"{model.group(1).strip() if model else 'unknown CPU'}; {', '.join(have) or 'no AVX2'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--calibration", type=int, default=1024)
    args = ap.parse_args()
    loaded = load_model_file(args.model)
    ds = load_dataset(args.data or trained_dataset(loaded.meta, args.model) or "mnist")
    x, y = (t.numpy() for t in ds.tensors("test"))
    cal = calibration_sample(ds.tensors("train")[0].numpy(), args.calibration)
    with tempfile.TemporaryDirectory(prefix="lepton-int8-") as tmp:
        f32, f8, mix = Path(tmp) / "m.onnx", Path(tmp) / "m8.onnx", Path(tmp) / "mixed.onnx"
        export_onnx(loaded.model, f32, input_shape=loaded.spec.input_shape)
        quantize_onnx(f32, f8, cal, QuantizeConfig(calibration_images=args.calibration))
        layers, slow = slow_int8_nodes(f32, f8, x[:1], runs=200)
        files = [f32, f8]
        if slow:
            quantize_onnx(f32, mix, cal, QuantizeConfig(calibration_images=args.calibration, nodes_to_exclude=slow))
            files.append(mix)
        p50s = interleaved_p50(files, x[:1], iterations=args.iterations, rounds=args.rounds)
        accs = [onnx_accuracy(f, x, y) for f in files]
    print(f"CPU: {isa()}")
    print("\n| layer | op | fp32 µs | int8 µs |\n|---|---|---|---|")
    for r in layers:
        print(f"| {r.node} | {r.op_type} | {r.fp32_us:.1f} | {r.int8_us:.1f} |")
    names = ["fp32", "all int8", f"int8, fp32 kept: {', '.join(slow)}"]
    print(f"\n| file | p50 ms (median of {args.rounds}) | noise | test accuracy |\n|---|---|---|---|")
    for name, p, a in zip(names, p50s, accs):
        print(f"| {name} | {np.median(p):.4f} | {spread([p]):.1%} | {100 * a:.2f}% |")
    c = choose_deploy(float(np.median(p50s[0])), float(np.median(p50s[1])), accs[0], accs[1], noise=spread(p50s[:2]))
    print(f"\nall-int8 vs fp32: faster {c.faster}, deploy {c.deploy}: {c.reason}")


if __name__ == "__main__":
    main()
