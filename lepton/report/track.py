"""Optional experiment tracking for ``lepton run --track tensorboard``: TensorBoard event files in the run folder.

What is logged: the resolved config (as YAML text, tag ``config``); for each stage, every number of its report
as a scalar ``STAGE/FIELD`` (nested fields joined with dots, e.g. ``compress/sparsity.fc1``) at step 0; and a
report's per-epoch ``history`` as ``STAGE/epoch/FIELD`` at step = epoch. Per-epoch numbers are taken from the
stage's report when it ends, so a resumed run logs the same curves as an uninterrupted one. It needs the
``tensorboard`` package (``pip install 'lepton-ml[track]'``); Lepton itself never reads the files back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from lepton.errors import ConfigError

TRACKERS = ("tensorboard",)
FOLDER = "tensorboard"
"""The run folder's sub-folder of event files."""


def _numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """The int and float leaves of nested dicts, by dotted key (lists and booleans are not scalars)."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for k, v in value.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix: float(value)}
    return {}


class TensorBoardTracker:
    """Writes the run's config, stage numbers and per-epoch curves as TensorBoard event files."""

    def __init__(self, folder: str | Path) -> None:
        check_tracker("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self._writer = SummaryWriter(log_dir=str(self.folder))

    def config(self, config: BaseModel) -> None:
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        self._writer.add_text("config", "```\n" + text + "```", 0)

    def stage(self, name: str, report: BaseModel) -> None:
        """Log ``report``'s numbers under ``name/``, and its ``history`` (if any) per epoch."""
        doc = report.model_dump(mode="json")
        history = doc.pop("history", None)
        for key, value in _numbers(doc).items():
            self._writer.add_scalar(f"{name}/{key}", value, 0)
        for record in history if isinstance(history, list) else []:
            epoch = record.get("epoch") if isinstance(record, dict) else None
            if isinstance(epoch, int):
                for key, value in _numbers({k: v for k, v in record.items() if k != "epoch"}).items():
                    self._writer.add_scalar(f"{name}/epoch/{key}", value, epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def check_tracker(kind: str) -> None:
    """Raise ConfigError unless ``kind`` is a tracker whose package is installed (checked before a run starts)."""
    if kind not in TRACKERS:
        raise ConfigError(f"--track must be one of {', '.join(TRACKERS)}; got {kind!r}.")
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--track tensorboard needs the tensorboard package, which is not installed; install it with "
            "pip install 'lepton-ml[track]' (or pip install tensorboard), or run without --track."
        ) from None


def open_tracker(kind: str | None, run_dir: Path) -> TensorBoardTracker | None:
    """The tracker ``--track KIND`` asks for, writing under ``run_dir``; None without tracking.

    Raises:
        ConfigError: an unknown kind, or its package is not installed.
    """
    if kind is None:
        return None
    check_tracker(kind)
    return TensorBoardTracker(run_dir / FOLDER)
