"""A LeNet-5 trained briefly on real MNIST, shared by the edge tests (a few seconds on 2 cores)."""

import pytest
import torch

from lepton.models import ModelSpec
from lepton.train.checkpoint import save_checkpoint


@pytest.fixture(scope="session")
def trained(mnist, tmp_path_factory):
    """(model, spec, checkpoint path): LeNet-5, one pass over 6,000 training images (>90% test accuracy)."""
    torch.manual_seed(0)
    spec = ModelSpec("lenet5")
    model = spec.build()
    x, y = mnist.tensors("train")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for i in range(0, 6000, 64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
        opt.step()
    model.eval()
    path = save_checkpoint(tmp_path_factory.mktemp("edge") / "lenet5", model, spec)
    return model, spec, path


@pytest.fixture(scope="session")
def onnx_path(trained, tmp_path_factory):
    """:func:`trained` exported to fp32 ONNX (the server tests serve it)."""
    from lepton.edge.export import export_onnx

    model, spec, _ = trained
    path = tmp_path_factory.mktemp("onnx") / "lenet5.onnx"
    export_onnx(model, path, input_shape=spec.input_shape)
    return path
