"""The typed configuration of ``lepton run``: one YAML file, validated, with a built-in default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from lepton.compress.config import CompressConfig
from lepton.config import StrictModel, deep_merge, read_yaml, validate
from lepton.data.store.config import PackConfig
from lepton.edge.config import EdgeConfig
from lepton.quantum.config import QuantumConfig
from lepton.train.config import TrainConfig


class DataConfig(StrictModel):
    dataset: str = Field("mnist", description="mnist, fashion-mnist, digits, NAME:PATH, a .npz or an IDX directory")
    train_subset: int | None = Field(None, ge=1, description="use only the first N training samples")
    test_subset: int | None = Field(None, ge=1, description="use only the first N test samples")
    pack: PackConfig = PackConfig()


class ModelConfig(StrictModel):
    name: str = Field("lenet5", description="registry name or package.module:factory")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments for the factory")


class RunConfig(StrictModel):
    """Everything ``lepton run`` does, in one validated object (serialised into ``metrics.json``)."""

    version: Literal[1] = 1
    name: str = Field("lenet5-mnist", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    compress: CompressConfig = CompressConfig()
    edge: EdgeConfig = EdgeConfig()
    quantum: QuantumConfig = QuantumConfig()


# --quick: a smoke test of every stage in well under two minutes.
QUICK: dict[str, Any] = {
    "data": {"train_subset": 20000, "pack": {"codec": "zstd", "codec_params": {"level": 3}, "compare": ["deflate", "zstd"],
                                             "compare_samples": 1000, "loader_batches": 20}},
    "train": {"epochs": 1},
    "compress": {"prune": {"epochs": 1}, "share": {"epochs": 1}},
    "edge": {"calibration_images": 256, "iterations": 200, "split_requests": 20},
}


def load_run_config(path: str | Path | None = None, *, quick: bool = False,
                    overrides: dict[str, Any] | None = None) -> RunConfig:
    """The default config, updated by the YAML at ``path``, then ``--quick``, then ``--set`` overrides."""
    raw: dict[str, Any] = read_yaml(path) if path is not None else {}
    if quick:
        raw = deep_merge(raw, QUICK)
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate(RunConfig, raw, source=str(path) if path else "config")
