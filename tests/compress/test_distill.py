import copy

import pytest
import torch
from torch import nn

from lepton.compress.distill import distill, distillation_objective
from lepton.errors import ConfigError
from lepton.train import TensorBatches, evaluate
from tests.compress.conftest import DIGITS_CFG as CFG
from tests.compress.conftest import train_lenet300_on_digits


@pytest.fixture(scope="module")
def teacher(digits):
    return train_lenet300_on_digits(digits)


class _ModeRecorder(nn.Module):
    """A teacher that records the mode it ran in and whether autograd was on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 4)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.linear(x)


def _reference(student_logits, teacher_logits, targets, t, alpha):
    """Hinton et al.'s loss written out with torch's KLDivLoss module."""
    kl = nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(student_logits / t, 1), torch.softmax(teacher_logits / t, 1)
    )
    return alpha * t**2 * kl + (1 - alpha) * nn.CrossEntropyLoss()(student_logits, targets)


@pytest.mark.parametrize("t, alpha", [(1.0, 0.5), (4.0, 0.7), (10.0, 1.0), (0.5, 0.2)])
def test_objective_matches_the_reference_formula(t, alpha):
    torch.manual_seed(0)
    teacher = nn.Linear(6, 4)
    x, y = torch.randn(9, 6), torch.randint(0, 4, (9,))
    student_logits = 3 * torch.randn(9, 4)
    loss = distillation_objective(teacher, temperature=t, alpha=alpha)(student_logits, y, x)
    torch.testing.assert_close(loss, _reference(student_logits, teacher(x).detach(), y, t, alpha))
    p_t, log_p_s = torch.softmax(teacher(x).detach() / t, 1), torch.log_softmax(student_logits / t, 1)
    by_hand = (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    hard = nn.functional.cross_entropy(student_logits, y)
    torch.testing.assert_close(loss, alpha * t * t * by_hand + (1 - alpha) * hard)


def test_alpha_zero_is_cross_entropy():
    torch.manual_seed(1)
    logits, y = torch.randn(7, 4), torch.randint(0, 4, (7,))
    loss = distillation_objective(nn.Linear(6, 4), alpha=0.0)(logits, y, torch.randn(7, 6))
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, y))


def test_teacher_runs_in_eval_mode_without_gradients():
    teacher = _ModeRecorder().train()
    logits = torch.randn(5, 4, requires_grad=True)
    loss = distillation_objective(teacher)(logits, torch.randint(0, 4, (5,)), torch.randn(5, 6))
    loss.backward()
    assert teacher.calls == [(False, False)]
    assert teacher.linear.weight.grad is None and logits.grad is not None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0.0}, r"'temperature' .* \(0, inf\). Got 0.0"),
        ({"temperature": -2}, "temperature"),
        ({"alpha": -0.1}, r"'alpha' .* \[0, 1\]"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_parameters_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        distillation_objective(nn.Linear(2, 2), **kwargs)


def test_distilled_student_learns_and_teacher_is_untouched(teacher, digits):
    x, y = digits.tensors("train")
    xt, yt = digits.tensors("test")
    before = copy.deepcopy(teacher.state_dict())
    teacher.train()
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    report = distill(teacher, student, TensorBatches(x, y, 32, seed=2), CFG, eval_data=(xt, yt), progress=False)
    assert report.final_test_accuracy == evaluate(student, xt, yt).accuracy
    assert report.final_test_accuracy > 0.85
    assert teacher.training  # restored
    for name, v in teacher.state_dict().items():
        assert torch.equal(v, before[name]), name
