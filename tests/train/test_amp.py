"""--amp: which modes run where, the config check, bf16 CPU autocast training, and resuming only with the same
mode. fp16 with loss scaling runs on CUDA only (skipped here without a GPU)."""

import pytest
import torch
from pydantic import ValidationError

from lepton.errors import ConfigError, FormatError
from lepton.models import ModelSpec
from lepton.train import TensorBatches, TrainConfig, fit, load_checkpoint, seed_everything
from lepton.train.amp import amp_state, check_amp, grad_scaler, restore_amp, training_device

CUDA = torch.cuda.is_available()
CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize("device", [CPU, GPU])
def test_off_runs_everywhere(device):
    check_amp("off", device)


def test_bf16_on_cpu_is_cpu_autocast():
    check_amp("bf16", CPU)


def test_fp16_on_cpu_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"--amp fp16 needs a CUDA device, but training runs on cpu; use --amp bf16"):
        check_amp("fp16", CPU)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mps_takes_no_amp(amp):
    with pytest.raises(ConfigError, match="--amp off"):
        check_amp(amp, torch.device("mps"))


@pytest.mark.parametrize("amp", ["int8", "fp32", "", "BF16"])
def test_unknown_modes(amp):
    with pytest.raises(ValidationError, match="amp"):
        TrainConfig(amp=amp)
    with pytest.raises(ConfigError, match="off, bf16 or fp16"):
        check_amp(amp, CPU)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0"])
def test_config_refuses_unknown_devices(device):
    with pytest.raises(ValidationError, match="device"):
        TrainConfig(device=device)


def test_training_device_checks_both():
    assert training_device("cpu", "bf16") == CPU
    with pytest.raises(ConfigError, match="fp16"):
        training_device("cpu", "fp16")


def test_scaler_only_for_fp16():
    assert grad_scaler("off", CPU) is None and grad_scaler("bf16", CPU) is None
    assert amp_state("bf16", None) == {"mode": "bf16", "scaler": None}


def _fit(digits, out, amp, epochs, resume=False):
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=0.05, seed=1, threads=1, device="cpu", amp=amp)
    seed_everything(cfg.seed, cfg.threads)
    spec = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes)
    model = spec.build()
    x, y = digits.tensors("train")
    report = fit(
        model, TensorBatches(x, y, 128, seed=1), cfg, spec=spec, checkpoint_dir=out, resume=resume, progress=False
    )
    return model, report


def test_bf16_cpu_training_learns_and_differs_from_fp32(digits, tmp_path):
    bf16, report = _fit(digits, tmp_path / "bf16", "bf16", 2)
    fp32, reference = _fit(digits, tmp_path / "fp32", "off", 2)
    assert report.history[-1].train_loss < report.history[0].train_loss
    assert abs(report.final_train_accuracy - reference.final_train_accuracy) < 0.05  # bf16 tracks fp32's learning
    assert {p.dtype for p in bf16.parameters()} == {torch.float32}  # the weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(bf16.parameters(), fp32.parameters()))
    assert load_checkpoint(tmp_path / "bf16" / "last").meta["train"]["amp"] == {"mode": "bf16", "scaler": None}


def test_resume_across_amp_modes_is_refused(digits, tmp_path):
    _fit(digits, tmp_path, "off", 1)
    with pytest.raises(
        ConfigError, match=r"trained with --amp off and this run uses --amp bf16; resume with --amp off"
    ):
        _fit(digits, tmp_path, "bf16", 2, resume=True)


def test_checkpoints_from_before_amp_resume_as_off():
    restore_amp(None, "off", None, "x")
    with pytest.raises(ConfigError, match="trained with --amp off"):
        restore_amp(None, "bf16", None, "x")
    with pytest.raises(FormatError, match="train.amp"):
        restore_amp({"mode": "fp8"}, "off", None, "x")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_fp16_cuda_training_saves_and_restores_the_scaler(digits, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=128, lr=0.05, seed=1, device="cuda", amp="fp16")
    spec = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes)
    model = spec.build()
    report = fit(
        model,
        TensorBatches(*digits.tensors("train"), 128, seed=1),
        cfg,
        spec=spec,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert report.final_train_accuracy > 0.5
    saved = load_checkpoint(tmp_path / "last").meta["train"]["amp"]
    assert saved["mode"] == "fp16" and saved["scaler"]["scale"] > 0
    scaler = grad_scaler("fp16", GPU)
    restore_amp(saved, "fp16", scaler, "x")
    assert scaler.get_scale() == saved["scaler"]["scale"]
