"""A compact (version 4) `.lep` file vs the default writer's, on the same float16-rounded weights.

Takes the state dict of a `.lep` file, or by default a synthetic sparse shared LeNet-5 (Laplace weights,
magnitude-pruned to ``--keep``, each layer's survivors shared to ``--levels`` values), rounds its weights and
biases with ``round_to_half``, and encodes it with the default writer and with ``compact=True``. Prints the
header bytes (preamble + deflated JSON), the total bytes and each tensor's encoding and bytes in both files.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lep_compact.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lep_compact.py --lep runs/variational/model.lep
"""

from __future__ import annotations

import argparse

import torch

from lepton.compress.container import PREAMBLE, decode_model, encode_model, inspect_lep, load_lep
from lepton.compress.share import round_to_half
from lepton.models import build_model
from lepton.models.registry import ModelSpec


def sparse_shared_lenet5(keep: float, levels: int, seed: int) -> dict[str, torch.Tensor]:
    """LeNet-5 weights shaped like trained ones, pruned to ``keep`` and shared to ``levels`` values a layer."""
    torch.manual_seed(seed)
    state = build_model("lenet5").state_dict()
    for name, w in state.items():
        if name.endswith("weight"):
            w = torch.distributions.Laplace(0.0, w.abs().mean().item()).sample(w.shape)
            mask = w.abs() > w.abs().flatten().kthvalue(int((1 - keep) * w.numel())).values
            kept = w[mask]
            bins = torch.bucketize(kept, torch.linspace(kept.min().item(), kept.max().item(), levels + 1)[1:-1])
            means = torch.zeros(levels).index_add_(0, bins, kept) / torch.bincount(bins, minlength=levels).clamp(min=1)
            state[name] = torch.zeros_like(w).masked_scatter_(mask, means[bins])
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lep", help="a .lep file (default: a synthetic sparse shared LeNet-5)")
    parser.add_argument("--keep", type=float, default=0.004)
    parser.add_argument("--levels", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.lep:
        model = load_lep(args.lep)
        spec, state, metadata = model.spec, dict(model.state_dict), model.metadata
    else:
        spec, state, metadata = ModelSpec("lenet5"), sparse_shared_lenet5(args.keep, args.levels, args.seed), {}
    rounding = round_to_half(state)
    print(
        f"round_to_half: {rounding.changed} of {rounding.elements} values changed, at most {rounding.max_abs_change:.3g}"
    )
    files = {
        "default": encode_model(spec, state, metadata=metadata),
        "compact": encode_model(spec, state, metadata=metadata, compact=True),
    }
    for data in files.values():  # both decode to exactly the rounded weights
        out = decode_model(data).state_dict
        assert all(torch.equal(out[k].view(torch.uint8), v.contiguous().view(torch.uint8)) for k, v in state.items())
    rows = {label: inspect_lep(data) for label, data in files.items()}
    print(f"{'tensor':16s} {'default':>22s} {'B':>6s} {'compact':>22s} {'B':>6s}")
    for old, new in zip(rows["default"], rows["compact"], strict=True):
        print(f"{old['tensor']:16s} {old['encoding']:>22s} {old['bytes']:6d} {new['encoding']:>22s} {new['bytes']:6d}")
    for label, data in files.items():
        print(
            f"{label:8s} version {PREAMBLE.unpack_from(data)[1]}: header {rows[label][-1]['bytes']} B, total {len(data)} B"
        )


if __name__ == "__main__":
    main()
