import copy

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch import nn
from torch.nn.utils import parametrize

from lepton.compress.share import distinct_nonzero, kmeans_1d, share_weights
from lepton.errors import ConfigError
from lepton.train import TensorBatches, evaluate, fit
from tests.compress.conftest import DIGITS_CFG as CFG

# A centroid's gradient is the sum over its cluster (thousands of weights): Adam's scale-free steps suit it.
FINE_TUNE = CFG.model_copy(update={"epochs": 3, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "seed": 1})


def _prune(model: nn.Module, fraction: float) -> nn.Module:
    """Magnitude-prune every weight matrix to exact zeros (how pruned models reach weight sharing)."""
    pruned = copy.deepcopy(model)
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                threshold = m.weight.abs().flatten().kthvalue(int(fraction * m.weight.numel())).values
                m.weight[m.weight.abs() <= threshold] = 0
    return pruned


def _tiny_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def _sklearn_centers(values: torch.Tensor, k: int) -> KMeans:
    v = values.double().numpy()[:, None]
    init = np.linspace(v.min(), v.max(), k)[:, None]
    return KMeans(k, init=init, n_init=1, max_iter=300, tol=0, algorithm="lloyd").fit(v)


@pytest.mark.parametrize("k", [4, 16, 32])
def test_kmeans_matches_sklearn_with_linear_init(k):
    g = torch.Generator().manual_seed(k)
    # A narrow bulk with a few large weights: linear init leaves tail clusters empty, which both relocate.
    values = torch.cat([0.1 * torch.randn(4000, generator=g), 0.5 * torch.randn(20, generator=g)])
    centroids, assign = kmeans_1d(values, k, iters=300)
    ref = _sklearn_centers(values, k)
    np.testing.assert_allclose(centroids.numpy(), np.sort(ref.cluster_centers_[:, 0]), atol=1e-5)
    np.testing.assert_allclose(centroids[assign].numpy(), ref.cluster_centers_[ref.labels_, 0], atol=1e-5)
    assert torch.bincount(assign, minlength=k).min() > 0  # no codebook entry wasted


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_converges_to_a_lloyd_fixed_point(init):
    values = torch.randn(3000, generator=torch.Generator().manual_seed(1)) ** 3
    centroids, assign = kmeans_1d(values, 8, init=init, iters=500)
    assert len(centroids) == 8 and torch.all(centroids[1:] > centroids[:-1])
    nearest = (values[:, None] - centroids[None, :]).abs().argmin(1)
    assert torch.equal(assign, nearest)
    for j in range(8):
        assert centroids[j] == pytest.approx(values[assign == j].double().mean().item(), abs=1e-6)


def test_kmeans_with_few_distinct_values_is_lossless():
    values = torch.tensor([0.5, -1.0, 0.5, 2.0, -1.0, 3.0])
    centroids, assign = kmeans_1d(values, 8)
    assert torch.equal(centroids, torch.tensor([-1.0, 0.5, 2.0, 3.0]))
    assert torch.equal(centroids[assign], values)


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 4, "iters": -1}, {"k": 4, "init": "kmeans++"}])
def test_kmeans_rejects_bad_parameters(kwargs):
    with pytest.raises(ConfigError, match="kmeans_1d"):
        kmeans_1d(torch.randn(10), **kwargs)


def test_centroid_gradient_is_the_sum_of_its_cluster_gradients():
    torch.manual_seed(0)
    layer = nn.Linear(20, 7)
    with torch.no_grad():
        layer.weight[layer.weight.abs() < 0.05] = 0
    share_weights(layer, 2)
    shared = layer.parametrizations.weight[0]
    x, target = torch.randn(5, 20), torch.randn(5, 7)
    nn.functional.mse_loss(layer(x), target).backward()

    weight = layer.weight.detach().clone().requires_grad_(True)  # the same forward with a plain weight
    nn.functional.mse_loss(nn.functional.linear(x, weight, layer.bias.detach()), target).backward()
    expected = torch.zeros(4).scatter_add(0, shared.index[shared.mask], weight.grad[shared.mask])
    torch.testing.assert_close(shared.codebook.grad, expected)
    assert layer.parametrizations.weight.original.grad is None
    trainable = {id(p) for p in layer.parameters() if p.requires_grad}
    assert trainable == {id(shared.codebook), id(layer.bias)}


@pytest.mark.parametrize("bits", [1, 3, 5])
def test_finalize_keeps_zeros_and_at_most_2_to_the_bits_values(trained, bits):
    for model in (_prune(trained, 0.7), _prune(_tiny_convnet(), 0.5)):
        zeros = {n: m.weight == 0 for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
        keys = set(model.state_dict())
        sharing = share_weights(model, bits)
        sharing.finalize(model)
        assert set(model.state_dict()) == keys
        for name, m in model.named_modules():
            if name in zeros:
                assert not parametrize.is_parametrized(m)
                assert torch.equal(m.weight == 0, zeros[name]), name
                assert distinct_nonzero(m.weight) <= 2**bits
                assert m.weight.requires_grad


def test_fine_tuning_centroids_recovers_accuracy(trained, digits):
    model = _prune(trained, 0.8)
    zeros = model.fc1.weight == 0
    x, y = digits.tensors("train")
    xt, yt = digits.tensors("test")
    pruned_accuracy = evaluate(model, xt, yt).accuracy
    sharing = share_weights(model, 2)
    before = {n: c.clone() for n, c in sharing.codebooks().items()}
    shared_accuracy = evaluate(model, xt, yt).accuracy
    fit(model, TensorBatches(x, y, FINE_TUNE.batch_size, seed=1), FINE_TUNE, progress=False)
    tuned_accuracy = evaluate(model, xt, yt).accuracy
    assert not torch.equal(sharing.codebooks()["fc1"], before["fc1"])
    sharing.finalize(model)
    assert evaluate(model, xt, yt).accuracy == tuned_accuracy
    assert tuned_accuracy > shared_accuracy and tuned_accuracy >= pruned_accuracy - 0.02
    assert torch.equal(model.fc1.weight == 0, zeros)
    assert all(distinct_nonzero(m.weight) <= 4 for m in (model.fc1, model.fc2, model.fc3))


def test_per_layer_bits_and_report(trained):
    model = _prune(trained, 0.5)
    sharing = share_weights(model, {"fc1": 2, "fc3": 6})
    assert not parametrize.is_parametrized(model.fc2)
    rows = {r.layer: r for r in sharing.report().layers}
    assert set(rows) == {"fc1", "fc3"}
    assert (rows["fc1"].bits, rows["fc1"].centroids) == (2, 4)
    assert rows["fc1"].kept_weights == rows["fc1"].total_weights - rows["fc1"].total_weights // 2
    assert rows["fc3"].centroids == 64 and rows["fc3"].total_weights == 1000
    assert sharing.report().index_bits == 2 * rows["fc1"].kept_weights + 6 * rows["fc3"].kept_weights


def test_all_zero_layer_is_left_alone():
    model = _tiny_convnet()
    with torch.no_grad():
        model[0].weight.zero_()
    sharing = share_weights(model, 4)
    assert list(sharing.bits) == ["3"] and not parametrize.is_parametrized(model[0])


@pytest.mark.parametrize(
    "bits, kwargs, match",
    [
        (0, {}, r"must be an int in \[1, 8\]. Got 0"),
        (9, {}, r"must be an int in \[1, 8\]. Got 9"),
        (4, {"layers": ["fc9"]}, "unknown layer"),
        ({"fc1": 2}, {"layers": ["fc1"]}, "not both"),
    ],
)
def test_share_weights_rejects_bad_parameters(trained, bits, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        share_weights(copy.deepcopy(trained), bits, **kwargs)


def test_sharing_twice_or_finalizing_twice_is_refused(trained):
    model = copy.deepcopy(trained)
    sharing = share_weights(model, 4)
    with pytest.raises(ConfigError, match="finalize the previous step"):
        share_weights(model, 4)
    sharing.finalize(model)
    with pytest.raises(ConfigError, match="not weight-shared"):
        sharing.finalize(model)
