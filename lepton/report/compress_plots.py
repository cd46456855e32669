"""Figures of the compression section: sensitivity, sparsity, shared-weight histograms, accuracy vs size."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import nn


def sensitivity_curves(curves: dict[str, Sequence[tuple[float, float]]], baseline: float) -> Figure:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for layer, points in curves.items():
        ax.plot([100 * r for r, _ in points], [100 * a for _, a in points], "o-", label=layer, ms=3)
    ax.axhline(100 * baseline, color="gray", ls="--", lw=1, label="dense")
    ax.set(
        xlabel="weights pruned in this layer alone (%)",
        ylabel="accuracy (%)",
        title="pruning sensitivity (one layer at a time, no fine-tuning)",
    )
    lo = min([100 * a for pts in curves.values() for _, a in pts] + [100 * baseline])
    ax.set_ylim(max(lo - 1, 0), 100 * baseline + 0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def layer_sparsity(sparsity: dict[str, float]) -> Figure:
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    names = list(sparsity)
    kept = [100 * (1 - sparsity[n]) for n in names]
    ax.bar(names, kept, color="#4c78a8")
    for i, k in enumerate(kept):
        ax.text(i, k, f"{k:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="weights kept (%)", title="per-layer density after pruning", yscale="log")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def shared_weight_histograms(model: nn.Module) -> Figure:
    layers = [(n, m.weight.detach()) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 2.8), squeeze=False)
    for ax, (name, w) in zip(axes[0], layers):
        nz = w[w != 0].numpy()
        shared = np.unique(nz)
        ax.hist(nz, bins=80, color="#4c78a8")
        for v in shared if len(shared) <= 256 else []:
            ax.axvline(v, color="#e45756", lw=0.5, alpha=0.7)
        ax.set(title=f"{name}: {len(nz):,} kept, {len(shared)} values", xlabel="weight")
        ax.title.set_fontsize(9)
    axes[0][0].set_ylabel("count")
    fig.suptitle("nonzero weights; red lines: the shared values (codebook)", fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_vs_size(steps: Sequence[dict]) -> Figure:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = [s["bytes"] / 1024 for s in steps]
    ys = [100 * s["test_accuracy"] for s in steps]
    ax.plot(xs, ys, "o-", color="#4c78a8")
    for s, x, y in zip(steps, xs, ys):
        ax.annotate(f"{s['step']}\n{s['ratio']:.0f}x", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set(
        xscale="log",
        xlabel="size on disk (KiB, log)",
        ylabel="test accuracy (%)",
        title="accuracy against size, step by step",
    )
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def operating_points(points: Sequence[dict], written: dict | None = None) -> Figure:
    """Test error against bytes of a variational posterior's operating points (each from its decoded bytes), the
    points no other beats on validation error joined, and the file the chain wrote."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    xs = [p["bytes"] for p in points]
    ys = [100 * p["test_error"] for p in points]
    ax.scatter(xs, ys, s=14, color="#9ecae9", label="operating points (no fine-tuning)")
    front: list[dict] = []
    for p in sorted(points, key=lambda p: (p["bytes"], p["val_error"])):
        if not front or p["val_error"] < front[-1]["val_error"]:
            front.append(p)
    ax.plot(
        [p["bytes"] for p in front],
        [100 * p["test_error"] for p in front],
        "-",
        color="#4c78a8",
        lw=1.2,
        label="best by validation error",
    )
    if written is not None:
        ax.scatter(
            [written["bytes"]],
            [100 * written["test_error"]],
            s=60,
            marker="*",
            color="#e45756",
            zorder=3,
            label=f"written: {written['bytes']:,} B, {100 * written['test_error']:.2f}%",
        )
    ax.set(
        xscale="log",
        xlabel="file size (bytes, log; every byte counted)",
        ylabel="test error (%)",
        title="the variational frontier: bytes against error",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
