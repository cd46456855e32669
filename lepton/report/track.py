"""Optional experiment tracking for ``lepton run --track KIND``: TensorBoard event files or a local MLflow store.

What is logged: the resolved config; for each stage, every number of its report as ``STAGE/FIELD`` (nested
fields joined with dots, e.g. ``compress/sparsity.fc1``) at step 0; and a report's per-epoch ``history`` as
``STAGE/epoch/FIELD`` at step = epoch. Per-epoch numbers are taken from the stage's report when it ends, so a
resumed run logs the same curves as an uninterrupted one. ``tensorboard`` writes event files to
``RUN/tensorboard`` (the config as text, tag ``config``); ``mlflow`` writes one MLflow run to the SQLite store
``RUN/mlflow/mlflow.db`` (see :mod:`lepton.report.track_mlflow`). Both need the ``track`` extra
(``pip install 'lepton-ml[track]'``); Lepton itself never reads the files back.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel

from lepton.errors import ConfigError

TRACKERS = ("tensorboard", "mlflow")
FOLDER = "tensorboard"
"""The run folder's sub-folder of TensorBoard event files."""
MLFLOW_FOLDER = "mlflow"
"""The run folder's sub-folder of the MLflow store (``mlflow.db``) and its artifacts."""
PACKAGES = {
    "tensorboard": {"tensorboard": "tensorboard"},
    "mlflow": {"mlflow": "mlflow-skinny", "sqlalchemy": "sqlalchemy", "alembic": "alembic"},
}
"""Each tracker's packages: the module it imports -> the name pip installs it by (the SQLite store needs
sqlalchemy and alembic, which mlflow-skinny leaves out)."""


class Tracker(Protocol):
    """What the pipeline calls: the config once, each stage's report when it ends, then close."""

    def config(self, config: BaseModel) -> None: ...

    def stage(self, name: str, report: BaseModel) -> None: ...

    def close(self) -> None: ...


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of nested dicts by dotted key (a list is one leaf)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """The int and float leaves of nested dicts, by dotted key (lists and booleans are not scalars)."""
    return {
        k: float(v)
        for k, v in flatten(value, prefix).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def config_yaml(config: BaseModel) -> str:
    """The resolved config as the YAML text ``config.yaml`` holds."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def stage_numbers(report: BaseModel) -> tuple[dict[str, float], list[tuple[int, dict[str, float]]]]:
    """A stage report's scalars by dotted field, and its per-epoch ``history`` (if any) as (epoch, scalars)."""
    doc = report.model_dump(mode="json")
    history = doc.pop("history", None)
    curves = []
    for record in history if isinstance(history, list) else []:
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if isinstance(epoch, int):
            curves.append((epoch, _numbers({k: v for k, v in record.items() if k != "epoch"})))
    return _numbers(doc), curves


class TensorBoardTracker:
    """Writes the run's config, stage numbers and per-epoch curves as TensorBoard event files."""

    def __init__(self, folder: str | Path) -> None:
        check_tracker("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self._writer = SummaryWriter(log_dir=str(self.folder))

    def config(self, config: BaseModel) -> None:
        self._writer.add_text("config", "```\n" + config_yaml(config) + "```", 0)

    def stage(self, name: str, report: BaseModel) -> None:
        """Log ``report``'s numbers under ``name/``, and its ``history`` (if any) per epoch."""
        final, curves = stage_numbers(report)
        for key, value in final.items():
            self._writer.add_scalar(f"{name}/{key}", value, 0)
        for epoch, numbers in curves:
            for key, value in numbers.items():
                self._writer.add_scalar(f"{name}/epoch/{key}", value, epoch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def check_tracker(kind: str) -> None:
    """Raise ConfigError unless ``kind`` is a tracker whose packages are installed (checked before a run starts)."""
    if kind not in TRACKERS:
        raise ConfigError(f"--track must be one of {', '.join(TRACKERS)}; got {kind!r}.")
    missing = [pip for module, pip in PACKAGES[kind].items() if importlib.util.find_spec(module) is None]
    if missing:
        names = " ".join(PACKAGES[kind].values())
        raise ConfigError(
            f"--track {kind} needs the {', '.join(missing)} package{'s' if len(missing) > 1 else ''}, which "
            f"{'are' if len(missing) > 1 else 'is'} not installed; install with pip install 'lepton-ml[track]' "
            f"(or pip install {names}), or run without --track."
        )


def open_tracker(kind: str | None, run_dir: Path) -> Tracker | None:
    """The tracker ``--track KIND`` asks for, writing under ``run_dir``; None without tracking.

    Args:
        kind: ``"tensorboard"``, ``"mlflow"`` or None.
        run_dir: the run folder; the tracker writes to its ``tensorboard/`` or ``mlflow/`` sub-folder.

    Returns:
        The tracker, or None when ``kind`` is None.

    Raises:
        ConfigError: an unknown kind, or its package is not installed.
    """
    if kind is None:
        return None
    check_tracker(kind)
    if kind == "mlflow":
        from lepton.report.track_mlflow import MLflowTracker

        return MLflowTracker(run_dir / MLFLOW_FOLDER, run_name=run_dir.name)
    return TensorBoardTracker(run_dir / FOLDER)
