"""Knowledge distillation (Hinton, Vinyals & Dean, 2015): train a small student on a trained teacher's
softened outputs, through the shared training loop.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels).
The T^2 factor keeps the soft term's gradients on the scale of the hard term's as T changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console
from torch import nn

from lepton.train.config import TrainConfig
from lepton.train.loop import Batches, Objective, TrainReport, fit
from lepton.utils.checks import check_float
from lepton.utils.device import module_device


@dataclass(frozen=True)
class DistillationObjective:
    """``objective(logits, targets, inputs)`` for :func:`lepton.train.fit`; the teacher runs in eval mode
    without gradients on the same inputs, on their device (it moves there on the first step)."""

    teacher: nn.Module
    temperature: float
    alpha: float

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()
        if module_device(self.teacher) != inputs.device:
            self.teacher.to(inputs.device)
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        t = self.temperature
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(logits / t, dim=1),
            nn.functional.log_softmax(teacher_logits / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        hard = nn.functional.cross_entropy(logits, targets)
        return self.alpha * t * t * soft + (1 - self.alpha) * hard


def distillation_objective(teacher: nn.Module, *, temperature: float = 4.0, alpha: float = 0.7) -> Objective:
    """The distillation loss as an :data:`~lepton.train.Objective` for ``fit(..., objective=...)``."""
    check_float(
        temperature,
        "temperature",
        0,
        lo_open=True,
        owner="distillation",
        hint="Hinton et al. use 2-20; 4 is a good start.",
    )
    check_float(alpha, "alpha", 0, 1, owner="distillation", hint="It weights the teacher's soft targets.")
    return DistillationObjective(teacher, float(temperature), float(alpha))


def distill(
    teacher: nn.Module,
    student: nn.Module,
    batches: Batches,
    cfg: TrainConfig,
    *,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    after_step: Callable[[nn.Module], None] | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> TrainReport:
    """Train ``student`` in place on ``batches`` against ``teacher`` (left unchanged) with :func:`fit`."""
    objective = distillation_objective(teacher, temperature=temperature, alpha=alpha)
    was_training, home = teacher.training, module_device(teacher)
    try:
        return fit(
            student,
            batches,
            cfg,
            eval_data=eval_data,
            objective=objective,
            after_step=after_step,
            progress=progress,
            console=console,
        )
    finally:
        teacher.train(was_training)
        teacher.to(home)
