"""A whole training job on an in-memory dataset: seed, build, fit, evaluate. Used by ``lepton train``
and by the pipeline's train stage, so both produce the same model from the same config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from lepton.data.dataset import ImageDataset
from lepton.models.registry import ModelSpec
from lepton.train.batches import TensorBatches
from lepton.train.config import TrainConfig
from lepton.train.evaluate import EvalReport, evaluate
from lepton.train.loop import TrainReport, fit
from lepton.train.seed import seed_everything


@dataclass
class TrainedModel:
    spec: ModelSpec
    model: nn.Module
    train: TrainReport
    test: EvalReport


def train_model(data: ImageDataset, model_name: str, cfg: TrainConfig, *, model_kwargs: dict[str, Any] | None = None,
                checkpoint_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
                console: Console | None = None) -> TrainedModel:
    seed_everything(cfg.seed, cfg.threads)
    spec = ModelSpec(model_name, data.input_shape, data.num_classes, dict(model_kwargs or {}))
    model = spec.build()
    x_train, y_train = data.tensors("train")
    x_test, y_test = data.tensors("test")
    batches = TensorBatches(x_train, y_train, cfg.batch_size, seed=cfg.seed)
    report = fit(model, batches, cfg, spec=spec, eval_data=(x_test, y_test), checkpoint_dir=checkpoint_dir,
                 resume=resume, progress=progress, console=console)
    return TrainedModel(spec, model, report, evaluate(model, x_test, y_test, num_classes=data.num_classes))
