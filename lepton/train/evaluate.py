"""Evaluation: accuracy, loss and per-class accuracy of a classifier on a labelled set.

The model runs where its weights are (CPU, CUDA, MPS); inputs move there one batch at a time and the
logits come back to the CPU, so the metrics are computed the same way whatever the device.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel
from torch import nn

from lepton.utils.device import module_device


class EvalReport(BaseModel):
    samples: int
    accuracy: float
    loss: float
    per_class_accuracy: list[float]
    confusion: list[list[int]]


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's outputs for ``x`` in eval mode, in batches on the model's device; returned on the CPU."""
    was_training = model.training
    model.eval()
    device = module_device(model)
    try:
        return torch.cat([model(x[i : i + batch_size].to(device)).to("cpu") for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int | None = None, batch_size: int = 1000
) -> EvalReport:
    """Accuracy (fraction), mean cross-entropy, per-class accuracy and the confusion matrix."""
    logits = predict_logits(model, x, batch_size)
    k = num_classes or logits.shape[1]
    pred = logits.argmax(1)
    confusion = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    per_class = confusion.diag().double() / confusion.sum(1).clamp(min=1).double()
    return EvalReport(
        samples=len(y),
        accuracy=float((pred == y).double().mean()) if len(y) else 0.0,
        loss=float(nn.functional.cross_entropy(logits, y)) if len(y) else 0.0,
        per_class_accuracy=[round(float(v), 6) for v in per_class],
        confusion=confusion.tolist(),
    )
