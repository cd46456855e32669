"""Checkpoints: tensors in a safetensors file, everything else in a JSON sidecar. Never pickle.

``NAME.safetensors`` holds ``model.<param>`` and ``optim.<index>.<key>`` tensors. ``NAME.json`` holds
the format tag, the model spec (to rebuild the architecture), the SHA-256 of the tensor file
(checked before any tensor is read), the optimizer's and scheduler's scalar state, and training state.
Every tensor is written from a CPU copy, so a model trained on a GPU saves the same file as on the CPU
and loads on a machine without one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lepton.errors import ConfigError, FormatError
from lepton.models.registry import ModelSpec
from lepton.utils import strict_json
from lepton.utils.device import cpu_tensors
from lepton.utils.io import atomic_path, atomic_write_text, sha256_file
from lepton.utils.strict_json import expect_dict, expect_list

FORMAT = "lepton-checkpoint"
VERSION = 2  # 2: the model spec may carry its architecture as data (docs/model-spec.md)
READABLE_VERSIONS = (1, 2)


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

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Load the saved optimizer state into ``optimizer`` (built for this model); a state that does not
        fit it (other parameter groups, sizes or keys) is a FormatError, not torch's exception."""
        if self.optimizer_state is None:
            return
        try:
            optimizer.load_state_dict(self.optimizer_state)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            raise FormatError(
                f"the checkpoint's optimizer state does not fit a {type(optimizer).__name__} over "
                f"this model ({type(e).__name__}: {' '.join(str(e).split())[:200]}); resume with the "
                "optimizer it was trained with, or start without --resume."
            ) from None


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
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return cpu_tensors(tensors), {"param_groups": state["param_groups"], "scalars": scalars}


_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")  # a parameter's index in the optimizer, as str(int) writes it
_OPTIM_TENSOR = re.compile(r"optim\.(0|[1-9][0-9]{0,8})\.(.+)", re.DOTALL)


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: Path) -> dict[str, Any]:
    """The optimizer's state dict from its ``optim.<index>.<key>`` tensors and the sidecar's checked section."""
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        match = _OPTIM_TENSOR.fullmatch(name)
        if match is None:
            raise FormatError(
                f"{where}: optimizer tensor {name[:80]!r} is not named optim.<index>.<key> (index a "
                "non-negative integer); the checkpoint is forged or corrupted."
            )
        state.setdefault(int(match[1]), {})[match[2]] = t
    for idx, extra in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(extra)
    return {"state": state, "param_groups": meta["param_groups"]}


def _check_optimizer(section: Any, where: Path) -> dict[str, Any]:
    """The sidecar's ``optimizer`` section if it has the shape :func:`_split_optimizer` writes."""
    section = expect_dict(section, f"{where}: the key 'optimizer'")
    if set(section) - {"param_groups", "scalars"} or "param_groups" not in section:
        raise FormatError(
            f"{where}: the key 'optimizer' has keys {sorted(section)[:8]}, expected param_groups and "
            "scalars; the checkpoint is forged or corrupted."
        )
    groups = expect_list(section["param_groups"], f"{where}: optimizer.param_groups")
    for i, group in enumerate(groups):
        params = expect_dict(group, f"{where}: optimizer.param_groups[{i}]").get("params")
        if not isinstance(params, list) or not all(type(p) is int and p >= 0 for p in params):
            raise FormatError(
                f"{where}: optimizer.param_groups[{i}].params must be a list of parameter indices "
                f"(non-negative integers), got {str(params)[:40]}; the checkpoint is forged or corrupted."
            )
    scalars = expect_dict(section.get("scalars", {}), f"{where}: optimizer.scalars")
    for idx, extra in scalars.items():
        if not _INDEX.fullmatch(idx):
            raise FormatError(
                f"{where}: optimizer.scalars key {idx[:40]!r} is not a parameter index (a "
                "non-negative integer); the checkpoint is forged or corrupted."
            )
        expect_dict(extra, f"{where}: optimizer.scalars[{idx!r}]")
    return {"param_groups": groups, "scalars": scalars}


def checkpoint_tensors(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The CPU tensors a checkpoint of ``model`` (and ``optimizer``) holds, whatever device they train on, and
    the optimizer's sidecar section (``None`` without an optimizer)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    tensors = cpu_tensors({f"model.{k}": v for k, v in model.state_dict().items()})
    if optimizer is None:
        return tensors, None
    opt_tensors, section = _split_optimizer(optimizer.state_dict())
    return {**tensors, **opt_tensors}, section


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``path``'s tensor file and sidecar atomically; returns the tensor file's path."""
    tensor_path, meta_path = paths(path)
    tensors, optimizer_section = checkpoint_tensors(model, optimizer)
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION, "model": spec.to_dict()}
    if optimizer_section is not None:
        meta["optimizer"] = optimizer_section
    meta.update(extra or {})
    meta["sha256"] = "0" * 64  # the real digest has the same length: checked here, before anything is written
    _sidecar_text(meta)
    with atomic_path(tensor_path) as tmp:
        save_file(tensors, str(tmp))
    meta["sha256"] = sha256_file(tensor_path)
    atomic_write_text(meta_path, _sidecar_text(meta))
    return tensor_path


def _sidecar_text(meta: dict[str, Any]) -> str:
    """The sidecar's JSON, refusing what :func:`load_checkpoint`'s strict parser would refuse."""
    try:
        text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"checkpoint metadata must be JSON with finite numbers ({e}); a NaN or infinite loss "
            "usually means training diverged: lower the learning rate."
        ) from None
    if strict_json.nesting_depth(text) > strict_json.MAX_DEPTH:
        raise ConfigError(
            f"checkpoint metadata nests {strict_json.nesting_depth(text)} levels deep, over the "
            f"{strict_json.MAX_DEPTH} a sidecar allows; flatten the extra metadata."
        )
    return text


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint; refuses a missing sidecar, a wrong format or a checksum mismatch."""
    tensor_path, meta_path = paths(path)
    for p in (tensor_path, meta_path):
        if not p.is_file():
            raise FormatError(
                f"checkpoint file {p} not found; a checkpoint is a .safetensors file with a "
                ".json sidecar of the same name (written by `lepton train`)."
            )
    meta = strict_json.loads(meta_path.read_bytes(), f"checkpoint sidecar {meta_path}")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FormatError(
            f"{meta_path}: not a Lepton checkpoint sidecar (format tag {meta.get('format') if isinstance(meta, dict) else None!r})."
        )
    if meta.get("version") not in READABLE_VERSIONS or isinstance(meta.get("version"), bool):
        raise FormatError(
            f"{meta_path}: checkpoint version {meta.get('version')!r:.40} is not supported "
            f"(this Lepton reads versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade Lepton."
        )
    if "model" not in meta:
        raise FormatError(
            f"{meta_path}: the key 'model' (the model spec) is missing; the sidecar is damaged or "
            "forged, re-save the checkpoint (e.g. with `lepton train`)."
        )
    try:
        spec = ModelSpec.from_dict(expect_dict(meta["model"], f"{meta_path}: the key 'model'"))
    except ConfigError as e:
        raise FormatError(f"{meta_path}: the key 'model': {e}") from e
    optimizer = _check_optimizer(meta["optimizer"], meta_path) if "optimizer" in meta else None
    digest = sha256_file(tensor_path)
    if digest != meta.get("sha256"):
        raise FormatError(
            f"{tensor_path}: SHA-256 {digest[:16]}… does not match the sidecar's "
            f"{str(meta.get('sha256'))[:16]}…; the checkpoint is corrupted or was modified."
        )
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FormatError(f"{tensor_path}: unreadable safetensors file ({e}).") from e
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = None
    if optimizer is not None:
        optim = _join_optimizer({k: v for k, v in tensors.items() if k.startswith("optim.")}, optimizer, tensor_path)
    return Checkpoint(spec, model_state, optim, meta)
