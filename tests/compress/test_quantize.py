import copy

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from lepton.compress.quantize import (
    choose_bits,
    fake_quantize,
    post_training_quantize,
    quantize_qat,
    quantize_tensor,
    scan_bits,
    snr_db,
)
from lepton.compress.share import share_tensor
from lepton.errors import ConfigError
from lepton.train import TensorBatches, evaluate, fit
from tests.compress.conftest import DIGITS_CFG as CFG

LAYERS = ("fc1", "fc2", "fc3")


def test_snr_db_matches_the_power_ratio():
    g = torch.Generator().manual_seed(0)
    ref, noise = torch.randn(1000, generator=g), 0.01 * torch.randn(1000, generator=g)
    expected = 10 * np.log10((ref.double() ** 2).sum().item() / (noise.double() ** 2).sum().item())
    assert snr_db(ref, ref + noise) == pytest.approx(expected, abs=1e-4)
    assert snr_db(ref, ref) == float("inf")


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_per_channel_levels_scales_and_rounding(bits):
    w = torch.randn(16, 3, 5, 5, generator=torch.Generator().manual_seed(bits))
    w[w.abs() < 0.3] = 0
    w[5] = 0  # an all-zero output channel
    q = quantize_tensor(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert q.values.dtype == torch.int8 and q.scale.shape == (16, 1, 1, 1)
    assert int(q.values.abs().max()) == qmax
    deq = q.dequantize()
    for c in range(16):
        if c != 5:
            assert q.values[c].abs().max() == qmax  # each channel's largest weight lands on the top level
        assert torch.unique(deq[c]).numel() <= 2**bits - 1
    assert torch.equal(deq == 0, (w / q.scale).abs() < 0.5)  # zeros stay zero, and only what rounds to 0
    assert torch.all(deq[5] == 0)
    assert torch.all((deq - w).abs() <= q.scale / 2 + 1e-6)  # round to nearest
    assert torch.unique(deq).numel() > 2**bits  # per channel: more values per layer than one codebook


def test_per_tensor_granularity_bounds_the_whole_layer():
    w = torch.randn(64, 100, generator=torch.Generator().manual_seed(0))
    deq = quantize_tensor(w, 3, granularity="tensor").dequantize()
    assert torch.unique(deq).numel() <= 7
    assert deq.abs().max() == pytest.approx(w.abs().max().item())


def test_straight_through_estimator_passes_the_gradient():
    w = torch.randn(8, 12, requires_grad=True)
    upstream = torch.randn(8, 12)
    (fake_quantize(w, 3) * upstream).sum().backward()
    torch.testing.assert_close(w.grad, upstream)


def test_snr_of_a_trained_layer_is_bounded(trained):
    for name in LAYERS:
        w = getattr(trained, name).weight.detach()
        snr = {b: snr_db(w, quantize_tensor(w, b).dequantize()) for b in (4, 8)}
        assert snr[8] >= 35, (name, snr)
        assert snr[4] >= 15, (name, snr)
        assert snr[8] - snr[4] >= 20, (name, snr)  # about 6 dB per bit
        codebook, index, mask = share_tensor(w, 4)
        per_tensor = snr_db(w, quantize_tensor(w, 4, granularity="tensor").dequantize())
        assert snr_db(w, torch.where(mask, codebook[index], 0.0)) > per_tensor  # k-means beats one uniform grid


def test_qat_trains_shadow_weights_and_keeps_pruned_zeros(trained, digits):
    model = copy.deepcopy(trained)
    with torch.no_grad():
        model.fc1.weight[model.fc1.weight.abs() < 0.02] = 0
    zeros = model.fc1.weight == 0
    handle = quantize_qat(model, 3)
    shadow = model.fc1.parametrizations.weight.original
    start = shadow.detach().clone()
    x, y = digits.tensors("train")
    fit(model, TensorBatches(x[:256], y[:256], 32), CFG.model_copy(update={"epochs": 1, "lr": 0.01}), progress=False)
    assert not torch.equal(shadow, start)
    assert torch.all(shadow[zeros] == 0)
    handle.finalize(model)
    assert torch.all(model.fc1.weight[zeros] == 0)
    assert not parametrize.is_parametrized(model.fc1)


def test_qat_recovers_what_post_training_quantization_loses(trained, digits):
    xt, yt = digits.tensors("test")
    x, y = digits.tensors("train")
    base = evaluate(trained, xt, yt).accuracy
    ptq = evaluate(post_training_quantize(trained, 2), xt, yt).accuracy
    model = copy.deepcopy(trained)
    handle = quantize_qat(model, 2)
    fit(model, TensorBatches(x, y, 32, seed=1), CFG.model_copy(update={"epochs": 3, "lr": 0.01}), progress=False)
    qat = evaluate(model, xt, yt).accuracy
    report = handle.report()
    ints = handle.quantized()
    handle.finalize(model)
    assert evaluate(model, xt, yt).accuracy == qat
    assert qat > ptq and qat >= base - 0.02
    after = {row.layer: row for row in handle.report().layers}
    for row in report.layers:
        weight = getattr(model, row.layer).weight.detach()
        assert row.max_levels_per_channel <= 3 and row.snr_db > 0 and after[row.layer].snr_db is None
        assert after[row.layer].distinct_values == row.distinct_values
        assert torch.equal(ints[row.layer].dequantize(), weight)
        assert torch.equal(handle.quantized()[row.layer].values, ints[row.layer].values)
        assert all(torch.unique(channel).numel() <= 3 for channel in weight)


@pytest.mark.parametrize("method", ["share", "uniform"])
def test_choose_bits_picks_the_smallest_width_within_the_budget(trained, digits, method):
    xt, yt = digits.tensors("test")
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    scan = scan_bits(trained, xt, yt, candidates=(2, 3, 4, 8), max_drop=0.01, method=method)
    for name, v in trained.state_dict().items():
        assert torch.equal(v, before[name]), name  # the scan restores every layer
    assert scan.baseline_accuracy == evaluate(trained, xt, yt).accuracy
    for name in LAYERS:
        trials = {t.bits: t for t in scan.trials if t.layer == name}
        assert set(trials) == {2, 3, 4, 8}
        chosen = scan.chosen[name]
        assert trials[chosen].drop <= 0.01 and scan.within_budget[name]
        assert all(trials[b].drop > 0.01 for b in trials if b < chosen)
        assert trials[2].snr_db < trials[8].snr_db
    assert choose_bits(trained, xt, yt, max_drop=1.0, method=method) == {n: 2 for n in LAYERS}


def test_choose_bits_falls_back_to_the_widest_candidate(trained, digits):
    xt, yt = digits.tensors("test")
    scan = scan_bits(trained, xt, yt, candidates=(1,), max_drop=0.0, layers=["fc1"])
    assert scan.chosen == {"fc1": 1} and scan.within_budget == {"fc1": scan.trials[0].drop <= 0}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: quantize_qat(m, 1), r"in \[2, 8\]. Got 1"),
        (lambda m: quantize_qat(m, {"fc1": 9}), r"'fc1' must be an int in \[2, 8\]. Got 9"),
        (lambda m: quantize_qat(m, 4, granularity="group"), "granularity"),
        (lambda m: scan_bits(m, torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), max_drop=2), "max_drop"),
        (
            lambda m: scan_bits(
                m,
                torch.zeros(1, 1, 8, 8),
                torch.zeros(1, dtype=torch.long),
                max_drop=0.1,
                method="uniform",
                candidates=(1, 4),
            ),
            "candidates",
        ),
        (
            lambda m: scan_bits(
                m, torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), max_drop=0.1, method="kmeans"
            ),
            "method",
        ),
    ],
)
def test_bad_parameters_raise_config_errors(trained, call, match):
    with pytest.raises(ConfigError, match=match):
        call(copy.deepcopy(trained))


def test_finalizing_twice_is_refused(trained):
    model = copy.deepcopy(trained)
    handle = quantize_qat(model, 4, layers=["fc2"])
    assert not parametrize.is_parametrized(model.fc1)
    handle.finalize(model)
    with pytest.raises(ConfigError, match="no QAT parametrization"):
        handle.finalize(model)
