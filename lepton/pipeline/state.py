"""What stages share: the run's state, and the interface every stage implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel
from rich.console import Console
from torch import nn

from lepton.data.dataset import ImageDataset
from lepton.data.store.source import StoreSource
from lepton.models.registry import ModelSpec
from lepton.pipeline.config import RunConfig


@dataclass
class RunState:
    """Handed from stage to stage. A stage reads what earlier stages left and adds its own."""

    config: RunConfig
    run_dir: Path
    console: Console
    progress: bool = True
    trust_code: bool = False
    """The user allowed the config's ``package.module:factory`` model to run (``lepton run --trust-code``)."""
    resume: bool = False
    """Continue an interrupted run (``lepton run --resume``): the train stage picks up its last epoch checkpoint."""
    dataset: ImageDataset | None = None
    training_source: ImageDataset | StoreSource | None = None
    """What the train stage reads batches from: the packed store when the data source is one (each DDP rank
    then reads its own samples from it), else :attr:`dataset`."""
    spec: ModelSpec | None = None
    model: nn.Module | None = None
    reports: dict[str, BaseModel] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def require_dataset(self) -> ImageDataset:
        if self.dataset is None:
            raise RuntimeError("no dataset loaded: the pipeline loads it before the first stage")
        return self.dataset


class Stage(Protocol):
    """One step of ``lepton run``. Its report lands in ``metrics.json`` under ``stages.<name>``.

    A resumed run (:mod:`lepton.pipeline.resume`) skips a stage whose :meth:`outputs` verify against its
    completion record, rebuilds its report as ``report_type`` and calls :meth:`restore` instead of :meth:`run`.
    """

    name: str
    title: str
    report_type: type[BaseModel]

    def enabled(self, config: RunConfig) -> bool: ...

    def run(self, state: RunState) -> BaseModel: ...

    def outputs(self, report: BaseModel) -> list[str]:
        """The files (relative to the run folder) later stages or the report read; checksummed when it finishes."""
        ...

    def restore(self, state: RunState, report: BaseModel) -> None:
        """Leave in ``state`` what :meth:`run` would have left, from the outputs of a finished run of it."""
        ...

    def summary(self, report: BaseModel) -> str:
        """The stage's headline numbers in one line, for the end-of-run summary."""
        ...

    def html(self, report: BaseModel, state: RunState) -> str:
        """The stage's section of the HTML report (tables and embedded plots)."""
        ...
