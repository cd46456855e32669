"""`lepton run` end to end on digits (the --quick run on the real MNIST is checked in test_resume.py, where
the same run is the reference a killed and resumed run must match)."""

import json
import subprocess
import sys

import pytest
import torch

from lepton.pipeline import load_run_config, run_pipeline
from lepton.train import load_checkpoint


@pytest.mark.slow  # runs the whole pipeline
def test_pipeline_api_on_digits(tmp_path):
    cfg = load_run_config(
        overrides={
            "data": {"dataset": "digits"},
            "model": {"name": "lenet-300-100"},
            "train": {"epochs": 2},
            "compress": {
                "channels": {"enabled": True, "ratio": 0.5, "epochs": 1},
                "prune": {"epochs": 1},
                "share": {"epochs": 0},
                "validation_size": 200,
            },
        }
    )
    result = run_pipeline(cfg, tmp_path, progress=False)
    assert list(result.metrics["stages"]) == ["data", "train", "compress", "edge"]
    channels = result.metrics["stages"]["compress"]["channels"]
    assert channels["params_after"] < channels["params_before"] and channels["pruning"]["groups"]
    assert "Channel pruning" in (tmp_path / "report.html").read_text()
    assert result.metrics["dataset"]["name"] == "digits"
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(result.metrics))
    edge = result.metrics["stages"]["edge"]
    choice = edge["int8_choice"]  # measured here: the faster file, and the one to deploy with its reason
    assert edge["faster"] == choice["faster"] == ("int8" if choice["int8_p50_ms"] < choice["fp32_p50_ms"] else "fp32")
    assert edge["deploy"] == {"int8": "model.int8.onnx", "fp32": "model.onnx"}[choice["deploy"]]
    assert (
        choice["int8_accuracy"] == edge["int8_test_accuracy"] and choice["fp32_accuracy"] == edge["fp32_test_accuracy"]
    )
    assert "fp32 or int8 on this machine" in (tmp_path / "report.html").read_text()


@pytest.mark.slow  # runs the pipeline with the quantum stage
def test_quantum_stage_is_off_by_default_and_runs_when_enabled(tmp_path):
    assert not load_run_config().quantum.enabled
    cfg = load_run_config(
        overrides={
            "data": {"dataset": "digits"},
            "model": {"name": "lenet-300-100"},
            "train": {"epochs": 1},
            "compress": {"enabled": False},
            "edge": {"enabled": False},
            "quantum": {"enabled": True, "n_qubits": 4, "n_layers": 2, "epochs": 3, "batch_size": 32},
        }
    )
    result = run_pipeline(cfg, tmp_path, progress=False)
    assert list(result.metrics["stages"]) == ["data", "train", "quantum"]
    q = result.metrics["stages"]["quantum"]
    assert q["classes"] == [0, 1, 2, 3] and q["n_qubits"] == 4 and q["features"] == "PCA-4"
    assert [r["model"] for r in q["results"]][1:] == ["logistic regression on PCA-4", "tiny MLP on PCA-4"]
    assert q["hybrid_test_accuracy"] == q["results"][0]["test_accuracy"] > 0.5  # 4 classes: chance is 0.25
    qiskit = pytest.importorskip("qiskit")
    circuit = qiskit.qasm2.loads((tmp_path / q["qasm_file"]).read_text())
    assert circuit.num_qubits == 4
    html = (tmp_path / "report.html").read_text()
    assert "Quantum exploration" in html and "logistic regression on PCA-4" in html


def test_quantum_stage_config_errors_name_the_key():
    from lepton.errors import ConfigError

    with pytest.raises(ConfigError, match="n_qubits"):
        load_run_config(overrides={"quantum": {"enabled": True, "n_qubits": 40}})
    with pytest.raises(ConfigError, match="qbits"):
        load_run_config(overrides={"quantum": {"qbits": 8}})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lepton_run_trains_on_two_workers(tmp_path):
    """`lepton run --set train.distributed.nproc=2`: the train stage launches torchrun, later stages go on."""
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "lepton",
            "run",
            "--out",
            str(out),
            "--quiet",
            "--set",
            "data.dataset=digits",
            "--set",
            "model.name=lenet-300-100",
            "--set",
            "train.epochs=6",
            "--set",
            "train.batch_size=32",
            "--set",
            "train.threads=1",
            "--set",
            "train.distributed.nproc=2",
            "--set",
            "train.distributed.comm_hook.kind=fp16",
            "--set",
            "compress.prune.epochs=1",
            "--set",
            "compress.share.epochs=0",
            "--set",
            "compress.validation_size=200",
            "--set",
            "edge.enabled=false",
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    train = metrics["stages"]["train"]
    assert train["world_size"] == 2 and train["communication"]["hook"] == "fp16"
    assert train["communication"]["compression_ratio"] == pytest.approx(2.0, rel=0.01)
    assert train["test_accuracy"] > 0.8  # digits (chance 0.1), 6 epochs of 23 steps
    assert metrics["stages"]["compress"]["test_accuracy"] > 0.5
    assert load_checkpoint(out / "model.safetensors").meta["test_accuracy"] == train["test_accuracy"]


@pytest.mark.slow  # two training runs
def test_train_stage_reads_a_store_and_matches_the_arrays(tmp_path, digits):
    """`lepton run` with a packed store as its data source: the train stage reads the store's batches and ends
    with the weights of the run on the arrays the store holds; later stages get the decoded arrays."""
    from lepton.data.store import StoreSource, pack_dataset
    from lepton.pipeline.stages.train import TrainStage

    store = pack_dataset(digits, tmp_path / "digits.lds", image_codec="zstd", block_samples=200)
    runs = {}
    for name, dataset in (("arrays", "digits"), ("store", str(store))):
        cfg = load_run_config(
            overrides={
                "data": {"dataset": dataset, "train_subset": 600},
                "model": {"name": "lenet-300-100"},
                "train": {"epochs": 1, "threads": 1},
            }
        )
        runs[name] = run_pipeline(cfg, tmp_path / name, stages=[TrainStage()], progress=False)
    state = runs["store"].state
    assert isinstance(state.training_source, StoreSource) and state.training_source.train_samples == 600
    assert len(state.dataset.x_train) == 600 and state.dataset.x_test.shape == digits.x_test.shape
    a = load_checkpoint(tmp_path / "arrays" / "model.safetensors").model_state
    b = load_checkpoint(tmp_path / "store" / "model.safetensors").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)
    ta, tb = (r.metrics["stages"]["train"] for r in (runs["arrays"], runs["store"]))
    assert (
        tb["test_accuracy"] == ta["test_accuracy"] and tb["history"][0]["train_loss"] == ta["history"][0]["train_loss"]
    )
