"""Lossless codecs on MNIST / Fashion-MNIST train images: bytes, bits/pixel, ratio to xz -9e, MB/s.

Every codec compresses the 60,000 x 28 x 28 train images in independent blocks of ``--block``
images (as the packed store does), one thread; the byte count is the sum of the encoded blocks plus,
for ``lepton-cm``, its model (fitted once to the whole array, as a store does; the fit time is printed
and not in the encode MB/s). A last row packs the images into a real store with ``lepton-cm`` and
counts every byte of the file (header, model, blocks, index, footer); the bytes the labels would add
(with the codec ``general`` picks, ``freq`` on MNIST, its table counted) and their entropy are printed below
the table.
The reference is ``xz -9e`` over the whole array as one stream (the issue's 7,820,300-byte bar
for MNIST). Decoded blocks are compared with the originals, so every row is a verified round trip.

    .venv/bin/python benchmarks/data_codecs.py                 # both datasets, all codecs
    .venv/bin/python benchmarks/data_codecs.py --limit 6000    # a quick look on a subset
"""

from __future__ import annotations

import argparse
import lzma
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from lepton.data import load_fashion_mnist, load_mnist
from lepton.data.codecs import CODECS, fit_codec, get_codec, measure_codec
from lepton.data.store import StoreWriter, open_store

LOADERS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}


@dataclass
class CodecRow:
    codec: str
    nbytes: int
    bits_per_pixel: float
    ratio_to_xz: float
    encode_mb_s: float
    decode_mb_s: float


def xz_reference(x: np.ndarray) -> int:
    """Bytes of ``xz -9e`` over the whole array as one stream."""
    return len(lzma.compress(x.tobytes(), preset=9 | lzma.PRESET_EXTREME))


def codec_rows(x: np.ndarray, block: int, codecs: tuple[str, ...] = CODECS) -> list[CodecRow]:
    """Encode and decode ``x`` block by block with each codec (one thread); verify the round trip."""
    xz = xz_reference(x)
    get_codec("lepton-cm").decode(get_codec("lepton-cm").encode(x[:1]), x.dtype, x[:1].shape)  # compile
    rows = []
    for name in codecs:
        t0 = time.perf_counter()
        codec = fit_codec(get_codec(name), x)
        model = len(getattr(codec, "model", b""))  # a learned model, stored once per field
        if model:
            print(f"  {name}: model fitted in {time.perf_counter() - t0:.1f} s, {model:,} bytes")
        m = measure_codec(codec, x, block_samples=block)  # raises FormatError if a block does not round-trip
        rows.append(CodecRow(name, m.bytes, m.bits_per_pixel, xz / m.bytes, m.encode_mb_s, m.decode_mb_s))
    rows.append(CodecRow("xz -9e (whole array)", xz, xz * 8 / x.size, 1.0, float("nan"), float("nan")))
    return rows


def store_row(x: np.ndarray, block: int, path: str) -> CodecRow:
    """Pack the images alone with lepton-cm as a store: every byte of the file (header, model, blocks,
    index, footer); the encode time includes fitting the model."""
    t0 = time.perf_counter()
    with StoreWriter(path, block_samples=block, threads=1) as w:
        w.add_split("train", {"images": x}, {"images": "lepton-cm"})
    t_enc = time.perf_counter() - t0
    store = open_store(path, cache_bytes=0)
    t0 = time.perf_counter()
    if not np.array_equal(store.read_field("train", "images"), x):
        raise SystemExit("store round trip FAILED")
    t_dec = time.perf_counter() - t0
    n = store.file_bytes
    return CodecRow(
        "store file (lepton-cm)", n, n * 8 / x.size, xz_reference(x) / n, x.nbytes / 1e6 / t_enc, x.nbytes / 1e6 / t_dec
    )


def label_bytes(y: np.ndarray) -> tuple[str, int, float]:
    """What the labels add to a store (the codec ``general`` picks, fitted to them as a store does, its table
    counted, in the same blocks), and their entropy in bytes (n times that of their empirical distribution)."""
    from lepton.data.store import resolve_codec

    codec = fit_codec(resolve_codec("general", y[:1000]), y)
    n = sum(len(codec.encode(y[i : i + 1000])) for i in range(0, len(y), 1000)) + len(getattr(codec, "model", b""))
    _, counts = np.unique(y, return_counts=True)
    return codec.name, n, float(-(counts * np.log2(counts / counts.sum())).sum() / 8)


def print_codec_table(dataset: str, x: np.ndarray, block: int, rows: list[CodecRow]) -> None:
    print(f"\n{dataset}: {x.shape[0]} train images, {x.size:,} pixels, blocks of {block} images")
    print(f"{'codec':22} {'bytes':>12} {'bits/px':>8} {'x vs xz':>8} {'enc MB/s':>9} {'dec MB/s':>9}")
    for r in rows:
        print(
            f"{r.codec:22} {r.nbytes:12,d} {r.bits_per_pixel:8.4f} {r.ratio_to_xz:8.3f} "
            f"{r.encode_mb_s:9.2f} {r.decode_mb_s:9.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    ap.add_argument("--block", type=int, default=1000, help="images per independently coded block")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N train images")
    ap.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    args = ap.parse_args()
    for dataset in args.datasets:
        data = LOADERS[dataset]()
        x, y = data.x_train[: args.limit], data.y_train[: args.limit]
        rows = codec_rows(x, args.block, tuple(args.codecs))
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(store_row(x, args.block, f"{tmp}/{dataset}.lds"))
        print_codec_table(dataset, x, args.block, rows)
        name, n, entropy = label_bytes(y)
        print(f"(the labels would add {n:,} bytes to the store with {name}; their entropy is {entropy:,.0f} bytes)")


if __name__ == "__main__":
    main()
