"""Peak memory of `lepton data pack` on an image folder: streamed, it stays bounded (bar: peak RSS <= 1/2 of
the dataset's raw size, for a folder of >= 500 MB raw).

Generates an image folder in a temporary directory (ROOT/train|test/<class>/*.png, RGB, `--size` pixels
square, random-ish but compressible content: a per-image gradient, a few flat rectangles and mild noise)
whose decoded pixels total `--megabytes` MB (1e6 bytes), then runs `lepton data pack ROOT --codec CODEC` in a
child process and reads the child's peak resident set size from `wait4`'s rusage (`ru_maxrss`). With
`--compare-whole` it also runs a child that decodes the folder whole (`load_image_folder`) and packs the
arrays (`pack_dataset`), the path every source other than an image folder takes. Prints one row per run.

    .venv/bin/python benchmarks/pack_memory.py [--megabytes 600] [--size 96] [--codec zstd]
        [--block-samples 1000] [--compare-whole]
    .venv/bin/python benchmarks/pack_memory.py --megabytes 20     # a smoke run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10
TEST_EVERY = 6  # one image in six goes to test/

WHOLE = """
import sys
from pathlib import Path
from lepton.data.folder import load_image_folder
from lepton.data.store import default_block_samples, pack_dataset
data = load_image_folder(Path(sys.argv[1]))
blocks = int(sys.argv[4]) or default_block_samples(data.x_train[:1].nbytes)
pack_dataset(data, sys.argv[2], image_codec=sys.argv[3], block_samples=blocks)
"""


def make_folder(root: Path, megabytes: float, size: int, seed: int = 0) -> tuple[int, int]:
    """Write the folder; returns (images, raw bytes of their decoded pixels)."""
    rng = np.random.default_rng(seed)
    per_image = 3 * size * size
    n = max(2 * CLASSES, round(megabytes * 1e6 / per_image))
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    for i in range(n):
        c = i % CLASSES
        split = "test" if (i // CLASSES) % TEST_EVERY == 0 else "train"
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.integers(0, 256, 3).astype(np.float32)
        img = (
            np.outer(ramp, ramp)[:, :, None] * colour + (1 - np.outer(ramp[::-1], ramp)[:, :, None]) * 40 * c / CLASSES
        )
        for _ in range(3):
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(4, size // 2, 2)
            img[y : y + h, x : x + w] = rng.integers(0, 256, 3)
        img += rng.normal(0, 3, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(folder / f"{i:07d}.png", compress_level=1)
    return n, n * per_image


def peak_rss(args: list[str]) -> tuple[int, float]:
    """Run ``args``; returns the child's peak RSS in bytes and its wall time."""
    t0 = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args[:6])}… failed ({child.returncode}): {err[-2000:]}")
    return usage.ru_maxrss * 1024, seconds  # Linux reports kilobytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megabytes", type=float, default=600.0, help="decoded size of the generated folder, MB")
    ap.add_argument("--size", type=int, default=96, help="image side in pixels (RGB)")
    ap.add_argument("--codec", default="zstd")
    ap.add_argument(
        "--block-samples", type=int, default=None, help="default: lepton data pack's (at most 8 MiB per block)"
    )
    ap.add_argument("--compare-whole", action="store_true", help="also pack after decoding the folder whole")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lepton-pack-memory-") as tmp:
        root = Path(tmp) / "images"
        t0 = time.perf_counter()
        n, raw = make_folder(root, args.megabytes, args.size)
        png = sum(p.stat().st_size for p in root.rglob("*.png"))
        print(
            f"folder: {n:,} RGB images of {args.size}x{args.size}, {raw / 1e6:,.1f} MB decoded, "
            f"{png / 1e6:,.1f} MB of PNG (made in {time.perf_counter() - t0:.0f} s)"
        )
        out = Path(tmp) / "streamed.lds"
        runs = {
            "streamed (lepton data pack)": [
                sys.executable,
                "-m",
                "lepton",
                "data",
                "pack",
                str(root),
                "--codec",
                args.codec,
                *(["--block-samples", str(args.block_samples)] if args.block_samples else []),
                "-o",
                str(out),
            ],
        }
        if args.compare_whole:
            runs["whole (load_image_folder + pack_dataset)"] = [
                sys.executable,
                "-c",
                WHOLE,
                str(root),
                str(Path(tmp) / "whole.lds"),
                args.codec,
                str(args.block_samples or 0),
            ]
        print(f"{'pack':<42} {'peak RSS MB':>12} {'RSS / raw':>10} {'bar <= 0.5':>11} {'store MB':>9} {'seconds':>8}")
        for name, cmd in runs.items():
            rss, seconds = peak_rss(cmd)
            target = out if "streamed" in name else Path(tmp) / "whole.lds"
            ratio = rss / raw
            print(
                f"{name:<42} {rss / 1e6:>12,.1f} {ratio:>10.3f} {'yes' if ratio <= 0.5 else 'no':>11} "
                f"{target.stat().st_size / 1e6:>9,.1f} {seconds:>8.1f}"
            )


if __name__ == "__main__":
    main()
