"""The typed, validated configuration of the shared training loop."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lepton.config import DeviceName, StrictModel
from lepton.distributed.config import DistributedConfig


class AugmentConfig(StrictModel):
    """Seeded augmentation of each training batch (:mod:`lepton.train.augment`); off by default. Evaluation never
    augments."""

    crop_padding: int = Field(
        0,
        ge=0,
        le=64,
        description="random crop: pad each image by this many pixels on every side, then cut an image of the "
        "original size at a random offset (CIFAR's usual recipe is 4); 0 = off",
    )
    hflip: bool = Field(
        False,
        description="mirror half the images left-right at random; only for data whose mirror image is the same "
        "class (photos of objects) — wrong for digits and letters (a mirrored 2 is no 2)",
    )
    padding_mode: Literal["zeros", "reflect"] = Field(
        "zeros", description="what the crop's padding holds: zeros, or the image reflected at its border"
    )

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.hflip


class TrainConfig(StrictModel):
    """Hyper-parameters of :func:`lepton.train.fit`. Unknown keys are refused."""

    epochs: int = Field(10, ge=1, description="passes over the training set")
    batch_size: int = Field(
        64,
        ge=1,
        le=65536,
        description="samples per optimizer step and worker; the global batch is batch_size × workers",
    )
    accumulate: int = Field(
        1,
        ge=1,
        le=1024,
        description="split each batch into this many micro-batches whose "
        "gradients add up (less memory, same step; DDP syncs only the last)",
    )
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0, le=10, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0, lt=1)
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from lr/10, in epochs")
    step_epochs: int = Field(5, ge=1, description="'step' schedule: epochs between decays")
    step_gamma: float = Field(0.1, gt=0, le=1, description="'step' schedule: decay factor")
    seed: int = Field(0, ge=0, description="seeds weights init, shuffling and dropout")
    threads: int = Field(0, ge=0, le=1024, description="torch intra-op threads; 0 keeps torch's default")
    eval_batch_size: int = Field(1000, ge=1)
    checkpoint_every_steps: int = Field(
        0,
        ge=0,
        description="also write the resumable checkpoint (last.*) every N optimizer steps, mid-epoch; "
        "0 = only at the end of each epoch. A resume continues with exactly the batches left in the epoch",
    )
    device: DeviceName = Field(
        "auto",
        description="auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps; under DDP each worker "
        "takes cuda:LOCAL_RANK",
    )
    amp: Literal["off", "bf16", "fp16"] = Field(
        "off", description="mixed precision: bf16 (CUDA or CPU autocast) or fp16 with loss scaling (CUDA only)"
    )
    augment: AugmentConfig = Field(
        AugmentConfig(), description="random crop and flip of training batches, seeded by (seed, epoch, step)"
    )
    distributed: DistributedConfig = DistributedConfig()

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ValueError("nesterov=true needs momentum > 0; set momentum (e.g. 0.9) or nesterov: false")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs})")
        if self.accumulate > self.batch_size:
            raise ValueError(
                f"accumulate ({self.accumulate}) exceeds batch_size ({self.batch_size}); "
                "each micro-batch needs at least one sample"
            )
        return self
