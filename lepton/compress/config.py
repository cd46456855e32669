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
    bits: int | LayerInts | Literal["auto", "preset", "posterior"] = Field(
        "preset",
        description="bits per shared weight: one number, per layer, 'auto' (per layer, the fewest bits "
        "whose one-layer accuracy drop stays within auto_max_drop), 'preset' "
        "(lepton.compress.presets; with method variational it means 'posterior') or 'posterior' (method "
        "variational only: from each layer's posterior noise, lepton.compress.variational.posterior_bits)",
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


class VariationalConfig(StrictModel):
    """Sparse variational dropout (``compress.method: variational``; :mod:`lepton.compress.variational`): every
    conv / linear weight learns how much noise it tolerates; weights that tolerate any are removed, the units
    left without weights are removed physically, and each layer's bit width follows from its posterior noise."""

    epochs: int = Field(30, ge=1, description="epochs of variational training (Adam), from the trained weights")
    lr: float = Field(0.001, gt=0, description="Adam learning rate of the variational training")
    kl_weight: float = Field(
        1.0, gt=0, description="weight of the KL term per sample (1 = the evidence lower bound; more = sparser)"
    )
    warmup_fraction: float = Field(
        0.25, ge=0, le=1, description="share of the epochs over which the KL weight ramps up from 0"
    )
    threshold: float = Field(3.0, description="log alpha above which a weight is removed (3: alpha > 20)")
    init_log_sigma2: float = Field(-10.0, description="initial log sigma^2 of every weight")
    bits_scale: float = Field(
        1.0,
        gt=0,
        description="share.bits 'posterior': a layer's quantization step is at most this many times its "
        "median posterior standard deviation",
    )
    thresholds: list[float] = Field(
        [1.0, 2.0, 3.0, 4.0, 5.0],
        min_length=1,
        description="the frontier's log alpha thresholds (each point measured from its decoded bytes)",
    )
    bits_scales: list[float] = Field(
        [0.5, 1.0, 2.0, 4.0], min_length=1, description="the frontier's bits scales (see bits_scale)"
    )

    @field_validator("bits_scales")
    @classmethod
    def _check_scales(cls, v: list[float]) -> list[float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"bits_scales must all be > 0, got {v}")
        return v


class CompressConfig(StrictModel):
    enabled: bool = True
    method: Literal["deep", "variational"] = Field(
        "deep",
        description="deep: Deep Compression (magnitude pruning with preset or scanned rates); variational: "
        "sparse variational dropout learns what to keep (slower: compress.variational.epochs of training)",
    )
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
    variational: VariationalConfig = VariationalConfig()
    coder: Literal["ans", "huffman"] = "ans"
    compact: bool | None = Field(
        None,
        description="write .lep version 4: a compact header and float16 codebooks (weights and biases rounded to "
        "float16 before coding); None = on for method variational (files of a few KB, where the header is a "
        "fifth of the bytes), off for deep (its files stay readable by Lepton before version 4)",
    )
    batch_size: int = Field(64, ge=1)
    validation_size: int = Field(
        5000,
        ge=100,
        description="training images held out for the sensitivity scans (and, with method variational, left "
        "out of its training to choose the operating point on)",
    )
    target_bytes: int | None = Field(
        None,
        ge=64,
        description="method variational: the operating point with the lowest validation error within "
        "this many bytes (lepton compress --target-bytes)",
    )
    target_error: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="method variational: the smallest operating point whose validation error is at most this "
        "fraction (0.008 = 0.8%; lepton compress --target-error)",
    )

    @property
    def compact_file(self) -> bool:
        return self.method == "variational" if self.compact is None else self.compact

    @model_validator(mode="after")
    def _check_method(self) -> CompressConfig:
        targets = [k for k in ("target_bytes", "target_error") if getattr(self, k) is not None]
        if len(targets) > 1:
            raise ValueError("give one of target_bytes and target_error, not both")
        if targets and self.method != "variational":
            raise ValueError(
                f"{targets[0]} picks an operating point of the variational posterior; set compress.method: "
                "variational (lepton compress --target-bytes/--target-error set it for you)"
            )
        if self.share.bits == "posterior" and self.method != "variational":
            raise ValueError(
                "share.bits 'posterior' reads the bit widths off a variational posterior; set "
                "compress.method: variational, or choose share.bits preset, auto or a number"
            )
        return self
