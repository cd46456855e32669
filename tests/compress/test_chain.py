"""The whole chain (prune → share → code) on real data, with the file as the source of truth."""

import json
import subprocess
import sys

import pytest
import torch

from lepton.compress.chain import compress_model
from lepton.compress.config import CompressConfig
from lepton.compress.container import inspect_lep, load_lep
from lepton.config import validate
from lepton.errors import ConfigError
from lepton.train import TrainConfig, evaluate
from lepton.train.job import train_model

BASE = TrainConfig(epochs=6, batch_size=32, seed=0, threads=1)
CFG = CompressConfig(
    prune={"sparsity": 0.8, "epochs": 2}, share={"bits": 4, "epochs": 1}, batch_size=32, validation_size=200
)


@pytest.fixture(scope="module")
def trained(digits):
    return train_model(digits, "lenet-300-100", BASE, progress=False)


@pytest.fixture(scope="module")
def compressed(trained, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("lep") / "digits.lep"
    before = {k: v.clone() for k, v in trained.model.state_dict().items()}
    report = compress_model(trained.model, trained.spec, digits, CFG, BASE, out, progress=False)
    return out, report, before


def test_report_is_measured_on_the_decoded_file(compressed, digits):
    out, report, _ = compressed
    assert report.file_bytes == out.stat().st_size
    assert report.ratio == pytest.approx(report.dense_bytes / report.file_bytes)
    decoded = load_lep(out).build_model()
    assert evaluate(decoded, *digits.tensors("test")).accuracy == report.test_accuracy
    assert report.bit_exact
    assert [s.step for s in report.steps] == ["dense", "pruned", "shared", "coded"]
    assert report.ratio > 10 and report.test_accuracy > 0.85


def test_the_file_holds_pruned_shared_weights(compressed):
    out, report, _ = compressed
    state = load_lep(out).state_dict
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        w = state[name]
        kept = w[w != 0]
        assert kept.numel() == round(0.2 * w.numel())
        assert torch.unique(kept).numel() <= 16
    assert sum(r["bytes"] for r in inspect_lep(out)) == report.file_bytes


def test_the_input_model_is_left_unchanged(compressed, trained):
    _, _, before = compressed
    for k, v in trained.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_auto_rates_and_bits_come_from_the_sensitivity_scans(trained, digits, tmp_path):
    cfg = CompressConfig(
        prune={"sparsity": "auto", "auto_max_drop": 0.02, "epochs": 1},
        share={"bits": "auto", "auto_max_drop": 0.02, "epochs": 0},
        batch_size=32,
        validation_size=300,
    )
    report = compress_model(trained.model, trained.spec, digits, cfg, BASE, tmp_path / "auto.lep", progress=False)
    assert set(report.bits) == {"fc1", "fc2", "fc3"} and all(2 <= b <= 8 for b in report.bits.values())
    assert report.bit_exact and report.sensitivity is not None
    assert any(s > 0 for s in report.sparsity.values())


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="prune.sparsity = 1.5: sparsity must be in"):
        validate(CompressConfig, {"prune": {"sparsity": 1.5}})
    with pytest.raises(ConfigError, match="needs one sparsity number"):
        validate(CompressConfig, {"prune": {"scope": "global"}})
    with pytest.raises(ConfigError, match="bits must be in"):
        validate(CompressConfig, {"share": {"bits": {"fc1": 12}}})


@pytest.mark.slow
def test_cli_compress_inspect_and_eval(trained, digits, tmp_path):
    from lepton.train import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "model", trained.model, trained.spec, extra={"dataset": digits.summary()})
    out = tmp_path / "m.lep"

    def lepton(*args):
        return subprocess.run([sys.executable, "-m", "lepton", *args], capture_output=True, text=True, timeout=600)

    r = lepton(
        "compress",
        str(ckpt),
        "-o",
        str(out),
        "-q",
        "--format",
        "json",
        "--set",
        "compress.prune.sparsity=0.8",
        "--set",
        "compress.prune.epochs=1",
        "--set",
        "compress.share.epochs=0",
        "--set",
        "compress.share.bits=5",
        "--set",
        "compress.validation_size=200",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["file_bytes"] == out.stat().st_size and report["bit_exact"]
    rows = json.loads(lepton("compress", "inspect", str(out), "--format", "json").stdout)
    assert rows[-1]["tensor"] == "(header)" and sum(row["bytes"] for row in rows) == report["file_bytes"]
    ev = json.loads(lepton("eval", str(out), "--format", "json").stdout)
    assert ev["kind"] == "lep" and ev["accuracy"] == report["test_accuracy"]
    bad = lepton("compress", str(ckpt), "-o", str(tmp_path / "m.bin"))
    assert bad.returncode == 2 and "must end in .lep" in bad.stderr
    truncated = tmp_path / "t.lep"
    truncated.write_bytes(out.read_bytes()[:-7])
    r = lepton("eval", str(truncated))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_tensor_train_layers_are_one_more_method_of_the_chain(trained, digits, tmp_path):
    """compress.tt: fc1 becomes a TTLinear (TT-SVD + fine-tuning), the rest is pruned and shared, and the
    .lep stores the TT layout in its model spec and the cores like any tensor; decode is bit-exact."""
    from lepton.models.tensor_train import TTLinear

    cfg = CompressConfig.model_validate(
        {
            **CFG.model_dump(),
            "tt": {"enabled": True, "layers": {"fc1": 4.0}, "epochs": 1},
            "prune": {"sparsity": {"fc2": 0.8, "fc3": 0.5}, "epochs": 2},
        }
    )
    out = tmp_path / "tt.lep"
    report = compress_model(trained.model, trained.spec, digits, cfg, BASE, out, progress=False)
    assert [s.step for s in report.steps] == ["dense", "tt", "pruned", "shared", "coded"]
    assert report.tt["fc1"]["ratio"] >= 4.0 and report.bit_exact
    lep = load_lep(out)
    assert set(lep.spec.tt) == {"fc1"} and lep.spec.tt["fc1"]["ranks"] == report.tt["fc1"]["ranks"][1:-1]
    model = lep.build_model()
    assert isinstance(model.fc1, TTLinear) and isinstance(trained.model.fc1, torch.nn.Linear)
    assert sum(c.numel() for c in model.fc1.cores) + model.fc1.bias.numel() == report.tt["fc1"]["params"]
    x, y = digits.tensors("test")
    assert evaluate(model, x, y).accuracy == report.test_accuracy > 0.8
    core_bytes = sum(r["bytes"] for r in report.layers if r["tensor"].startswith("fc1.cores."))
    assert core_bytes > 0 and report.file_bytes == out.stat().st_size  # the cores are in the counted file
    assert "fc1" not in report.sparsity


def test_tt_config_errors_name_the_layer(trained, digits, tmp_path):
    with pytest.raises(ConfigError, match="tt is enabled but names no layers"):
        validate(CompressConfig, {"tt": {"enabled": True}}, source="config")
    cfg = CompressConfig(tt={"enabled": True, "layers": {"conv9": 10.0}})
    with pytest.raises(ConfigError, match="'conv9'.*fc1"):
        compress_model(trained.model, trained.spec, digits, cfg, BASE, tmp_path / "x.lep", progress=False)


def test_model_recipe_fills_only_the_keys_a_config_leaves_unset():
    from lepton.compress import presets

    cfg, applied = presets.recipe_for("lenet-300-100", CompressConfig())
    assert applied == {"prune.epochs": 16, "prune.lr": 0.05, "distill.enabled": False}
    assert (cfg.prune.epochs, cfg.prune.lr, cfg.distill.enabled) == (16, 0.05, False)
    mine = validate(CompressConfig, {"prune": {"epochs": 3}, "distill": {"enabled": True}})
    cfg, applied = presets.recipe_for("lenet-300-100", mine)
    assert applied == {"prune.lr": 0.05} and cfg.prune.epochs == 3 and cfg.distill.enabled
    assert presets.recipe_for("lenet5", mine) == (mine, {})
