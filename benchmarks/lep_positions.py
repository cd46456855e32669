"""Kept positions as gaps vs as a context-coded mask, on the same weights: per-layer bytes and whole files.

Reads a `.lep` file (e.g. the OUT/model.lep of `lepton run --quick`), decodes it, and re-encodes its state
dict twice: gaps only (`masks=False`, a version-2 file) and with masks allowed (the default, version 3 when
a mask wins). Per layer it prints the bytes of the best gap streams and of the mask stream, and which one
the writer kept; then the two files' bytes and their ratio against the dense fp32 weights.

    OMP_NUM_THREADS=1 .venv/bin/python -m lepton run --quick -o runs/quick
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lep_positions.py runs/quick/model.lep
"""

from __future__ import annotations

import argparse

import numpy as np

from lepton.compress.coding.mask import encode_mask, mask_view
from lepton.compress.container import _bits, _gap_streams, encode_model, inspect_lep, load_lep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lep", help="a .lep file")
    parser.add_argument("--coder", default="ans", choices=("ans", "huffman"))
    args = parser.parse_args()
    model = load_lep(args.lep)
    after = encode_model(model.spec, model.state_dict, coder=args.coder, metadata=model.metadata)
    before = encode_model(model.spec, model.state_dict, coder=args.coder, metadata=model.metadata, masks=False)
    chosen = {r["tensor"]: r["encoding"] for r in inspect_lep(after)}
    dense = sum(4 * t.numel() for t in model.state_dict.values())
    print(
        f"{'tensor':16s} {'shape':16s} {'kept':>7s} {'empty rows/cols':>15s} {'gaps B':>7s} {'mask B':>7s}  written as"
    )
    gap_total = best_total = 0
    for name, t in model.state_dict.items():
        _, bits = _bits(name, t)
        nonzero = bits != 0
        if nonzero.all() or not nonzero.size:
            continue
        where = np.flatnonzero(nonzero)
        gaps = sum(len(s[3]) for s in _gap_streams(np.diff(where, prepend=-1) - 1, args.coder)[1])
        view = nonzero.reshape(mask_view(list(t.shape)))
        mask = len(encode_mask(view))
        empty = f"{int((~view.any(1)).sum())}/{int((~view.any(0)).sum())}"
        print(f"{name:16s} {str(list(t.shape)):16s} {len(where):7d} {empty:>15s} {gaps:7d} {mask:7d}  {chosen[name]}")
        gap_total += gaps
        best_total += min(gaps, mask) if chosen[name] not in ("raw", "dense") else 0
    print(f"positions of the sparse tensors: gaps {gap_total} B, best of gaps and mask {best_total} B")
    for label, data in (("gaps only (v2)", before), ("masks allowed", after)):
        print(f"{label:15s} file {len(data):7d} B  {dense / len(data):6.1f}x vs dense fp32 {dense} B")


if __name__ == "__main__":
    main()
