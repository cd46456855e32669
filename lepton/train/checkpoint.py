"""Checkpoints: tensors in a safetensors file, everything else in a JSON sidecar. Never pickle.

``NAME.safetensors`` holds ``model.<param>`` and ``optim.<index>.<key>`` tensors. ``NAME.json`` holds
the format tag, the model spec (to rebuild the architecture), the SHA-256 of the tensor file
(checked before any tensor is read), the optimizer's and scheduler's scalar state, and training state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lepton.errors import FormatError
from lepton.models.registry import ModelSpec
from lepton.utils.io import atomic_path, atomic_write_text, sha256_file

FORMAT = "lepton-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    spec: ModelSpec
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    meta: dict[str, Any]

    def build_model(self, *, trust_code: bool = False) -> nn.Module:
        """The model with these weights; checked on the meta device first (:meth:`ModelSpec.load`). A sidecar
        naming a ``package.module:factory`` without a graph runs that code only with ``trust_code=True``."""
        return self.spec.load(self.model_state, trust_code=trust_code, what="the checkpoint")


def paths(path: str | Path) -> tuple[Path, Path]:
    """(tensor file, sidecar) for ``x.safetensors``, ``x.json`` or the stem ``x``."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = t
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(path: str | Path, model: nn.Module, spec: ModelSpec, *,
                    optimizer: torch.optim.Optimizer | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path``'s tensor file and sidecar atomically; returns the tensor file's path."""
    tensor_path, meta_path = paths(path)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, "model": spec.to_dict()}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _split_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    meta.update(extra or {})
    with atomic_path(tensor_path) as tmp:
        save_file(tensors, str(tmp))
    meta["sha256"] = sha256_file(tensor_path)
    atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True))
    return tensor_path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint; refuses a missing sidecar, a wrong format or a checksum mismatch."""
    tensor_path, meta_path = paths(path)
    for p in (tensor_path, meta_path):
        if not p.is_file():
            raise FormatError(f"checkpoint file {p} not found; a checkpoint is a .safetensors file with a "
                              ".json sidecar of the same name (written by `lepton train`).")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{meta_path}: not valid JSON ({e}).") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FormatError(f"{meta_path}: not a Lepton checkpoint sidecar (format tag {meta.get('format') if isinstance(meta, dict) else None!r}).")
    if meta.get("version") != VERSION:
        raise FormatError(f"{meta_path}: checkpoint version {meta.get('version')!r} is not supported "
                          f"(this Lepton reads version {VERSION}); upgrade Lepton.")
    digest = sha256_file(tensor_path)
    if digest != meta.get("sha256"):
        raise FormatError(f"{tensor_path}: SHA-256 {digest[:16]}… does not match the sidecar's "
                          f"{str(meta.get('sha256'))[:16]}…; the checkpoint is corrupted or was modified.")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FormatError(f"{tensor_path}: unreadable safetensors file ({e}).") from e
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = None
    if "optimizer" in meta:
        optim = _join_optimizer({k: v for k, v in tensors.items() if k.startswith("optim.")}, meta["optimizer"])
    return Checkpoint(ModelSpec.from_dict(meta["model"]), model_state, optim, meta)
