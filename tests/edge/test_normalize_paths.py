"""A model that stores its input normalization gives the in-process ``model(x)`` on raw [0, 1] input on every
path: checkpoint, .lep, ONNX fp32 and int8 (onnxruntime), the OIP server (.lep and .onnx), the split planner's edge and cloud
at every cut, BatchNorm folding and channel pruning; the same weights without it answer differently."""

import numpy as np
import onnx
import pytest
import torch

from lepton.compress.container import save_lep
from lepton.compress.fold import fold_batchnorm
from lepton.compress.structured import prune_channels_with_report, spec_for
from lepton.edge.cuts import head_tail, layer_chain
from lepton.edge.export import export_onnx, onnx_session, run_session
from lepton.edge.quantize import calibration_sample, quantize_onnx
from lepton.errors import ConfigError
from lepton.models.registry import ModelSpec
from lepton.train.checkpoint import load_checkpoint, save_checkpoint
from lepton.train.config import TrainConfig
from lepton.train.evaluate import evaluate
from lepton.train.job import train_model
from tests.edge.served import served_logits

SHAPE = (3, 8, 8)
NORM = ((0.6, 0.3, 0.45), (0.2, 0.15, 0.3))


@pytest.fixture(scope="module")
def model():
    """ResNet-20 (BatchNorm, residual adds) with non-trivial running statistics, normalizing its input."""
    torch.manual_seed(0)
    m = ModelSpec("resnet20", SHAPE, 10, normalize=NORM).build()
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.rand(16, *SHAPE))
    return m.eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(1))


def _logits(m, x):
    with torch.no_grad():
        return m.eval()(x)


def test_without_the_stored_normalization_the_logits_differ(model, x):
    plain = ModelSpec("resnet20", SHAPE, 10).load(model.state_dict())
    assert not torch.allclose(_logits(plain, x), _logits(model, x), atol=1e-2)


def test_checkpoint_lep_onnx_and_server_agree_with_the_model(model, x, tmp_path):
    spec = ModelSpec("resnet20", SHAPE, 10, normalize=NORM)
    want = _logits(model, x)
    save_checkpoint(tmp_path / "m", model, spec)
    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt.spec.normalize == spec.normalize
    assert torch.equal(_logits(ckpt.build_model(), x), want)
    save_lep(tmp_path / "m.lep", spec, model.state_dict())
    export_onnx(model, tmp_path / "m.onnx", input_shape=SHAPE)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node if n.op_type != "Constant"]
    assert ops[:2] == ["Sub", "Div"] and ops.count("Sub") == 1, ops[:4]  # applied once, first
    got = run_session(onnx_session(tmp_path / "m.onnx"), x.numpy())
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-4)
    (tmp_path / "served").mkdir()
    for name in ("m.lep", "m.onnx"):
        np.testing.assert_allclose(served_logits(tmp_path / name, x.numpy()), want.numpy(), atol=1e-4, rtol=1e-4)


def test_split_planner_applies_it_on_the_edge_at_every_cut(model, x):
    chain = layer_chain(model, x[:1])
    assert chain[0][0] == "input_norm"
    want = _logits(model, x)
    for cut in range(len(chain) + 1):
        edge, cloud = head_tail(chain, cut)
        with torch.no_grad():
            torch.testing.assert_close(cloud(edge(x)), want, atol=1e-5, rtol=1e-5)


def test_folding_and_channel_pruning_keep_it(model, x):
    spec = ModelSpec("resnet20", SHAPE, 10, normalize=NORM)
    folded = fold_batchnorm(model)
    folded_spec = spec.with_graph(folded)
    assert folded_spec.graph is not None and folded_spec.normalize == spec.normalize
    rebuilt = folded_spec.load(folded.state_dict())
    torch.testing.assert_close(_logits(rebuilt, x), _logits(model, x), atol=1e-4, rtol=1e-4)
    pruned, _ = prune_channels_with_report(model, x[:1], 0.5)
    pruned_spec = spec_for(pruned, spec)
    assert pruned_spec.normalize == spec.normalize
    assert torch.equal(_logits(pruned_spec.load(pruned.state_dict()), x), _logits(pruned, x))


def test_training_with_auto_stores_the_training_statistics_and_eval_and_int8_agree(digits, tmp_path):
    data = digits.subset(800, 200)
    job = train_model(data, "lenet-300-100", TrainConfig(epochs=3, seed=0), progress=False, normalize="auto")
    x = data.x_train.astype(np.float64) / 255
    assert job.spec.normalize is not None
    np.testing.assert_allclose(job.spec.normalize, ([x.mean()], [x.std()]), rtol=1e-12)
    xt, yt = data.tensors("test")
    again = evaluate(ModelSpec.from_dict(job.spec.to_dict()).load(job.model.state_dict()), xt, yt)
    assert again.accuracy == job.test.accuracy
    export_onnx(job.model, tmp_path / "m.onnx", input_shape=data.input_shape)
    quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", calibration_sample(data.tensors("train")[0].numpy(), 256))
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    assert ops.count("Sub") == 1 and ops.count("Div") == 1  # kept in float before the quantized layers
    int8 = run_session(onnx_session(tmp_path / "q.onnx"), xt.numpy()).argmax(1)
    with torch.no_grad():
        assert (int8 == job.model(xt).argmax(1).numpy()).mean() >= 0.95


def test_resuming_with_another_normalization_is_refused(digits, tmp_path):
    data = digits.subset(200, 50)
    train_model(data, "lenet-300-100", TrainConfig(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="resume with the same data.normalize"):
        train_model(
            data, "lenet-300-100", TrainConfig(epochs=2), checkpoint_dir=tmp_path, resume=True, progress=False,
            normalize="auto",
        )  # fmt: skip
