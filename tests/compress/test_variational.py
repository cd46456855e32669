"""Sparse variational dropout: the KL term against numerical integration, the layers against plain torch, and
sparsification learning on real data (digits)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from lepton.compress.variational import (
    SIGMA_RATE,
    LayerPosterior,
    VariationalConv2d,
    VariationalLinear,
    finalize_variational,
    kl_divergence,
    make_variational,
    posterior_bits,
    posterior_table,
    variational_layers,
    variational_objective,
)
from lepton.errors import ConfigError
from lepton.models import ModelSpec
from lepton.train import TensorBatches, TrainConfig, evaluate, fit


def _true_neg_kl(alpha: float) -> float:
    """-KL(N(1, alpha) || log-uniform) up to its constant: 0.5 log alpha - E[log |e|], e ~ N(1, alpha), by quadrature
    (Molchanov et al. 2017, eq. 8 with theta = 1)."""
    s = np.sqrt(alpha)
    e = np.linspace(1 - 40 * s, 1 + 40 * s, 2_000_001)
    pdf = np.exp(-0.5 * ((e - 1) / s) ** 2) / (s * np.sqrt(2 * np.pi))
    with np.errstate(divide="ignore"):
        log_abs = np.where(e == 0, 0.0, np.log(np.abs(e)))
    return 0.5 * np.log(alpha) - np.trapezoid(pdf * log_abs, e)


def test_kl_matches_numerical_integration_up_to_its_constant():
    log_alphas = [-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    layer = VariationalLinear(nn.Linear(1, 1, bias=False), init_log_sigma2=0.0, threshold=3.0)
    approx = []
    with torch.no_grad():
        layer.weight.fill_(1.0)
        for la in log_alphas:
            layer.rho.fill_(la / SIGMA_RATE)  # weight 1: log alpha = log sigma^2
            approx.append(-float(layer.kl()))
    true = [_true_neg_kl(float(np.exp(la))) for la in log_alphas]
    offsets = np.array(approx) - np.array(true)
    assert offsets.max() - offsets.min() < 0.02  # Molchanov et al.: the fit is within ~0.01 of the true KL


def test_kl_vanishes_for_pure_noise_and_grows_for_precise_weights():
    layer = VariationalLinear(nn.Linear(4, 3), init_log_sigma2=-10.0, threshold=3.0)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        precise = float(layer.kl())
        layer.rho.fill_(20.0 / SIGMA_RATE)
        noise = float(layer.kl())
    assert noise == pytest.approx(0.0, abs=1e-3 * layer.weight.numel())
    assert precise > 4 * layer.weight.numel()


def test_layers_sample_with_the_local_reparameterization_moments():
    torch.manual_seed(0)
    conv = VariationalConv2d(nn.Conv2d(2, 3, 3, padding=1), init_log_sigma2=-3.0, threshold=3.0)
    x = torch.randn(1, 2, 5, 5)
    conv.train()
    with torch.no_grad():
        draws = torch.stack([conv(x) for _ in range(4000)])
        mean = nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        var = nn.functional.conv2d(x * x, torch.exp(conv.log_sigma2), padding=1)
    assert torch.allclose(draws.mean(0), mean, atol=4 * float(var.sqrt().max()) / 4000**0.5)
    assert torch.allclose(draws.var(0), var, rtol=0.15)


def test_eval_drops_exactly_the_noisy_weights():
    linear = nn.Linear(6, 4)
    layer = VariationalLinear(linear, init_log_sigma2=-10.0, threshold=3.0)
    with torch.no_grad():
        layer.rho[0, :3] = 10.0 / SIGMA_RATE  # these weights are all noise
    layer.eval()
    x = torch.randn(5, 6)
    w = linear.weight.detach().clone()
    w[0, :3] = 0
    w[layer.log_alpha().detach() >= 3.0] = 0
    assert torch.equal(layer(x), nn.functional.linear(x, w, linear.bias))


def test_make_and_finalize_round_trip_plain_modules():
    model = ModelSpec("lenet5").build()
    before = copy.deepcopy(model)
    names = make_variational(model)
    assert names == ["conv1", "conv2", "fc1", "fc2"]
    assert set(variational_layers(model)) == set(names)
    model.eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        sparse_out = model(x)
        for m in variational_layers(model).values():
            m.rho[:, :1] = 12.0 / SIGMA_RATE  # drop some inputs of every layer
        sparse_out = model(x)
    table = finalize_variational(model)
    assert [type(m) for m in (model.conv1, model.conv2, model.fc1, model.fc2)] == [
        nn.Conv2d,
        nn.Conv2d,
        nn.Linear,
        nn.Linear,
    ]
    assert set(model.state_dict()) == set(before.state_dict())
    with torch.no_grad():
        assert torch.equal(model(x), sparse_out)
    assert all(r.kept < r.weights for r in table)
    assert bool((model.fc1.weight[:, 0] == 0).all())


def test_a_model_without_conv_or_linear_layers_is_refused():
    with pytest.raises(ConfigError, match="nothing to learn"):
        make_variational(nn.Sequential(nn.ReLU()))
    with pytest.raises(ConfigError, match="make_variational first"):
        variational_objective(nn.Linear(2, 2), 10)


def test_posterior_bits_follow_range_over_noise():
    rows = [
        LayerPosterior(layer="a", weights=10, kept=5, sparsity=0.5, median_sigma=0.01, value_range=0.32),
        LayerPosterior(layer="b", weights=10, kept=5, sparsity=0.5, median_sigma=0.1, value_range=0.32),
        LayerPosterior(layer="c", weights=10, kept=0, sparsity=1.0, median_sigma=0.0, value_range=0.0),
        LayerPosterior(layer="d", weights=10, kept=5, sparsity=0.5, median_sigma=1e-9, value_range=1.0),
    ]
    assert posterior_bits(rows) == {"a": 5, "b": 2, "c": 2, "d": 8}  # 32 levels, 3.2 -> 2, none, clipped
    assert posterior_bits(rows, scale=0.5)["a"] == 6


@pytest.mark.slow
def test_variational_training_sparsifies_and_keeps_accuracy(digits, trained):
    """On digits, from the trained LeNet-300-100: most weights go, accuracy stays near the dense model's."""
    model = copy.deepcopy(trained)
    x, y = digits.tensors("train")
    xt, yt = digits.tensors("test")
    dense = evaluate(model, xt, yt).accuracy
    make_variational(model)
    batches = TensorBatches(x, y, 32, seed=0)
    cfg = TrainConfig(epochs=30, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=0.0, seed=0, threads=1)
    kl_before = float(kl_divergence(model))
    fit(model, batches, cfg, objective=variational_objective(model, len(x), kl_weight=1.0), progress=False)
    model.eval()
    assert float(kl_divergence(model)) < kl_before
    table = posterior_table(model)
    kept = sum(r.kept for r in table) / sum(r.weights for r in table)
    finalize_variational(model)
    acc = evaluate(model, xt, yt).accuracy
    assert kept < 0.5
    assert acc > dense - 0.05
