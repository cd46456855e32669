"""Open any model file Lepton writes — a checkpoint (``.safetensors`` + ``.json``) or a ``.lep`` — as a module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lepton.models.registry import ModelSpec


@dataclass
class LoadedModel:
    model: nn.Module
    spec: ModelSpec
    meta: dict[str, Any]
    kind: str  # "checkpoint" or "lep"


def load_model_file(path: str | Path) -> LoadedModel:
    """Verify and load ``path``; the returned model is in eval mode."""
    path = Path(path)
    if path.suffix == ".lep":
        from lepton.compress.container import load_lep

        lep = load_lep(path)
        return LoadedModel(lep.build_model().eval(), lep.spec, lep.metadata, "lep")
    from lepton.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    return LoadedModel(ckpt.build_model().eval(), ckpt.spec, ckpt.meta, "checkpoint")
