"""The typed configuration of the hybrid quantum experiment (``lepton run``'s ``quantum`` section extends it)."""

from __future__ import annotations

from pydantic import Field

from lepton.config import DeviceName, StrictModel


class HybridConfig(StrictModel):
    """The hybrid experiment: which classes, how many qubits/layers, how long to train."""

    classes: list[int] = Field(default_factory=lambda: [0, 1, 2, 3], min_length=2)
    n_qubits: int = Field(8, ge=1, le=16)
    n_layers: int = Field(3, ge=1, le=20)
    reupload: bool = False
    init_std: float | None = Field(0.1, ge=0, description="std of the initial quantum angles; None: U[0, 2π)")
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(0.05, gt=0, le=1)
    train_subset: int | None = Field(None, ge=1, description="use only the first N training samples of the classes")
    seed: int = Field(0, ge=0)
    device: DeviceName = Field("auto", description="where the three models train: auto, cpu, cuda, cuda:N or mps")
