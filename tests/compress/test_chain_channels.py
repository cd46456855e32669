"""The chain's BatchNorm fold and channel step on ResNet-20 (digits): the `.lep` stores the folded, channel-pruned
architecture as a graph and decodes bit-exactly."""

import pytest
import torch
from torch import nn

from lepton.compress.chain import compress_model
from lepton.compress.config import CompressConfig
from lepton.compress.container import load_lep
from lepton.config import validate
from lepton.errors import ConfigError
from lepton.models.graph import GraphModel
from lepton.train import TrainConfig
from lepton.train.job import train_model

BASE = TrainConfig(epochs=2, batch_size=32, lr=0.05, seed=0, threads=1)


@pytest.mark.slow
def test_channel_step_prunes_folds_and_decodes_bit_exactly(digits, tmp_path):
    trained = train_model(digits, "resnet20", BASE, progress=False)
    cfg = CompressConfig(
        channels={"enabled": True, "ratio": 0.5, "epochs": 1},
        prune={"sparsity": 0.5, "epochs": 1},
        share={"bits": 6, "epochs": 0},
        batch_size=32,
        validation_size=200,
    )
    report = compress_model(trained.model, trained.spec, digits, cfg, BASE, tmp_path / "r.lep", progress=False)
    assert [s.step for s in report.steps] == ["dense", "channels", "pruned", "shared", "coded"]
    assert report.bit_exact and len(report.folded_bn) == 19
    ch = report.channels
    assert ch.params_after < ch.params_before and ch.macs_after < 0.6 * ch.macs_before
    assert ch.latency_p50_ms_before > 0 and ch.speedup == pytest.approx(
        ch.latency_p50_ms_before / ch.latency_p50_ms_after, rel=1e-2
    )
    assert sorted(ch.pruning.kept_full) == sorted(["conv1", *(f"layers.{i}.conv2" for i in range(9))])
    lep = load_lep(tmp_path / "r.lep")
    assert lep.spec.name == "resnet20" and lep.spec.graph is not None
    decoded = lep.build_model()
    assert isinstance(decoded, GraphModel) and not any(isinstance(m, nn.BatchNorm2d) for m in decoded.modules())
    assert decoded.get_submodule("layers.0.conv1").out_channels == 8
    assert report.params == sum(p.numel() for p in decoded.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in trained.model.modules())  # the input is left unchanged
    assert report.test_accuracy > 0.5


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_fold_bn_off_keeps_batchnorm_in_the_file(digits, tmp_path):
    torch.manual_seed(0)
    trained = train_model(digits, "mobilenetv2-small", BASE.model_copy(update={"epochs": 1}), progress=False)
    cfg = CompressConfig(
        fold_bn=False, prune={"enabled": False}, share={"enabled": False}, batch_size=32, validation_size=200
    )
    report = compress_model(trained.model, trained.spec, digits, cfg, BASE, tmp_path / "m.lep", progress=False)
    lep = load_lep(tmp_path / "m.lep")
    assert report.folded_bn == [] and report.channels is None and report.bit_exact
    assert lep.spec.graph is None and any(isinstance(m, nn.BatchNorm2d) for m in lep.build_model().modules())


@pytest.mark.parametrize("channels", [{"ratio": 1.0}, {"ratio": {"conv1": -0.1}}, {"importance": "taylor"}])
def test_bad_channel_configs_are_config_errors(channels):
    with pytest.raises(ConfigError):
        validate(CompressConfig, {"channels": channels})
