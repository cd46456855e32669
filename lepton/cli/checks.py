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
