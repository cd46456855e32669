"""The typed configuration of ``lepton run``: one YAML file, validated, with a built-in default.

The library configs live beside their code (``lepton.train.config``, ``lepton.compress.config``, …); the
sections that only switch and size ``lepton run``'s stages (``data.pack``, ``quantum``'s switches) live here.
``edge`` is the config of ``lepton.edge.deploy.deploy_model``, the edge stage's library entry point, so it lives
in ``lepton.edge.config`` (a light module: pydantic and the network helpers only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from lepton.compress.config import CompressConfig
from lepton.config import StrictModel, deep_merge, read_yaml, validate
from lepton.data.options import SourceOptions
from lepton.edge.config import EdgeConfig
from lepton.quantum.config import HybridConfig
from lepton.train.config import TrainConfig


class LossyConfig(StrictModel):
    """The optional lossy size-accuracy sweep (each point trains LeNet-5 briefly)."""

    enabled: bool = False
    pca_variances: list[float] = Field(default_factory=lambda: [0.8, 0.9, 0.95], description="PCA variance targets")
    bits: list[int] = Field(default_factory=lambda: [1, 2, 4], description="bit depths to try")
    train_samples: int = Field(10000, ge=100, description="training images of each accuracy check")
    epochs: int = Field(1, ge=1, le=100, description="epochs of each accuracy check")


class PackConfig(StrictModel):
    """The ``data.pack`` section: pack, verify and measure the training data (the data stage)."""

    enabled: bool = True
    codec: str = Field("auto", description="image codec of the store: auto, lepton-cm, freq, lzma, zstd, deflate")
    codec_params: dict[str, int | bool] = Field(
        default_factory=dict, description="parameters of a named codec, e.g. {level: 3} for zstd"
    )
    block_samples: int = Field(1000, ge=1, le=1 << 20, description="samples per independent block")
    fit_pixels: int = Field(
        6_000_000,
        ge=1,
        description="pixels lepton-cm's context tree is grown on (every pixel is still counted into its "
        "leaves); the time against bits trade-off is measured in the README",
    )
    compare: list[str] = Field(
        default_factory=lambda: ["deflate", "zstd", "lzma", "lepton-cm"],
        description="codecs measured side by side (unavailable ones are skipped)",
    )
    compare_samples: int | None = Field(
        5000,
        ge=1,
        description="measure the codecs on about N training images, whole blocks evenly spaced over the split "
        "(None: all; benchmarks/data_codecs.py measures the full set)",
    )
    loader_batches: int = Field(
        100, ge=1, description="training steps timed for the DataLoader throughput (each reading from a cold store)"
    )
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes reading the store")
    lossy: LossyConfig = LossyConfig()


class DataConfig(SourceOptions):
    """The ``data`` section: which dataset, how to read it (:class:`SourceOptions`'s keys), subsets, packing."""

    dataset: str = Field(
        "mnist",
        description="mnist, fashion-mnist, digits, NAME:PATH (cifar10:, cifar100:, folder:), a .npz, "
        "a packed store (.lds; the train stage reads its batches from the store), an image folder, "
        "a CIFAR binary folder or an IDX directory",
    )
    train_subset: int | None = Field(None, ge=1, description="use only the first N training samples")
    test_subset: int | None = Field(None, ge=1, description="use only the first N test samples")
    normalize: Literal["none", "auto"] = Field(
        "none",
        description="input normalization stored with the model: auto = per-channel mean and std of the training "
        "split (the model maps [0, 1] pixels to (x - mean) / std itself); none = feed pixels / 255 as they are",
    )
    pack: PackConfig = PackConfig()


class ModelConfig(StrictModel):
    name: str = Field("lenet5", description="registry name or package.module:factory")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra arguments for the factory")


class QuantumConfig(HybridConfig):
    """The ``quantum`` section: the optional stage of ``lepton run`` (off by default).

    It trains the hybrid PCA → variational circuit → linear model on the run's dataset beside logistic
    regression and a tiny MLP on the same features, and exports the trained circuit as OpenQASM.
    """

    enabled: bool = Field(False, description="run the quantum stage (adds about a minute at the defaults)")
    qasm_version: int = Field(2, ge=2, le=3, description="OpenQASM version of the exported circuit")


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
    "data": {
        "train_subset": 20000,
        "pack": {
            "codec": "zstd",
            "codec_params": {"level": 3},
            "compare": ["deflate", "zstd"],
            "compare_samples": 1000,
            "loader_batches": 20,
        },
    },
    "train": {"epochs": 1},
    "compress": {"prune": {"epochs": 1}, "share": {"epochs": 1}},
    "edge": {"calibration_images": 256, "iterations": 200, "split_requests": 20},
}


def load_run_config(
    path: str | Path | None = None, *, quick: bool = False, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """The default config, updated by the YAML at ``path``, then ``--quick``, then ``--set`` overrides."""
    raw: dict[str, Any] = read_yaml(path) if path is not None else {}
    if quick:
        raw = deep_merge(raw, QUICK)
    if overrides:
        raw = deep_merge(raw, overrides)
    return validate(RunConfig, raw, source=str(path) if path else "config")
