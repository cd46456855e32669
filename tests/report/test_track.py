"""`lepton run --track tensorboard`: the event files hold the config, each stage's numbers and the curves."""

import sys

import pytest

from lepton.errors import ConfigError
from lepton.pipeline import load_run_config, run_pipeline
from lepton.report.track import check_tracker
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
    with pytest.raises(ConfigError, match="must be one of tensorboard; got 'mlflow'"):
        check_tracker("mlflow")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ConfigError, match=r"pip install 'lepton-ml\[track\]'"):
        check_tracker("tensorboard")
    out = tmp_path / "run"
    o = invoke(["run", "--quick", "-o", str(out), "--track", "tensorboard"])
    assert o.code == 2 and o.kind == "user" and "tensorboard package" in o.message
    assert not out.exists()  # refused before the run folder was made
