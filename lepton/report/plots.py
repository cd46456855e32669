"""Matplotlib figures for the report; each function returns a Figure for :func:`lepton.report.html.figure`."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def training_curves(history: Sequence[dict]) -> Figure:
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    if history and history[0].get("test_loss") is not None:
        ax_loss.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", label="train")
    if history and history[0].get("test_accuracy") is not None:
        ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in history], "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def per_class_accuracy(accuracy: Sequence[float], classes: Sequence[str]) -> Figure:
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.bar(range(len(accuracy)), [100 * a for a in accuracy], color="#4c78a8")
    ax.set_xticks(range(len(classes)), classes, rotation=30 if max(map(len, classes)) > 3 else 0)
    low = min(accuracy) * 100 if accuracy else 0
    ax.set(ylabel="test accuracy (%)", ylim=(max(0, low - 2), 100), title="per-class test accuracy")
    for i, a in enumerate(accuracy):
        ax.text(i, 100 * a, f"{100 * a:.1f}", ha="center", va="bottom", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> Figure:
    import numpy as np

    m = np.asarray(confusion, dtype=float)
    off = m.copy()
    np.fill_diagonal(off, 0)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    im = ax.imshow(off, cmap="Reds")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="test errors (confusion, diagonal removed)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
