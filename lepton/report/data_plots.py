"""Figures of the data section: bits per pixel per codec, and the lossy reduction's size against accuracy."""

from __future__ import annotations

from matplotlib.figure import Figure

from lepton.report.html import plt


def codec_sizes(rows: list[dict]) -> Figure:
    """Bits per pixel of each codec (``{"codec", "bits_per_pixel"}`` rows), each bar labelled."""
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.bar([r["codec"] for r in rows], [r["bits_per_pixel"] for r in rows], color="#4c78a8")
    ax.bar_label(bars, fmt="%.3f")
    ax.set_ylabel("bits / pixel")
    ax.set_title("Size per codec")
    return fig


def lossy_curve(rows: list[dict]) -> Figure:
    """Test accuracy against store bytes (log scale), one labelled point per reduced dataset."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter([r["bytes"] for r in rows], [100 * r["test_accuracy"] for r in rows], color="#e45756")
    for r in rows:
        ax.annotate(
            r["data"], (r["bytes"], 100 * r["test_accuracy"]), fontsize=8, xytext=(4, 2), textcoords="offset points"
        )
    ax.set_xscale("log")
    ax.set_xlabel("store bytes (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Lossy reduction: size against accuracy")
    return fig
