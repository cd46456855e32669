"""Typed configs: the strict base models, and loading them from YAML with one-line errors that name the key, the
value and what is allowed."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from lepton.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:(0|[1-9][0-9]{0,3}))?)$"
"""The ``device`` spellings configs accept (auto, cpu, cuda, cuda:N, mps); ``lepton.utils.device`` resolves them."""


def _device_name(value: str) -> str:
    if not re.fullmatch(DEVICE_PATTERN, value):
        raise ValueError(f"must be auto, cpu, cuda, cuda:N (N a GPU index) or mps, got {value[:40]!r}")
    return value


DeviceName = Annotated[str, AfterValidator(_device_name)]
"""A config's ``device`` key: one of the spellings of :data:`DEVICE_PATTERN`, checked on construction."""


class StrictModel(BaseModel):
    """Base of Lepton's configs and reports: unknown keys are refused and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrictFileModel(StrictModel):
    """Base of file-format headers: also no type coercion (a JSON ``"3"`` is not the integer 3)."""

    model_config = ConfigDict(strict=True)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model that ``loc``'s parent points into."""
    cls: Any = model
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return []
        cls = field.annotation
        for arg in getattr(cls, "__args__", ()) or ():  # Optional[Sub] -> Sub
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                cls = arg
    return sorted(getattr(cls, "model_fields", {}))


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str = "config") -> str:
    """One line per problem: ``source: train.epochs = -1: Input should be greater than or equal to 1``."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"])
            lines.append(f"{source}: unknown key '{key}'" + (f"; allowed: {', '.join(allowed)}" if allowed else ""))
        elif e["type"] == "missing":
            lines.append(f"{source}: missing key '{key}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {key} = {e.get('input')!r}: {msg}")
    return "; ".join(lines)


def validate(model: type[M], data: Any, source: str = "config") -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, model, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if str(path) in ("", "."):
        raise ConfigError(f"config file {str(path)!r}: expected a YAML file name, got an empty path.")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a folder, FIFO or device: never open it (a FIFO blocks)
            raise ConfigError(f"config file {path}: not a regular file; give a YAML file on disk.")
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}.")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.epochs=3", "data.dataset=digits"]`` -> nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3.")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[leaf] = raw
    return out
