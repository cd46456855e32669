"""`lepton run` end to end, on the real MNIST (the --quick preset) and on digits."""

import json
import subprocess
import sys

import pytest

from lepton.pipeline import load_run_config, run_pipeline
from lepton.train import load_checkpoint


@pytest.mark.slow
def test_lepton_run_quick_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "lepton", "run", "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"]["name"] == "lenet5"
    assert metrics["config"]["train"]["epochs"] == 1
    train = metrics["stages"]["train"]
    assert 0.95 < train["test_accuracy"] <= 1.0  # one epoch on 20k MNIST images
    assert train["params"] == 431_080 and train["test_samples"] == 10_000
    assert len(train["per_class_accuracy"]) == 10
    env = metrics["env"]
    assert env["torch"] and env["seed"] == 0 and env["torch_threads"] >= 1 and "git" in env
    compress = metrics["stages"]["compress"]
    for key in ("file_bytes", "dense_bytes", "ratio", "test_accuracy", "baseline_test_accuracy"):
        assert key in compress
    assert compress["file_bytes"] == (out / "model.lep").stat().st_size
    assert compress["dense_bytes"] == 4 * 431_080 and compress["ratio"] > 40
    assert compress["baseline_test_accuracy"] == train["test_accuracy"]
    assert compress["bit_exact"] and 0.5 < compress["test_accuracy"] <= 1.0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 7 and "Model compression" in html
    assert (out / "config.yaml").exists()
    ckpt = load_checkpoint(out / "model.safetensors")
    assert ckpt.meta["test_accuracy"] == pytest.approx(train["test_accuracy"])


def test_pipeline_api_on_digits(tmp_path):
    cfg = load_run_config(overrides={"data": {"dataset": "digits"}, "model": {"name": "lenet-300-100"},
                                     "train": {"epochs": 2},
                                     "compress": {"prune": {"epochs": 1}, "share": {"epochs": 0},
                                                  "validation_size": 200}})
    result = run_pipeline(cfg, tmp_path, progress=False)
    assert list(result.metrics["stages"]) == ["data", "train", "compress", "edge"]
    assert result.metrics["dataset"]["name"] == "digits"
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(result.metrics))
