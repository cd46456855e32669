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


def load_model_file(path: str | Path, *, trust_code: bool = False) -> LoadedModel:
    """Verify and load ``path``; the returned model is in eval mode.

    No code named by the file runs: the architecture comes from the registry or from the file's graph. A file
    that only names a ``package.module:factory`` loads with ``trust_code=True`` alone."""
    path = Path(path)
    if path.suffix == ".lep":
        from lepton.compress.container import load_lep

        lep = load_lep(path)
        return LoadedModel(lep.build_model(trust_code=trust_code).eval(), lep.spec, lep.metadata, "lep")
    from lepton.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    return LoadedModel(ckpt.build_model(trust_code=trust_code).eval(), ckpt.spec, ckpt.meta, "checkpoint")
