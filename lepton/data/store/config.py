"""The typed ``data.pack`` section of ``lepton run``: pack, verify and measure the training data."""

from __future__ import annotations

from pydantic import Field

from lepton.config import StrictModel


class LossyConfig(StrictModel):
    """The optional lossy size-accuracy sweep (each point trains LeNet-5 briefly)."""

    enabled: bool = False
    pca_variances: list[float] = Field(default_factory=lambda: [0.8, 0.9, 0.95], description="PCA variance targets")
    bits: list[int] = Field(default_factory=lambda: [1, 2, 4], description="bit depths to try")
    train_samples: int = Field(10000, ge=100, description="training images of each accuracy check")
    epochs: int = Field(1, ge=1, le=100, description="epochs of each accuracy check")


class PackConfig(StrictModel):
    enabled: bool = True
    codec: str = Field("auto", description="image codec of the store: auto, lepton-cm, lzma, zstd, deflate")
    codec_params: dict[str, int | bool] = Field(default_factory=dict, description="parameters of a named codec, "
                                                 "e.g. {level: 3} for zstd")
    block_samples: int = Field(1000, ge=1, le=1 << 20, description="samples per independent block")
    compare: list[str] = Field(default_factory=lambda: ["deflate", "zstd", "lzma", "lepton-cm"],
                               description="codecs measured side by side (unavailable ones are skipped)")
    compare_samples: int | None = Field(10000, ge=1, description="measure the codecs on the first N training "
                                                                 "images only (None: all; benchmarks/data_codecs.py "
                                                                 "measures the full set)")
    loader_batches: int = Field(300, ge=1, description="training steps timed for the DataLoader throughput")
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes reading the store")
    lossy: LossyConfig = LossyConfig()
