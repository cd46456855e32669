"""Removing dead units: the shrunk model computes what the sparse one does, on inputs it was not checked on."""

import copy

import torch
from torch import nn

from lepton.compress.shrink import remove_dead_units
from lepton.compress.structured import spec_for
from lepton.models import ModelSpec, count_params


def _sparse_lenet5() -> nn.Module:
    torch.manual_seed(0)
    model = ModelSpec("lenet5").build().eval()
    with torch.no_grad():
        model.conv1.weight[[2, 5, 7]] = 0  # constant filters: their bias reaches conv2 as a constant
        model.conv2.weight[:, 3] = 0  # nothing reads conv1's filter 3 (removable even with live weights)
        model.conv2.weight[[0, 1, 4]] = 0  # conv2 filters 0, 1 and 4 output their bias only
        model.fc1.weight[10:400] = 0  # 390 fc1 neurons output relu(bias) only
        model.fc2.weight[:, 450:] = 0  # nothing reads fc1's last 50 neurons
    return model


def test_dead_and_constant_units_are_removed_and_the_outputs_kept():
    sparse = _sparse_lenet5()
    check = torch.rand(64, 1, 28, 28)
    shrunk, report = remove_dead_units(sparse, check)
    assert report.note == ""
    assert report.widths == {"conv1": [20, 16], "conv2": [50, 47], "fc1": [500, 60]}
    assert report.folded == {"conv1": 3, "conv2": 3, "fc1": 390}
    assert count_params(shrunk) < count_params(sparse) / 5
    fresh = torch.rand(200, 1, 28, 28) * 2 - 0.5  # not the check inputs, not even in [0, 1]
    with torch.no_grad():
        assert torch.allclose(shrunk(fresh), sparse(fresh), atol=1e-4, rtol=1e-4)
    spec = spec_for(shrunk, ModelSpec("lenet5"))  # still a registry LeNet-5, its widths as arguments
    assert spec.graph is None and spec.kwargs == {"conv1": 16, "conv2": 47, "fc1": 60}


def test_the_input_model_is_left_unchanged_and_a_dense_model_kept_whole():
    sparse = _sparse_lenet5()
    before = copy.deepcopy(sparse.state_dict())
    remove_dead_units(sparse, torch.rand(8, 1, 28, 28))
    assert all(torch.equal(before[k], v) for k, v in sparse.state_dict().items())
    dense = ModelSpec("lenet-300-100").build()
    same, report = remove_dead_units(dense, torch.rand(8, 1, 28, 28))
    assert report.removed == {} and count_params(same) == count_params(dense)


def test_constants_through_zero_padding_are_not_folded():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 3))
    with torch.no_grad():
        model[0].weight[1] = 0
        model[0].bias[1] = 0.7  # relu(0.7) reaches the padded conv: its border sees zeros, not 0.7
    check = torch.rand(16, 1, 6, 6)
    shrunk, report = remove_dead_units(model, check)
    assert report.folded == {}
    with torch.no_grad():
        assert torch.allclose(shrunk(check), model(check), atol=1e-5)
