"""Per-model defaults for the compression chain, tuned on MNIST (see benchmarks/compress_lenet.py).

A model without a preset gets its per-layer sparsity from a sensitivity scan ('auto') and a uniform
bit width. :data:`RECIPES` holds tuned fine-tuning settings that replace the config's defaults for a
known model, but only for the keys a config leaves unset (an explicit value always wins), and only
when no layer is converted to tensor-train form (a different architecture).
"""

from __future__ import annotations

from typing import Any

from lepton.compress.config import CompressConfig

SPARSITY: dict[str, dict[str, float]] = {
    "lenet5": {"conv1": 0.4, "conv2": 0.9, "fc1": 0.985, "fc2": 0.9},
    "lenet-300-100": {"fc1": 0.95, "fc2": 0.92, "fc3": 0.7},
}
BITS: dict[str, dict[str, int]] = {
    "lenet5": {"conv1": 6, "conv2": 5, "fc1": 4, "fc2": 5},
    "lenet-300-100": {"fc1": 5, "fc2": 5, "fc3": 5},
}
DEFAULT_BITS = 5
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # Distilling from the dense MLP at T=4 cost LeNet-300-100 ~0.15 pp after pruning to 5% of fc1;
    # plain labels and a longer, hotter fine-tune recover it (benchmarks/compress_lenet.py, docs/compress.md).
    "lenet-300-100": {"prune": {"epochs": 16, "lr": 0.05}, "distill": {"enabled": False}},
}


def sparsity_for(model_name: str) -> dict[str, float] | None:
    return SPARSITY.get(model_name)


def bits_for(model_name: str) -> dict[str, int] | int:
    return BITS.get(model_name, DEFAULT_BITS)


def recipe_for(model_name: str, cfg: CompressConfig) -> tuple[CompressConfig, dict[str, Any]]:
    """``cfg`` with the model's recipe applied to the keys it leaves unset, and what changed
    as ``{"section.key": value}``."""
    applied: dict[str, Any] = {}
    update: dict[str, Any] = {}
    for section, values in RECIPES.get(model_name, {}).items():
        sub = getattr(cfg, section)
        unset = {k: v for k, v in values.items() if k not in sub.model_fields_set}
        if unset:
            update[section] = sub.model_copy(update=unset)
            applied.update({f"{section}.{k}": v for k, v in unset.items()})
    return (cfg.model_copy(update=update) if update else cfg), applied
