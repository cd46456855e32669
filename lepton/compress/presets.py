"""Per-model defaults for the compression chain, tuned on MNIST (see benchmarks/compress_lenet.py).

A model without a preset gets its per-layer sparsity from a sensitivity scan ('auto') and a uniform
bit width.
"""

from __future__ import annotations

SPARSITY: dict[str, dict[str, float]] = {
    "lenet5": {"conv1": 0.4, "conv2": 0.9, "fc1": 0.985, "fc2": 0.9},
    "lenet-300-100": {"fc1": 0.95, "fc2": 0.92, "fc3": 0.7},
}
BITS: dict[str, dict[str, int]] = {
    "lenet5": {"conv1": 6, "conv2": 5, "fc1": 4, "fc2": 5},
    "lenet-300-100": {"fc1": 5, "fc2": 5, "fc3": 5},
}
DEFAULT_BITS = 5


def sparsity_for(model_name: str) -> dict[str, float] | None:
    return SPARSITY.get(model_name)


def bits_for(model_name: str) -> dict[str, int] | int:
    return BITS.get(model_name, DEFAULT_BITS)
