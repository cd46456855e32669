import pytest
import torch

from lepton.compress.structured import measure_latency, prune_channels, spec_for
from lepton.errors import ConfigError
from lepton.models import ModelSpec, build_model, count_macs, count_params
from lepton.train import TensorBatches, TrainConfig, evaluate, fit

MNIST = (1, 28, 28)
X = torch.zeros(1, *MNIST)


def model(name="lenet5", shape=MNIST, seed=0):
    torch.manual_seed(seed)
    return build_model(name, shape)


@pytest.mark.parametrize(
    "name,ratio,widths",
    [
        ("lenet5", 0.5, {"conv1": 10, "conv2": 25, "fc1": 250}),
        ("lenet5", 0.75, {"conv1": 5, "conv2": 12, "fc1": 125}),  # round(12.5) == 12
        ("lenet5-classic", 0.5, {"conv1": 3, "conv2": 8, "fc1": 60, "fc2": 42}),
        ("lenet-300-100", 0.9, {"fc1": 30, "fc2": 10}),
    ],
)
def test_prune_channels_shrinks_every_layer_but_the_classifier(name, ratio, widths):
    original = model(name)
    params, macs = count_params(original), count_macs(original, MNIST)
    small = prune_channels(original, X, ratio)
    spec = spec_for(small, ModelSpec(name))
    assert spec.kwargs == widths
    assert count_params(small) < params and count_macs(small, MNIST) < macs
    assert count_params(original) == params  # the original is left untouched
    assert small(torch.rand(3, *MNIST)).shape == (3, 10)


def test_ratio_dict_prunes_only_the_listed_layers():
    small = prune_channels(model(), X, {"conv2": 0.3})
    assert (small.conv1.out_channels, small.conv2.out_channels, small.fc1.out_features) == (20, 35, 500)
    assert small.fc1.in_features == 35 * 16


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(ratio={"fc2": 0.5}),  # the final classifier
        dict(ratio=1.0),
        dict(ratio={"conv9": 0.5}),
        dict(ratio=0.5, importance="taylor"),
        dict(ratio=0.5, ignored_layers=["nope"]),
        dict(ratio={"conv1": 0.5}, ignored_layers=["conv1"]),
    ],
)
def test_prune_channels_rejects_bad_parameters(kwargs):
    with pytest.raises(ConfigError):
        prune_channels(model(), X, **kwargs)


def test_ignored_layers_keep_their_width():
    small = prune_channels(model(), X, 0.5, ignored_layers=["fc1"])
    assert (small.conv1.out_channels, small.conv2.out_channels, small.fc1.out_features) == (10, 25, 500)


@pytest.mark.parametrize("importance", ["l1", "l2", "group_l2"])
def test_removing_zero_filters_leaves_outputs_unchanged(importance):
    original = model()
    dead = [0, 3, 7, 11, 19]
    with torch.no_grad():
        original.conv1.weight[dead] = 0
        original.conv1.bias[dead] = 0
        if importance == "group_l2":  # group importance also counts conv2's inputs from these channels
            original.conv2.weight[:, dead] = 0
    small = prune_channels(original, X, {"conv1": 0.25}, importance=importance)
    alive = [i for i in range(20) if i not in dead]
    assert torch.equal(small.conv1.weight, original.conv1.weight[alive])
    assert torch.equal(small.conv2.weight, original.conv2.weight[:, alive])
    x = torch.rand(16, *MNIST)
    with torch.no_grad():
        torch.testing.assert_close(small(x), original(x), atol=1e-5, rtol=0)


def test_removing_zero_hidden_units_leaves_mlp_outputs_unchanged():
    original = model("lenet-300-100")
    with torch.no_grad():
        original.fc1.weight[::2] = 0  # ReLU(0 + 0) = 0: these 150 units contribute nothing
        original.fc1.bias[::2] = 0
    small = prune_channels(original, X, {"fc1": 0.5})
    assert small.fc1.out_features == 150
    x = torch.rand(16, *MNIST)
    with torch.no_grad():
        torch.testing.assert_close(small(x), original(x), atol=1e-5, rtol=0)


def test_spec_for_rebuilds_the_pruned_architecture():
    small = prune_channels(model(), X, 0.6)
    spec = spec_for(small, ModelSpec("lenet5"))
    rebuilt = ModelSpec.from_dict(spec.to_dict()).build()
    rebuilt.load_state_dict(small.state_dict(), strict=True)
    x = torch.rand(4, *MNIST)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), small(x))
    assert count_params(rebuilt) == count_params(small)
    with pytest.raises(ConfigError):
        spec_for(small, ModelSpec("lenet5-classic"))
    with pytest.raises(ConfigError):
        spec_for(small, ModelSpec("lenet5", input_shape=(1, 32, 32)))  # fc1 would have another in_features


def test_pruned_model_fine_tunes_with_fit(digits):
    (x, y), test = digits.tensors("train"), digits.tensors("test")
    small = prune_channels(model("lenet-300-100", (1, 8, 8)), torch.zeros(1, 1, 8, 8), 0.5)
    assert (small.fc1.out_features, small.fc2.out_features) == (150, 50)
    report = fit(
        small,
        TensorBatches(x, y, 64),
        TrainConfig(epochs=3, batch_size=64, schedule="constant"),
        eval_data=test,
        progress=False,
    )
    assert report.final_test_accuracy > 0.8
    assert evaluate(small, *test).accuracy == report.final_test_accuracy


def test_measure_latency_restores_thread_count():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = measure_latency(model(), MNIST, batch=4, threads=1, repeats=5, warmup=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert result["batch"] == 4 and result["threads"] == 1 and result["repeats"] == 5
    assert 0 < result["p50_ms"] <= result["p90_ms"]
    with pytest.raises(ConfigError):
        measure_latency(model(), MNIST, repeats=0)
