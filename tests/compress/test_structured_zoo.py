"""Channel pruning on DAGs: the zoo (residual adds through a channel F.pad, depthwise convs, LayerNorm and
transposes) and a user model with BatchNorm + residual + depthwise; saving the pruned models in a `.lep`."""

import pytest
import torch
from torch import nn

from lepton.compress.container import load_lep, save_lep
from lepton.compress.fold import fold_batchnorm
from lepton.compress.structured import prune_channels_with_report, spec_for
from lepton.models import ModelSpec, build_model, count_macs, count_params
from lepton.models.graph import GraphModel
from tests.fixtures.user_nets import TinyResNet

MNIST = (1, 28, 28)
X = torch.zeros(1, *MNIST)
MODELS = ["resnet20", "mobilenetv2-small", "mlp-mixer-small", "lenet5", "lenet5-classic", "lenet-300-100", "user"]


def make(name, seed=0):
    torch.manual_seed(seed)
    if name == "user":
        return TinyResNet(1, 28, 10), ModelSpec("tests.fixtures.user_nets:make_resnet").with_graph(
            TinyResNet(1, 28, 10)
        )
    return build_model(name, MNIST), ModelSpec(name)


def randomise_bn(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_prune_channels_runs_on_every_model_and_saves_in_a_lep(name, tmp_path):
    original, base = make(name)
    original = randomise_bn(original).eval()
    small, report = prune_channels_with_report(original, X, 0.5)
    assert report.groups and all(g.after == round(g.before / 2) for g in report.groups)
    assert count_params(small) < count_params(original) and count_macs(small, MNIST) < count_macs(original, MNIST)
    classifier = list(original.named_modules())[-1][0]
    assert small.get_submodule(classifier).out_features == original.get_submodule(classifier).out_features == 10
    pruned = {layer for g in report.groups for layer in g.layers}
    assert classifier not in pruned and not pruned & set(report.kept_full)
    spec = spec_for(small, base)
    assert (spec.graph is None) == name.startswith("lenet")  # LeNets keep their name and widths
    save_lep(tmp_path / "m.lep", spec, small.state_dict())
    restored = load_lep(tmp_path / "m.lep").build_model()
    x = torch.rand(5, *MNIST)
    with torch.no_grad():
        assert torch.equal(restored.eval()(x), small.eval()(x))
        assert small(x).shape == (5, 10)


def test_resnet20_prunes_the_inner_conv_of_every_block_and_keeps_the_padded_stream():
    original, _ = make("resnet20")
    small, report = prune_channels_with_report(original, X, 0.5)
    assert sorted(layer for g in report.groups for layer in g.layers) == sorted(f"layers.{i}.conv1" for i in range(9))
    stream = ["conv1", *(f"layers.{i}.conv2" for i in range(9))]
    assert sorted(report.kept_full) == sorted(stream)
    assert all("ConstantPadNd" in why for why in report.kept_full.values())
    for i, width in enumerate([16] * 3 + [32] * 3 + [64] * 3):
        block = small.layers[i]
        assert (block.conv1.out_channels, block.bn1.num_features, block.conv2.in_channels) == (width // 2,) * 3
        assert block.conv2.out_channels == width


def test_mobilenet_prunes_expansion_and_depthwise_channels_together():
    original, _ = make("mobilenetv2-small")
    small, report = prune_channels_with_report(original, X, {"blocks.1.block.3": 0.25})
    assert [g.layers for g in report.groups] == [["blocks.1.block.0", "blocks.1.block.3"]]
    block = small.blocks[1].block
    assert block[0].out_channels == block[3].in_channels == block[3].out_channels == block[3].groups == 72
    assert block[6].in_channels == 72 and block[6].out_channels == 24


def test_mixer_prunes_the_mlp_hidden_units_and_keeps_the_transposed_stream():
    original, _ = make("mlp-mixer-small")
    small, report = prune_channels_with_report(original, X, 0.5)
    assert {g.layers[0].rsplit(".", 1)[1] for g in report.groups} == {"token_fc1", "channel_fc1"}
    assert "embed" in report.kept_full and "Transpose" in report.kept_full["embed"]
    assert small.blocks[0].channel_fc1.out_features == 128 and small.blocks[0].norm1.normalized_shape == (64,)


def test_layers_coupled_with_an_untracked_op_cannot_be_named():
    with pytest.raises(Exception, match="ConstantPadNd"):
        prune_channels_with_report(make("resnet20")[0], X, {"layers.0.conv2": 0.5})


def test_removing_dead_channels_of_a_residual_block_leaves_outputs_unchanged():
    """An independent check of the coupling: channels whose conv filter is zero and whose BatchNorm then
    outputs a negative constant are dead after the ReLU; removing them must not change the outputs."""
    original, _ = make("resnet20")
    original = randomise_bn(original).eval()
    dead = [1, 4, 6, 9]
    block = original.layers[4]  # 32 inner channels
    with torch.no_grad():
        block.conv1.weight[dead] = 0
        block.bn1.running_mean[dead] = 0
        block.bn1.bias[dead] = -1.0
    small, _ = prune_channels_with_report(original, X, {"layers.4.conv1": 0.125})
    assert small.layers[4].conv1.out_channels == 28
    x = torch.rand(8, *MNIST)
    with torch.no_grad():
        torch.testing.assert_close(small(x), original(x), atol=1e-5, rtol=0)


def test_a_pruned_and_folded_registry_model_round_trips_through_a_lep(tmp_path):
    original, base = make("mobilenetv2-small")
    folded = fold_batchnorm(prune_channels_with_report(randomise_bn(original).eval(), X, 0.5)[0])
    spec = spec_for(folded, base)
    assert spec.name == "mobilenetv2-small" and spec.graph is not None
    save_lep(tmp_path / "m.lep", spec, folded.state_dict())
    restored = load_lep(tmp_path / "m.lep").build_model()
    assert isinstance(restored, GraphModel) and not any(isinstance(m, nn.BatchNorm2d) for m in restored.modules())
    x = torch.rand(5, *MNIST)
    with torch.no_grad():
        assert torch.equal(restored.eval()(x), folded.eval()(x))
