"""Where Lepton keeps its per-user files: one cache folder for datasets and the default artifact registry."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LEPTON_CACHE_DIR``, else ``$XDG_CACHE_HOME/lepton``, else ``~/.cache/lepton``."""
    if env := os.environ.get("LEPTON_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lepton"
