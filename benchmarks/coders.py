"""Entropy coders on Deep-Compression-like streams: our Huffman and ANS against zlib, LZMA and the entropy bound.

Streams come from LeNet-5's fc1 (500x800) with weights shaped like trained ones (Laplace), magnitude-pruned to
8% and shared to 32 values (linear bins, as k-means with linear init) or 256 values: the codebook indices of
the kept weights, the gaps between kept positions (also as the .lep file stores them: bucketed, with raw extra
bits for long gaps), and the dense index stream with zero as a symbol.
Sizes include everything a decoder needs (tables, alphabets); the entropy bound is the order-0 empirical
entropy of the stream (no table). zlib and LZMA get the symbols as the narrowest unsigned integers.

    .venv/bin/python benchmarks/coders.py [--keep 0.08] [--seed 0]
"""

from __future__ import annotations

import argparse
import lzma
import time
import zlib

import numpy as np

from lepton.compress.coding import decode_symbols, encode_symbols, entropy_bits
from lepton.compress.coding.bits import bucketize, pack_bits


def fc1_streams(keep: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.laplace(0.0, 0.03, size=500 * 800)
    kept = np.abs(w) > np.quantile(np.abs(w), 1 - keep)
    positions = np.flatnonzero(kept)
    streams = {}
    for bits in (5, 8):
        values = w[positions]
        edges = np.linspace(values.min(), values.max(), (1 << bits) + 1)[1:-1]
        streams[f"indices, {bits}-bit shared"] = np.searchsorted(edges, values)
    streams["gaps between kept"] = np.diff(positions, prepend=-1) - 1
    dense = np.zeros(w.size, dtype=np.int64)
    dense[positions] = streams["indices, 5-bit shared"] + 1
    streams["dense 5-bit indices + zero"] = dense
    return streams


def narrow_bytes(symbols: np.ndarray) -> bytes:
    dtype = next(d for d in (np.uint8, np.uint16, np.uint32, np.uint64) if symbols.max() <= np.iinfo(d).max)
    return symbols.astype(dtype).tobytes()


def measure(symbols: np.ndarray) -> list[tuple[str, int, float | None, float | None]]:
    """(method, bytes, encode ms, decode ms) for each method."""
    rows = []
    for method in ("huffman", "ans"):
        t0 = time.perf_counter()
        data = encode_symbols(symbols, method)
        t1 = time.perf_counter()
        if not np.array_equal(decode_symbols(data, len(symbols), method), symbols):
            raise RuntimeError(f"{method} did not round-trip")
        rows.append((method, len(data), 1e3 * (t1 - t0), 1e3 * (time.perf_counter() - t1)))
    raw = narrow_bytes(symbols)
    for method, compress, decompress in (
        ("zlib -9", lambda b: zlib.compress(b, 9), zlib.decompress),
        ("lzma -9e", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    ):
        t0 = time.perf_counter()
        data = compress(raw)
        t1 = time.perf_counter()
        decompress(data)
        rows.append((method, len(data), 1e3 * (t1 - t0), 1e3 * (time.perf_counter() - t1)))
    width = max(1, int(symbols.max()).bit_length())
    rows.append((f"fixed {width}-bit", (len(symbols) * width + 7) // 8, 0.0, 0.0))
    return rows


def bucketed(gaps: np.ndarray, method: str) -> int:
    """Bytes of the gaps as the .lep container stores them: bucket symbols + raw extra bits, best direct range."""
    sizes = []
    for direct_bits in range(1, 9):
        symbols, extra, widths = bucketize(gaps, direct_bits)
        sizes.append(len(encode_symbols(symbols, method)) + len(pack_bits(extra, widths)))
    return min(sizes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=float, default=0.08, help="fraction of fc1 weights kept by pruning")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(
        f"{'stream':<28} {'symbols':>8} {'distinct':>8} {'method':<18} {'bytes':>8} {'bits/sym':>9} "
        f"{'vs bound':>9} {'enc ms':>8} {'dec ms':>8}"
    )
    for name, symbols in fc1_streams(args.keep, args.seed).items():
        bound = entropy_bits(symbols)
        head = f"{name:<28} {len(symbols):>8} {len(np.unique(symbols)):>8}"
        print(f"{head} {'entropy bound':<18} {bound / 8:>8.0f} {bound / len(symbols):>9.3f}")
        rows = measure(symbols)
        if name.startswith("gaps"):
            rows += [(f"{m}, bucketed", bucketed(symbols, m), None, None) for m in ("huffman", "ans")]
        for method, size, enc, dec in rows:
            times = "" if enc is None else f" {enc:>8.1f} {dec:>8.1f}"
            print(
                f"{'':<46} {method:<18} {size:>8} {8 * size / len(symbols):>9.3f} {8 * size / bound - 1:>+9.1%}{times}"
            )


if __name__ == "__main__":
    main()
