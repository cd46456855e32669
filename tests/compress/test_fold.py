"""BatchNorm folding against the unfolded eval-mode model, and an ONNX export without BatchNormalization."""

import onnx
import pytest
import torch
from torch import nn

from lepton.compress.fold import fold_batchnorm, fold_pairs
from lepton.edge.export import export_onnx, max_abs_diff, onnx_session
from lepton.errors import ConfigError
from lepton.models import build_model
from tests.compress.test_structured_zoo import randomise_bn
from tests.fixtures.user_nets import Branchy, TinyResNet

MNIST = (1, 28, 28)


def zoo(name):
    torch.manual_seed(0)
    return randomise_bn(TinyResNet(1, 28, 10) if name == "user" else build_model(name, MNIST))


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2-small", "mlp-mixer-small", "lenet5", "user"])
def test_folded_model_matches_the_unfolded_eval_model(name):
    model = zoo(name).eval()
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded = fold_batchnorm(model).eval()
    assert len(fold_pairs(model)) == norms  # every BatchNorm in the zoo follows a conv used nowhere else
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == norms  # the original is untouched
    x = torch.rand(16, *MNIST)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_depthwise_conv_without_bias_gains_one():
    model = zoo("mobilenetv2-small").eval()
    dw = fold_batchnorm(model).blocks[1].block[3]
    assert dw.groups == dw.out_channels == 96 and dw.bias is not None and dw.bias.shape == (96,)


def test_a_conv_whose_output_is_used_twice_is_not_folded():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = randomise_bn(Twice()).eval()
    assert fold_pairs(model) == []
    folded = fold_batchnorm(model)
    assert isinstance(folded.bn, nn.BatchNorm2d)


def test_linear_batchnorm1d_folds_only_when_the_output_is_two_dimensional():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[2].running_mean.uniform_(-1, 1)
        model[2].running_var.uniform_(0.5, 2)
        model[2].weight.uniform_(-2, 2)
    model.eval()
    assert fold_pairs(model) == []  # without an input the rank of the linear output is unknown
    x = torch.rand(8, *MNIST)
    folded = fold_batchnorm(model, x[:1]).eval()
    assert isinstance(folded[2], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_untraceable_models_are_config_errors():
    with pytest.raises(ConfigError, match="cannot trace"):
        fold_batchnorm(Branchy())


@pytest.mark.parametrize("name", ["resnet20", "user"])
def test_onnx_export_folds_batchnorm(name, tmp_path):
    model = zoo(name).eval()
    export_onnx(model, tmp_path / "m.onnx", input_shape=MNIST)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert max_abs_diff(model, onnx_session(tmp_path / "m.onnx"), torch.rand(8, *MNIST)) < 1e-4
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # export leaves the model alone


def test_a_model_rebuilt_from_its_file_graph_saves_its_folded_architecture(tmp_path):
    # A user model read back from a checkpoint or .lep is a GraphModel; folding swaps its BatchNorms for
    # Identity and gives its convs biases, so the graph stored in the next file must be traced afresh.
    from lepton.compress.container import load_lep, save_lep
    from lepton.models import ModelSpec

    spec = ModelSpec("mypkg:make", MNIST, 10).with_graph(zoo("user"))
    rebuilt = spec.load(zoo("user").state_dict()).eval()
    folded = fold_batchnorm(rebuilt, torch.zeros(1, *MNIST)).eval()
    folded_spec = spec.with_graph(folded)
    assert "BatchNorm2d" not in {m["type"] for m in folded_spec.graph["modules"].values()}
    save_lep(tmp_path / "f.lep", folded_spec, folded.state_dict())
    decoded = load_lep(tmp_path / "f.lep").build_model().eval()
    x = torch.rand(4, *MNIST)
    assert torch.equal(decoded(x), folded(x))
    assert spec.with_graph(rebuilt) is spec  # an unchanged GraphModel keeps its stored graph
