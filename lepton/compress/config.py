"""The typed configuration of the compression chain (the ``compress`` section of a run config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from lepton.config import StrictModel

LayerFloats = dict[str, float]
LayerInts = dict[str, int]


class PruneConfig(StrictModel):
    """Gradual magnitude pruning (Zhu & Gupta's cubic ramp), then fine-tuning with the masks fixed."""

    enabled: bool = True
    sparsity: float | LayerFloats | Literal["auto", "preset"] = Field(
        "preset",
        description="fraction of weights removed: one number, per layer {name: fraction}, 'auto' "
        "(per-layer rates from a sensitivity scan on held-out training images, sharing auto_budget "
        "across layers) or 'preset' "
        "(the tuned rates of lepton.compress.presets for known models, else 'auto')",
    )
    scope: Literal["layer", "global"] = "layer"
    auto_budget: float = Field(
        0.02,
        ge=0,
        le=1,
        description="'auto': one-shot accuracy drop shared across all layers (sensitivity.allocate_rates); "
        "fine-tuning then recovers most of it",
    )
    auto_max_drop: float = Field(0.01, ge=0, le=1, description="'auto': no one layer's one-shot drop exceeds this")
    auto_max_rate: float = Field(0.95, gt=0, lt=1, description="'auto': the highest rate given to any layer")
    auto_samples: int = Field(1000, ge=100, description="held-out training images the sensitivity scan evaluates")
    epochs: int = Field(8, ge=1, description="fine-tuning epochs, the ramp included")
    ramp_fraction: float = Field(0.5, gt=0, le=1, description="share of the epochs spent ramping sparsity up")
    lr: float = Field(0.02, gt=0)

    @field_validator("sparsity")
    @classmethod
    def _check_sparsity(cls, v: float | LayerFloats | str) -> float | LayerFloats | str:
        values = [v] if isinstance(v, float) else list(v.values()) if isinstance(v, dict) else []
        for s in values:
            if not 0 <= s < 1:
                raise ValueError(f"sparsity must be in [0, 1), got {s}")
        return v

    @model_validator(mode="after")
    def _check_scope(self) -> PruneConfig:
        if self.scope == "global" and not isinstance(self.sparsity, float):
            raise ValueError(
                "scope 'global' ranks all layers together and needs one sparsity number "
                f"(e.g. sparsity: 0.95), got {self.sparsity!r}"
            )
        return self


class ShareConfig(StrictModel):
    """k-means weight sharing (linear init), then centroid fine-tuning."""

    enabled: bool = True
    bits: int | LayerInts | Literal["auto", "preset"] = Field(
        "preset",
        description="bits per shared weight: one number, per layer, 'auto' (per layer, the fewest bits "
        "whose one-layer accuracy drop stays within auto_max_drop) or 'preset' "
        "(lepton.compress.presets)",
    )
    auto_max_drop: float = Field(0.002, ge=0, le=1, description="'auto': allowed one-layer accuracy drop")
    bias_bits: int = Field(5, ge=1, le=8, description="biases are shared too, post hoc, with this many bits")
    epochs: int = Field(2, ge=0, description="centroid fine-tuning epochs (Adam)")
    lr: float = Field(0.001, gt=0, description="Adam learning rate of the centroid fine-tuning")

    @field_validator("bits")
    @classmethod
    def _check_bits(cls, v: int | LayerInts | str) -> int | LayerInts | str:
        for b in [v] if isinstance(v, int) else v.values() if isinstance(v, dict) else []:
            if not 1 <= b <= 8:
                raise ValueError(f"bits must be in [1, 8], got {b}")
        return v


class DistillConfig(StrictModel):
    """Use the dense model as the teacher during fine-tuning (Hinton et al.)."""

    enabled: bool = True
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the distillation term; 1 - alpha for the labels")


class TTConfig(StrictModel):
    """Replace named linear layers by tensor-train layers (TT-SVD, then fine-tuning) before pruning.

    The TT cores are stored in the `.lep` like any other tensor (bytes counted the same way); pruning
    and weight sharing then apply to the remaining conv/linear layers.
    """

    enabled: bool = False
    layers: dict[str, float] = Field(
        default_factory=dict, description="layer -> minimum parameter ratio of its TT form, e.g. {fc1: 20}"
    )
    cores: int = Field(4, ge=2, le=8, description="TT cores per layer (modes from factorize(features, cores))")
    epochs: int = Field(2, ge=0, description="fine-tuning epochs after the conversion")
    lr: float = Field(0.01, gt=0)

    @field_validator("layers")
    @classmethod
    def _check_layers(cls, v: dict[str, float]) -> dict[str, float]:
        for name, ratio in v.items():
            if ratio < 1:
                raise ValueError(f"TT ratio of layer {name!r} must be >= 1, got {ratio}")
        return v

    @model_validator(mode="after")
    def _check_enabled(self) -> TTConfig:
        if self.enabled and not self.layers:
            raise ValueError("tt is enabled but names no layers; set e.g. layers: {fc1: 20}")
        return self


class ChannelsConfig(StrictModel):
    """Structured channel pruning for latency (Torch-Pruning's dependency graph), then fine-tuning; it runs
    first, so magnitude pruning, weight sharing and coding work on the narrower model."""

    enabled: bool = False
    ratio: float | LayerFloats = Field(
        0.5, description="fraction of channels removed: one number for every prunable layer, or {layer: fraction}"
    )
    importance: Literal["l1", "l2", "group_l2", "fpgm"] = "l1"
    epochs: int = Field(4, ge=0, description="fine-tuning epochs after the channels are removed")
    lr: float = Field(0.01, gt=0)

    @field_validator("ratio")
    @classmethod
    def _check_ratio(cls, v: float | LayerFloats) -> float | LayerFloats:
        for r in [v] if isinstance(v, float) else v.values():
            if not 0 <= r < 1:
                raise ValueError(f"channel ratio must be in [0, 1), got {r}")
        return v


class CompressConfig(StrictModel):
    enabled: bool = True
    fold_bn: bool = Field(
        True,
        description="fold BatchNorm into the convs feeding it after pruning, before weight sharing and coding "
        "(the .lep stores the folded model)",
    )
    channels: ChannelsConfig = ChannelsConfig()
    prune: PruneConfig = PruneConfig()
    share: ShareConfig = ShareConfig()
    distill: DistillConfig = DistillConfig()
    tt: TTConfig = TTConfig()
    coder: Literal["ans", "huffman"] = "ans"
    batch_size: int = Field(64, ge=1)
    validation_size: int = Field(5000, ge=100, description="training images held out for the sensitivity scans")
