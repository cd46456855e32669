"""`lepton run --track tensorboard|mlflow`: the event files / MLflow run hold the config, each stage's numbers
and the curves, read back with TensorBoard's and MLflow's own readers."""

import sys

import pytest
import yaml

from lepton.errors import ConfigError
from lepton.models import ModelSpec
from lepton.pipeline import load_run_config, run_pipeline
from lepton.report.track import TensorBoardTracker, check_tracker, open_tracker
from lepton.report.track_mlflow import MLflowTracker, tracking_uri
from lepton.train import TensorBatches, TrainConfig, fit, seed_everything
from tests.cli.invoke import invoke


@pytest.mark.slow  # runs the data and train stages on digits
def test_tensorboard_event_files_hold_the_run_numbers(tmp_path):
    pytest.importorskip("tensorboard")  # the optional extra lepton-ml[track]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_run_config(
        overrides={
            "data": {"dataset": "digits", "pack": {"compare": ["zstd"], "loader_batches": 5}},
            "model": {"name": "lenet-300-100"},
            "train": {"epochs": 3},
            "compress": {"enabled": False},
            "edge": {"enabled": False},
        }
    )
    result = run_pipeline(cfg, tmp_path / "run", progress=False, track="tensorboard")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()  # TensorBoard's own reader
    train, data = result.metrics["stages"]["train"], result.metrics["stages"]["data"]

    def scalar(tag):
        (point,) = events.Scalars(tag)
        return point.step, point.value

    assert scalar("train/test_accuracy") == (0, pytest.approx(train["test_accuracy"], rel=1e-6))
    assert scalar("train/params") == (0, train["params"])
    assert scalar("data/store_bytes") == (0, data["store_bytes"])
    assert scalar("data/codecs.zstd.bytes") == (0, data["codecs"]["zstd"]["bytes"])
    curve = events.Scalars("train/epoch/train_loss")
    assert [p.step for p in curve] == [1, 2, 3]
    assert [p.value for p in curve] == pytest.approx([r["train_loss"] for r in train["history"]], rel=1e-6)
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "lenet-300-100" in config and "epochs: 3" in config


def test_track_needs_its_package_and_a_known_kind(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="must be one of tensorboard, mlflow; got 'wandb'"):
        check_tracker("wandb")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ConfigError, match=r"pip install 'lepton-ml\[track\]'"):
        check_tracker("tensorboard")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"needs the mlflow-skinny.* not installed.*pip install mlflow-skinny"):
        check_tracker("mlflow")
    out = tmp_path / "run"
    o = invoke(["run", "--quick", "-o", str(out), "--track", "tensorboard"])
    assert o.code == 2 and o.kind == "user" and "tensorboard package" in o.message
    assert not out.exists()  # refused before the run folder was made


@pytest.fixture(scope="module")
def trained(digits):
    """A real TrainReport (3 epochs on digits, with its per-epoch history) and a real resolved run config."""
    cfg = TrainConfig(epochs=3, batch_size=128, lr=0.05, seed=1, threads=1, device="cpu")
    seed_everything(cfg.seed, cfg.threads)
    spec = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes)
    x, y = digits.tensors("train")
    report = fit(spec.build(), TensorBatches(x, y, 128, seed=1), cfg, eval_data=digits.tensors("test"), progress=False)
    config = load_run_config(overrides={"data": {"dataset": "digits"}, "train": {"epochs": 3}})
    return config, report


def test_tensorboard_tracker_round_trips_through_event_accumulator(trained, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, report = trained
    tracker = TensorBoardTracker(tmp_path / "tb")
    tracker.config(config)
    tracker.stage("train", report)
    tracker.close()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    ((point,),) = [events.Scalars("train/final_test_accuracy")]
    assert (point.step, point.value) == (0, pytest.approx(report.final_test_accuracy, rel=1e-6))
    curve = events.Scalars("train/epoch/test_accuracy")
    assert [p.step for p in curve] == [1, 2, 3]
    assert [p.value for p in curve] == pytest.approx([r.test_accuracy for r in report.history], rel=1e-6)
    assert "train/epoch/epoch" not in events.Tags()["scalars"]


@pytest.mark.slow  # MLflow builds its SQLite schema (alembic migrations): ~7 s
def test_mlflow_tracker_round_trips_through_mlflow_client(trained, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    config, report = trained
    folder = tmp_path / "run" / "mlflow"
    interrupted = MLflowTracker(folder, run_name="run")  # an attempt killed after its first stage
    interrupted.config(config)
    interrupted.stage("train", report)
    tracker = open_tracker("mlflow", tmp_path / "run")  # the resumed run logs every stage again
    tracker.config(config)
    tracker.stage("train", report)
    tracker.close()

    client = MlflowClient(tracking_uri=tracking_uri(folder))  # MLflow's own reader
    experiment = client.get_experiment_by_name("lepton")
    (live,) = client.search_runs([experiment.experiment_id])  # the interrupted attempt's run was deleted
    assert live.info.run_id == tracker.run_id and live.info.status == "FINISHED" and live.info.run_name == "run"
    run = client.get_run(tracker.run_id)
    assert run.data.params["train.epochs"] == "3" and run.data.params["data.dataset"] == "digits"
    assert run.data.params["model.name"] == config.model.name
    assert run.data.metrics["train/final_test_accuracy"] == pytest.approx(report.final_test_accuracy, rel=1e-12)
    assert run.data.metrics["train/epochs"] == 3
    history = client.get_metric_history(tracker.run_id, "train/epoch/train_loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([r.train_loss for r in report.history], rel=1e-12)
    (artifact,) = client.list_artifacts(tracker.run_id)
    assert artifact.path == "config.yaml"
    text = (folder / "artifacts").rglob("config.yaml").__next__().read_text()
    assert load_run_config(overrides=yaml.safe_load(text)) == config  # the YAML is the resolved config
    assert folder.joinpath("mlflow.db").is_file() and not (tmp_path / "mlruns").exists()
