"""Figures of the edge section: the split planner's predicted latency per cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lepton.edge.split import SplitPlan
from lepton.errors import ConfigError
from lepton.utils.io import atomic_path


def plan_figure(plan: SplitPlan) -> Figure:
    """Stacked bars (edge, transfer, cloud) of the predicted latency per cut, the best cut marked."""
    labels = [r.after for r in plan.rows]
    edge = np.array([r.edge_ms for r in plan.rows])
    link = np.array([r.transfer_ms for r in plan.rows])
    cloud = np.array([r.cloud_ms for r in plan.rows])
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    ax.bar(labels, edge, label="edge")
    ax.bar(labels, link, bottom=edge, label="transfer")
    ax.bar(labels, cloud, bottom=edge + link, label="cloud")
    ax.axvline(plan.best_cut, color="k", ls="--", lw=1)
    ax.set_ylabel("predicted latency (ms)")
    ax.set_xlabel("cut after")
    ax.set_title(f"best cut after {plan.best_after}: {plan.best_ms:.2f} ms")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_plan(plan: SplitPlan, path: str | Path) -> None:
    """Write :func:`plan_figure` to ``path`` (.png or .svg), atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise ConfigError(f"plot path {str(path)!r} must end in .png, .svg or .pdf.")
    with atomic_path(path) as tmp:
        plan_figure(plan).savefig(tmp, format=fmt)
