"""Figures of the quantum section: the hybrid model's accuracy beside the classical baselines."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def accuracy_bars(results: Sequence[dict]) -> Figure:
    """One bar per model (``{"model", "params", "test_accuracy"}``), labelled with accuracy and parameters."""
    fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.55 * len(results)))
    names = [r["model"] for r in results][::-1]
    accs = [100 * r["test_accuracy"] for r in results][::-1]
    colors = ["#7b3294" if "qubit" in n else "#888888" for n in names]
    bars = ax.barh(names, accs, color=colors)
    for bar, r in zip(bars, results[::-1]):
        ax.text(
            bar.get_width() - 0.5,
            bar.get_y() + bar.get_height() / 2,
            f"{100 * r['test_accuracy']:.2f}%  ({r['params']:,} params)",
            ha="right",
            va="center",
            color="white",
            fontsize=8,
        )
    ax.set_xlim(max(min(accs) - 10, 0), 100)
    ax.set(xlabel="test accuracy (%)", title="hybrid quantum model vs classical baselines, same features")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
