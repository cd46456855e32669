"""Open any model file Lepton writes — a checkpoint (``.safetensors`` + ``.json``) or a ``.lep`` — as a module.

It dispatches to both formats' readers (``lepton.train.checkpoint`` and ``lepton.compress.container``), so
it sits on the layer of ``compress`` (above ``train``), below ``edge``, ``pipeline`` and ``cli``, which use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lepton.compress.container import load_lep
from lepton.errors import FormatError
from lepton.models.registry import ModelSpec
from lepton.train.checkpoint import load_checkpoint


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
        lep = load_lep(path)
        return LoadedModel(lep.build_model(trust_code=trust_code).eval(), lep.spec, lep.metadata, "lep")
    ckpt = load_checkpoint(path)
    return LoadedModel(ckpt.build_model(trust_code=trust_code).eval(), ckpt.spec, ckpt.meta, "checkpoint")


def trained_dataset(meta: dict[str, Any], where: str | Path) -> str | None:
    """The name of the dataset a model file's free metadata says it was trained on (``dataset.name``, or a
    plain ``dataset_name``), or None when it says nothing. A wrong-typed entry is a :class:`FormatError` naming
    the file, rather than a silent guess: the caller only asks when no ``--data`` was given, which is the fix."""
    dataset, name = meta.get("dataset"), meta.get("dataset_name")
    if dataset is not None:
        if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), (str, type(None))):
            shown = repr(dataset if not isinstance(dataset, dict) else dataset.get("name"))
            raise FormatError(
                f"{where}: the metadata's 'dataset' is {shown[:60]}, expected an object whose 'name' "
                "is a string; pass --data NAME to choose the dataset."
            )
        name = dataset.get("name") or name
    if name is not None and not isinstance(name, str):
        raise FormatError(
            f"{where}: the metadata's 'dataset_name' is {name!r:.60}, expected a string; pass "
            "--data NAME to choose the dataset."
        )
    return name or None
