"""Checks of command-line values before any work starts: paths to read or write, typed configs from options.

Each raises :class:`~lepton.errors.ConfigError` with one line naming the option, the value and the fix.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lepton.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def input_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` if it names an existing regular file; never opens it (a FIFO or a device would block or never end)."""
    p = Path(path)
    if str(path) in ("", "."):
        raise ConfigError(f"{option} {str(path)!r}: expected a file name, got an empty path.")
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{option} {p}: file not found; check the path.") from None
    except OSError as e:
        raise ConfigError(f"{option} {p}: cannot read it ({e.strerror}); check the path.") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{option} {p}: is a folder; give the file inside it.")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{option} {p}: not a regular file (a pipe, socket or device); give a file on disk.")
    return p


def output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` if a file can be written there: not empty, not an existing folder or special file, its parent a folder."""
    p = Path(path)
    if str(path) in ("", "."):
        raise ConfigError(f"{option} {str(path)!r}: expected a file name to write, got an empty path.")
    if p.is_dir():
        raise ConfigError(f"{option} {p}: is a folder; give a file name (e.g. {p / 'NAME'}).")
    if p.exists() and not p.is_file():
        raise ConfigError(f"{option} {p}: not a regular file (a pipe, socket or device); give a file name on disk.")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {p}: {parent} is a file, not a folder; choose another path.")
            break
    return p


def make_config(config_class: type[M], option_names: dict[str, str], /, **values: Any) -> M:
    """``config_class(**values)``; a bad value is one line naming its command-line option (``option_names``: field → option)."""
    try:
        return config_class(**values)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            name = option_names.get(field, "--" + field.replace("_", "-"))
            problems.append(f"{name} {e.get('input')!r}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigError("; ".join(problems) + "; see --help.") from None


def arch_spec(
    arch: str | None,
    input_shape: str | None,
    num_classes: int | None,
    normalize_mean: str | None = None,
    normalize_std: str | None = None,
) -> Any:
    """The :class:`~lepton.models.registry.ModelSpec` that ``--arch``, ``--input-shape``, ``--num-classes`` and
    ``--normalize-mean``/``--normalize-std`` name, or None without ``--arch`` (then the others must be absent too)."""
    from lepton.models.registry import ModelSpec

    if arch is None:
        if any(v is not None for v in (input_shape, num_classes, normalize_mean, normalize_std)):
            raise ConfigError(
                "--input-shape, --num-classes and --normalize-mean/--normalize-std describe --arch; pass "
                "--arch NAME with them."
            )
        return None
    if (normalize_mean is None) != (normalize_std is None):
        raise ConfigError("--normalize-mean and --normalize-std go together; pass both (one number per channel).")
    normalize = None
    if normalize_mean is not None and normalize_std is not None:
        normalize = {
            "mean": _floats(normalize_mean, "--normalize-mean"),
            "std": _floats(normalize_std, "--normalize-std"),
        }
    shape = [1, 28, 28]
    if input_shape is not None:
        parts = input_shape.replace("x", ",").split(",")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise ConfigError(f"--input-shape {input_shape!r}: expected C,H,W (e.g. 3,32,32).")
        shape = [int(p) for p in parts]
    try:
        return ModelSpec.from_dict(
            {
                "name": arch,
                "input_shape": shape,
                "num_classes": 10 if num_classes is None else num_classes,
                **({"normalize": normalize} if normalize else {}),
            }
        )
    except ConfigError as e:
        raise ConfigError(
            f"--arch/--input-shape/--num-classes/--normalize-*: {str(e).removeprefix('invalid model spec: ')}"
        ) from None


def _floats(text: str, option: str) -> list[float]:
    """``0.49,0.48,0.45`` as floats; ConfigError naming ``option`` otherwise."""
    try:
        return [float(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected numbers separated by commas (e.g. 0.49,0.48,0.45).") from None
