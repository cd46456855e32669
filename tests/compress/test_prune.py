import io

import numpy as np
import pytest
import torch
from rich.console import Console

from lepton.compress.prune import (
    GradualPruner,
    PruneResult,
    apply_masks,
    cubic_sparsity,
    magnitude_masks,
    prunable_weights,
    prune_gradual,
    sparsity_table,
)
from lepton.compress.sensitivity import (
    LayerSensitivity,
    SensitivityPoint,
    SensitivityScan,
    allocate_rates,
    choose_rates,
    sensitivity_scan,
)
from lepton.errors import ConfigError
from lepton.models import build_model
from lepton.train import TensorBatches, TrainConfig, evaluate, fit

DIGITS = (1, 8, 8)
CFG = TrainConfig(epochs=3, batch_size=64, lr=0.05, schedule="constant")


def lenet5(seed=0):
    torch.manual_seed(seed)
    return build_model("lenet5")


@pytest.fixture(scope="module")
def digit_tensors(digits):
    return digits.tensors("train"), digits.tensors("test")


@pytest.fixture(scope="module")
def trained_mlp(digit_tensors):
    (x, y), _ = digit_tensors
    torch.manual_seed(0)
    model = build_model("lenet-300-100", DIGITS)
    fit(model, TensorBatches(x, y, 64), CFG, progress=False)
    return model


def test_prunable_weights_are_conv_and_linear_weights():
    model = lenet5()
    weights = prunable_weights(model)
    assert list(weights) == ["conv1", "conv2", "fc1", "fc2"]
    assert weights["fc1"] is model.fc1.weight


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.97])
def test_layer_scope_keeps_exact_count_of_largest(sparsity):
    model = lenet5()
    masks = magnitude_masks(model, sparsity)
    for name, w in prunable_weights(model).items():
        m, a = masks[name], w.detach().abs()
        assert m.dtype == torch.bool and m.shape == w.shape
        assert int(m.sum()) == round((1 - sparsity) * w.numel())
        if 0 < sparsity:
            assert a[m].min() >= a[~m].max()


def test_layer_scope_dict_leaves_unlisted_layers_dense():
    model = lenet5()
    masks = magnitude_masks(model, {"fc1": 0.92, "conv2": 0.5})
    assert int(masks["fc1"].sum()) == round(0.08 * 800 * 500)
    assert int(masks["conv2"].sum()) == 50 * 20 * 25 // 2
    assert bool(masks["conv1"].all()) and bool(masks["fc2"].all())


def test_exact_counts_even_when_all_weights_tie():
    model = lenet5()
    with torch.no_grad():
        model.conv1.weight.zero_()
    assert int(magnitude_masks(model, 0.3)["conv1"].sum()) == round(0.7 * 500)


def test_global_scope_matches_numpy_threshold():
    model = lenet5()
    weights = {k: v.detach().numpy() for k, v in prunable_weights(model).items()}
    everything = np.abs(np.concatenate([w.ravel() for w in weights.values()]))
    keep = round(0.1 * everything.size)
    threshold = np.sort(everything)[everything.size - keep]  # the keep-th largest magnitude
    masks = magnitude_masks(model, 0.9, scope="global")
    assert sum(int(m.sum()) for m in masks.values()) == keep
    for name, w in weights.items():
        np.testing.assert_array_equal(masks[name].numpy(), np.abs(w) >= threshold)
    layer_rate = {k: 1 - float(m.float().mean()) for k, m in masks.items()}
    assert layer_rate["fc1"] > 0.9 > layer_rate["conv1"]  # the big layer of small weights loses the most


def test_global_scope_with_overrides():
    model = lenet5()
    masks = magnitude_masks(model, 0.9, scope="global", overrides={"fc2": 0.5})
    assert int(masks["fc2"].sum()) == 2500
    pooled = [n for n in masks if n != "fc2"]
    total = sum(masks[n].numel() for n in pooled)
    assert sum(int(masks[n].sum()) for n in pooled) == round(0.1 * total)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: magnitude_masks(m, 1.0),
        lambda m: magnitude_masks(m, -0.1),
        lambda m: magnitude_masks(m, {"fc9": 0.5}),
        lambda m: magnitude_masks(m, {"fc1": 0.5}, scope="global"),
        lambda m: magnitude_masks(m, 0.5, scope="everywhere"),
        lambda m: magnitude_masks(m, 0.5, overrides={"nope": 0.1}),
    ],
)
def test_bad_parameters_raise_config_error(call):
    with pytest.raises(ConfigError):
        call(lenet5())


def test_apply_masks_zeroes_exactly_the_masked_weights():
    model, original = lenet5(), lenet5()
    masks = magnitude_masks(model, 0.8)
    apply_masks(model, masks)
    for name, w in prunable_weights(model).items():
        ref = prunable_weights(original)[name].detach()
        assert torch.equal(w.detach(), torch.where(masks[name], ref, torch.zeros_like(ref)))
    rows = {r["layer"]: r for r in sparsity_table(model)}
    assert rows["fc1"]["nonzero"] == round(0.2 * 400_000) and rows["fc1"]["params"] == 400_000
    assert rows["fc1"]["sparsity"] == pytest.approx(0.8)


def test_cubic_sparsity_at_hand_computed_points():
    kw = dict(initial=0.0, final=0.8, begin_step=0, end_step=100)
    assert cubic_sparsity(0, **kw) == 0.0
    assert cubic_sparsity(25, **kw) == pytest.approx(0.8 - 0.8 * 0.75**3)  # 0.4625
    assert cubic_sparsity(50, **kw) == pytest.approx(0.7)  # 0.8 - 0.8 / 8
    assert cubic_sparsity(100, **kw) == 0.8 and cubic_sparsity(500, **kw) == 0.8
    kw = dict(initial=0.2, final=0.9, begin_step=10, end_step=110)
    assert cubic_sparsity(5, **kw) == 0.2
    assert cubic_sparsity(60, **kw) == pytest.approx(0.8125)  # 0.9 - 0.7 / 8
    with pytest.raises(ConfigError):
        cubic_sparsity(0, initial=0.5, final=0.3, begin_step=0, end_step=10)
    with pytest.raises(ConfigError):
        cubic_sparsity(0, initial=0.0, final=0.5, begin_step=10, end_step=5)


def test_gradual_pruner_update_grid():
    pruner = GradualPruner(0.8, begin_step=4, end_step=21, frequency=5)
    assert [t for t in range(40) if pruner.updates_at(t)] == [4, 9, 14, 19, 21]
    with pytest.raises(ConfigError):
        GradualPruner(0.8, begin_step=0, end_step=10, frequency=0)
    with pytest.raises(ConfigError):
        GradualPruner({"fc1": 0.8}, begin_step=0, end_step=10, frequency=1, scope="global")


def test_masks_stay_fixed_and_zero_while_fine_tuning(digit_tensors):
    (x, y), _ = digit_tensors
    torch.manual_seed(1)
    model = build_model("lenet-300-100", DIGITS)
    pruner = GradualPruner({"fc1": 0.9, "fc2": 0.7}, begin_step=0, end_step=20, frequency=5)
    frozen, checks = {}, []

    def after_step(m):
        pruner(m)
        step = pruner.step - 1
        for name, w in prunable_weights(m).items():
            checks.append(bool((w.detach()[~pruner.masks[name]] == 0).all()))
        if step == pruner.end_step:
            frozen.update({k: v.clone() for k, v in pruner.masks.items()})
            frozen_weights.update({k: v.detach().clone() for k, v in prunable_weights(m).items()})
        if step > pruner.end_step:
            checks.append(all(torch.equal(pruner.masks[k], v) for k, v in frozen.items()))

    frozen_weights = {}
    report = fit(model, TensorBatches(x, y, 64), CFG, after_step=after_step, progress=False)
    assert report.steps == pruner.step == 3 * 23 > pruner.end_step
    assert all(checks) and len(checks) > 3 * 69
    for name, w in prunable_weights(model).items():
        assert torch.equal(pruner.masks[name], frozen[name])
        assert (w.detach()[~frozen[name]] == 0).all()
        assert not torch.equal(w.detach(), frozen_weights[name])  # the kept weights did fine-tune
    rows = {r["layer"]: r for r in sparsity_table(model)}
    assert rows["fc1"]["nonzero"] == round(0.1 * 64 * 300)
    assert rows["fc2"]["nonzero"] == round(0.3 * 300 * 100)
    assert rows["fc3"]["sparsity"] == 0.0


def test_prune_gradual_reaches_target_and_passes_objective_through(digit_tensors):
    (x, y), test = digit_tensors
    torch.manual_seed(2)
    model = build_model("lenet-300-100", DIGITS)
    calls = []

    def objective(logits, targets, inputs):
        calls.append(len(inputs))
        return torch.nn.functional.cross_entropy(logits, targets)

    result = prune_gradual(
        model,
        TensorBatches(x, y, 64),
        CFG.model_copy(update={"epochs": 4}),
        0.8,
        scope="global",
        overrides={"fc3": 0.3},
        eval_data=test,
        objective=objective,
        progress=False,
    )
    assert isinstance(result, PruneResult)
    assert len(calls) == result.train.steps == 4 * 23
    assert result.end_step == 45 and result.frequency == 2
    pooled = [r for r in result.table if r["layer"] != "fc3"]
    assert sum(r["nonzero"] for r in pooled) == round(0.2 * sum(r["params"] for r in pooled))
    assert result.table[-1]["nonzero"] == round(0.7 * 1000)
    assert result.train.final_test_accuracy > 0.85
    assert result.to_dict()["sparsity"] == pytest.approx(result.sparsity)
    with pytest.raises(ConfigError):
        prune_gradual(model, TensorBatches(x, y, 64), CFG, 0.8, ramp_fraction=0.0, progress=False)


def test_sensitivity_scan_restores_weights_and_degrades_with_rate(trained_mlp, digit_tensors):
    _, (x, y) = digit_tensors
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    scan = sensitivity_scan(trained_mlp, x, y, rates=(0.99, 0.5, 0.9), layers=["fc1", "fc2"])
    for k, v in trained_mlp.state_dict().items():
        assert torch.equal(v, before[k])
    assert scan.rates == [0.5, 0.9, 0.99] and [s.layer for s in scan.layers] == ["fc1", "fc2"]
    assert scan.baseline_accuracy == evaluate(trained_mlp, x, y).accuracy
    for layer in scan.layers:
        acc = [p.accuracy for p in layer.points]
        assert acc[0] >= scan.baseline_accuracy - 0.05
        assert acc[-1] <= acc[0] + 0.01
    # the fc2 point at 0.9 recomputed by hand: numpy magnitude threshold, then evaluate
    w = trained_mlp.fc2.weight.detach().numpy()
    keep = round(0.1 * w.size)
    pruned = np.where(np.abs(w) >= np.sort(np.abs(w).ravel())[w.size - keep], w, 0)
    with torch.no_grad():
        trained_mlp.fc2.weight.copy_(torch.from_numpy(pruned))
    try:
        assert scan.layers[1].points[1].accuracy == evaluate(trained_mlp, x, y).accuracy
    finally:
        trained_mlp.load_state_dict(before)


def test_choose_rates_stops_at_the_first_rate_over_budget():
    def layer(name, accs):
        return LayerSensitivity(
            layer=name, params=10, points=[SensitivityPoint(rate=r, accuracy=a) for r, a in zip((0.5, 0.8, 0.9), accs)]
        )

    scan = SensitivityScan(
        samples=100,
        baseline_accuracy=0.95,
        rates=[0.5, 0.8, 0.9],
        layers=[layer("a", [0.95, 0.945, 0.90]), layer("b", [0.94, 0.93, 0.949]), layer("c", [0.95, 0.95, 0.95])],
    )
    assert choose_rates(scan, max_drop=0.005) == {"a": 0.8, "b": 0.0, "c": 0.9}
    assert choose_rates(scan, max_drop=0.05) == {"a": 0.9, "b": 0.9, "c": 0.9}
    with pytest.raises(ConfigError):
        choose_rates(scan, max_drop=-0.1)


def _scan(baseline: float, curves: dict[str, tuple[int, list[tuple[float, float]]]]) -> SensitivityScan:
    return SensitivityScan(
        samples=1000,
        baseline_accuracy=baseline,
        rates=sorted({r for _, pts in curves.values() for r, _ in pts}),
        layers=[
            LayerSensitivity(layer=name, params=n, points=[SensitivityPoint(rate=r, accuracy=a) for r, a in pts])
            for name, (n, pts) in curves.items()
        ],
    )


def test_allocate_rates_spends_the_budget_where_it_removes_most_weights():
    # "big" pays 1 point for 0.5 -> 0.9 on 10,000 weights; "mid" pays 1 point for 0.5 on 1,000 weights.
    scan = _scan(
        0.90,
        {
            "big": (10_000, [(0.5, 0.90), (0.9, 0.89), (0.95, 0.85)]),
            "mid": (1_000, [(0.5, 0.89), (0.9, 0.87)]),
            "tiny": (20, [(0.5, 0.90), (0.9, 0.90)]),  # under 0.5% of the weights: stays dense
        },
    )
    # brute force over every combination of scanned rates: the budget-feasible one removing most weights
    best = max(
        (
            (b, m)
            for b in (0.0, 0.5, 0.9, 0.95)
            for m in (0.0, 0.5, 0.9)
            if {0.0: 0, 0.5: 0, 0.9: 0.01, 0.95: 0.05}[b] + {0.0: 0, 0.5: 0.01, 0.9: 0.03}[m] <= 0.01 + 1e-12
        ),
        key=lambda bm: 10_000 * bm[0] + 1_000 * bm[1],
    )
    assert best == (0.9, 0.0)
    assert allocate_rates(scan, budget=0.01, max_layer_drop=0.05) == {"big": 0.9, "mid": 0.0, "tiny": 0.0}
    # a larger budget buys "mid" too; max_rate and max_layer_drop cap every layer
    assert allocate_rates(scan, budget=0.02, max_layer_drop=0.05) == {"big": 0.9, "mid": 0.5, "tiny": 0.0}
    assert allocate_rates(scan, budget=1.0, max_layer_drop=0.02, max_rate=0.9) == {
        "big": 0.9,
        "mid": 0.5,
        "tiny": 0.0,
    }


def test_allocate_rates_prunes_an_under_trained_model_that_the_per_layer_rule_leaves_dense():
    # every layer loses a little (0.5 points) at 50%: a 0.4-point per-layer threshold keeps all dense
    layers = {f"l{i}": (5_000, [(0.5, 0.655), (0.7, 0.64), (0.9, 0.55)]) for i in range(4)}
    scan = _scan(0.66, layers)
    assert set(choose_rates(scan, max_drop=0.004).values()) == {0.0}
    rates = allocate_rates(scan, budget=0.02, max_layer_drop=0.01)
    assert rates == {f"l{i}": 0.5 for i in range(4)}


def test_allocate_rates_treats_a_noisy_curve_as_monotone_and_checks_its_arguments():
    # 0.9 looks free but 0.7 failed: the envelope forbids jumping past the failure
    scan = _scan(0.9, {"a": (1_000, [(0.5, 0.9), (0.7, 0.85), (0.9, 0.9)])})
    assert allocate_rates(scan, budget=0.02, max_layer_drop=0.1) == {"a": 0.5}
    assert allocate_rates(scan, budget=0.05, max_layer_drop=0.1) == {"a": 0.9}  # pays 0.7's drop
    with pytest.raises(ConfigError, match="budget"):
        allocate_rates(scan, budget=-1, max_layer_drop=0.02)
    with pytest.raises(ConfigError, match="max_rate"):
        allocate_rates(scan, budget=0.02, max_layer_drop=0.02, max_rate=1.0)


def test_sensitivity_scan_shows_progress_with_time_left_and_quiet_shows_nothing(trained_mlp, digit_tensors):
    _, (x, y) = digit_tensors
    quiet_out, shown_out = io.StringIO(), io.StringIO()
    kwargs = {"rates": (0.5, 0.9), "layers": ["fc1", "fc2"]}
    quiet = sensitivity_scan(trained_mlp, x, y, progress=False, console=_terminal(quiet_out), **kwargs)
    shown = sensitivity_scan(trained_mlp, x, y, progress=True, console=_terminal(shown_out), **kwargs)
    assert quiet_out.getvalue() == ""
    text = shown_out.getvalue()
    assert "sensitivity scan" in text and "eta" in text and "4/4" in text  # 2 layers x 2 rates, all done
    assert shown == quiet  # the bar changes nothing in the scan


def _terminal(out: io.StringIO) -> Console:
    return Console(file=out, force_terminal=True, width=160)
