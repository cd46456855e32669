"""Training on a chosen device: --device cpu is today's training bit for bit, fit() hands the model back where it
was, and a checkpoint holds CPU tensors whatever device trained it (fake CUDA tensors: FakeTensorMode)."""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from lepton.errors import ConfigError
from lepton.models import ModelSpec
from lepton.train import TensorBatches, TrainConfig, evaluate, fit, load_checkpoint, save_checkpoint, seed_everything
from lepton.train.checkpoint import checkpoint_tensors

CUDA = torch.cuda.is_available()


def _train(digits, device=None, epochs=2, **kw):
    cfg = TrainConfig(
        epochs=epochs, batch_size=64, lr=0.05, seed=3, threads=1, **({"device": device} if device else {})
    )
    seed_everything(cfg.seed, cfg.threads)
    spec = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes)
    model = spec.build()
    x, y = digits.tensors("train")
    report = fit(model, TensorBatches(x, y, 64, seed=3), cfg, spec=spec, progress=False, **kw)
    return spec, model, report


def _plain_sgd(digits):
    """The same training written out in plain torch (no Lepton loop): the reference for bit-identity."""
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=3, threads=1, schedule="constant")
    seed_everything(cfg.seed, cfg.threads)
    model = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes).build()
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )
    for epoch in range(cfg.epochs):
        batches = TensorBatches(*digits.tensors("train"), 64, seed=3)
        batches.set_epoch(epoch)
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model


def test_device_cpu_is_bit_identical_to_the_default_and_to_plain_torch(digits):
    _, default, _ = _train(digits)
    _, cpu, _ = _train(digits, "cpu")
    for (k, a), b in zip(default.state_dict().items(), cpu.state_dict().values()):
        assert torch.equal(a, b), k
    seed_everything(3, 1)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=3, threads=1, schedule="constant", device="cpu")
    model = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes).build()
    fit(model, TensorBatches(*digits.tensors("train"), 64, seed=3), cfg, progress=False)
    reference = _plain_sgd(digits)
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), k


def test_fit_returns_the_model_to_its_device_and_checkpoints_load_on_cpu(digits, tmp_path):
    spec, model, report = _train(digits, "cpu", epochs=1, checkpoint_dir=tmp_path)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    ckpt = load_checkpoint(tmp_path / "last")
    assert {t.device.type for t in ckpt.model_state.values()} == {"cpu"}
    assert ckpt.meta["train"]["amp"] == {"mode": "off", "scaler": None}


def test_unavailable_device_fails_before_training(digits):
    model = nn.Linear(64, 10)
    before = [p.clone() for p in model.parameters()]
    device = "mps" if CUDA else "cuda"
    cfg = TrainConfig(epochs=1, device=device)
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has both CUDA and MPS")
    with pytest.raises(ConfigError, match="use --device cpu or auto"):
        fit(model, TensorBatches(*digits.tensors("train"), 64), cfg, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_checkpoint_tensors_of_a_cuda_model_are_cpu_tensors():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with FakeTensorMode():  # tensors that say cuda, without a GPU (no data: only device, shape and dtype)
        for layer in (model[0], model[2]):
            layer.weight = nn.Parameter(torch.zeros(layer.out_features, layer.in_features, device="cuda"))
            layer.bias = nn.Parameter(torch.zeros(layer.out_features, device="cuda"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        opt.step()  # momentum buffers on cuda, as after a step on a GPU
        assert {v.device.type for s in opt.state_dict()["state"].values() for v in s.values()} == {"cuda"}
        tensors, section = checkpoint_tensors(model, opt)
    assert sorted(tensors) == sorted(
        [f"model.{k}" for k in model.state_dict()] + [f"optim.{i}.momentum_buffer" for i in range(4)]
    )
    assert {t.device for t in tensors.values()} == {torch.device("cpu")}
    assert section is not None and section["param_groups"][0]["params"] == [0, 1, 2, 3]


def test_evaluate_moves_batches_to_the_model_and_returns_cpu_metrics(digits):
    _, model, _ = _train(digits, "cpu", epochs=1)
    x, y = digits.tensors("test")
    a = evaluate(model, x, y)
    b = evaluate(model, x, y, batch_size=7)  # batches moved one at a time give the same logits
    assert a.accuracy == b.accuracy and abs(a.loss - b.loss) < 1e-6


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_training_saves_cpu_checkpoints_and_returns_the_model(digits, tmp_path):
    spec, model, report = _train(digits, "cuda", epochs=1, checkpoint_dir=tmp_path)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert report.final_train_accuracy > 0.5
    save_checkpoint(tmp_path / "model", model, spec)
    ckpt = load_checkpoint(tmp_path / "last")
    assert {t.device.type for t in ckpt.model_state.values()} == {"cpu"}
    assert ckpt.optimizer_state is not None
    assert {
        t.device.type for s in ckpt.optimizer_state["state"].values() for t in s.values() if torch.is_tensor(t)
    } == {"cpu"}
