"""`lepton run --resume DIR`: a run killed in any stage ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from lepton.errors import ConfigError
from lepton.pipeline import load_run_config, run_pipeline
from lepton.pipeline.resume import config_differences, record_path, resume_config
from lepton.report.track_mlflow import tracking_uri
from lepton.train import load_checkpoint
from tests.cli.invoke import invoke

# Keys whose values are measured times or depend on them (the split planner picks its cut from measured
# latencies); everything else in metrics.json is a function of the config and the seed, not of the run folder's
# location (the dataset's "source" is the run folder's "data.lds", also inside model.lep's header).
NOT_COMPARED = {
    "seconds",
    "train_seconds",
    "pack_seconds",
    "verify_seconds",
    "images_per_second",
    "encode_mb_s",
    "decode_mb_s",
    "loader",
    "latency",
    "eager_p50_ms",
    "fp32_p50_ms",
    "int8_p50_ms",
    "int8_speedup_vs_eager",
    "split",
    "faster",  # fp32 or int8: decided from latencies timed in turn, so it may differ between runs
    "deploy",
    "int8_choice",
}


def deterministic(value):
    """``value`` (a metrics document or part of it) without the :data:`NOT_COMPARED` keys, at any depth."""
    if isinstance(value, dict):
        return {k: deterministic(v) for k, v in value.items() if k not in NOT_COMPARED}
    if isinstance(value, list):
        return [deterministic(v) for v in value]
    return value


def _numbers(run: Path) -> dict:
    doc = json.loads((run / "metrics.json").read_text())
    return deterministic({"config": doc["config"], "dataset": doc["dataset"], "stages": doc["stages"]})


# ---------------------------------------------------------------- killed with SIGKILL, then resumed

# Two epochs, so the train case resumes from an epoch checkpoint; no per-layer int8 tuning, which picks the int8
# file from measured latencies (the file and its accuracy could then differ between runs).
QUICK = ["--quick", "--set", "train.epochs=2", "--set", "edge.tune_layers=false"]
TITLES = {"data": "Data compression", "train": "Baseline training", "compress": "Model compression"}
TITLES["edge"] = "Edge deployment"


def _lepton(*args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "lepton", "run", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)


TRACK = ["--track", "mlflow"] if importlib.util.find_spec("mlflow") else []  # the dev extra installs it


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One ``lepton run --quick`` (two epochs, MLflow tracking when installed): checked end to end by
    :func:`test_lepton_run_quick_end_to_end`, and the numbers a killed and resumed run must reach."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    p = _lepton(*QUICK, "-o", str(out), "--quiet", *TRACK)
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    return out


@pytest.mark.slow
def test_lepton_run_quick_end_to_end(uninterrupted):
    out = uninterrupted
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"]["name"] == "lenet5"
    assert metrics["config"]["train"]["epochs"] == 2
    train = metrics["stages"]["train"]
    assert 0.95 < train["test_accuracy"] <= 1.0  # two epochs on 20k MNIST images
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
    if TRACK:  # the MLflow run, read with MLflow's own client, holds the numbers of metrics.json
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri(out / "mlflow"))
        (run,) = client.search_runs([client.get_experiment_by_name("lepton").experiment_id])
        assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "2"
        assert run.data.metrics["train/test_accuracy"] == pytest.approx(train["test_accuracy"], rel=1e-12)
        assert run.data.metrics["compress/file_bytes"] == compress["file_bytes"]
        curve = client.get_metric_history(run.info.run_id, "train/epoch/test_accuracy")
        expected = [(h["epoch"], pytest.approx(h["test_accuracy"])) for h in train["history"]]
        assert [(m.step, m.value) for m in curve] == expected
        assert {s.split("/")[0] for s in run.data.metrics} == set(metrics["stages"])


def _kill_in(stage: str, out: Path, log: Path, *args: str) -> None:
    """Start ``lepton run ARGS``, SIGKILL it once ``stage`` is under way (train: in its second epoch)."""
    with log.open("w") as f:
        p = _lepton(*args, stderr=f)
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and p.poll() is None:
            started = f"{stage}: {TITLES[stage]}" in log.read_text()
            if started and (stage != "train" or (out / "train" / "last.json").exists()):
                break
            time.sleep(0.1)
        assert p.poll() is None, f"the run ended before it was killed in {stage}:\n{log.read_text()}"
        if stage != "train":
            time.sleep(1.0)  # into the stage's work, not at its first line
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.kill()
        p.wait()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_run_killed_in_every_stage_resumes_to_the_uninterrupted_numbers(uninterrupted, tmp_path):
    """One chain: killed in data; resumed and killed in train (in its second epoch); resumed and killed in
    compress; resumed and killed in edge; resumed to the end. Each kill leaves the stages before it done and the
    killed one not; the run that finally ends has the uninterrupted run's numbers (two full runs of work, not five).
    """
    # A folder at another path, of another length: what the run writes must not depend on where it is (the
    # .lep header once held the store's absolute path; deflated, it changed model.lep's size by a byte or so).
    out = tmp_path / "killed-in-every-stage" / "run"
    assert len(str(out)) != len(str(uninterrupted))
    order = list(TITLES)
    for i, stage in enumerate(order):
        log = tmp_path / f"killed-in-{stage}.log"
        args = [*QUICK, "-o", str(out)] if i == 0 else ["--resume", str(out), *QUICK]
        _kill_in(stage, out, log, *args)
        for before in order[:i]:
            assert record_path(out, before).is_file(), f"{before} finished before the kill in {stage}"
        assert not record_path(out, stage).exists(), f"{stage} was killed: it must not look done"
        if stage == "compress":  # this run resumed the train stage killed in its second epoch
            assert "resumed from" in log.read_text() and "after epoch 1" in log.read_text()

    p = _lepton("--resume", str(out), *QUICK)  # the saved config given again is accepted
    summary, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    for name in order:  # the end-of-run summary names each stage, and which ones the killed runs had finished
        line = next(x for x in summary.splitlines() if x.startswith(f"{name}: "))
        assert ("(from the interrupted run)" in line) == (name != "edge"), line
    assert _numbers(out) == _numbers(uninterrupted)
    for name in order:
        assert record_path(out, name).is_file()


# ---------------------------------------------------------------- where the run folder is changes nothing


def test_the_run_dataset_names_its_store_by_file_name_not_by_location(tmp_path, digits):
    """What the data stage hands on (and the .lep header and checkpoint record) is the same wherever the run
    folder is: the dataset's source is the store's file name, not its absolute path."""
    from lepton.compress.container import encode_model
    from lepton.data.store import open_store, pack_dataset
    from lepton.models.registry import ModelSpec
    from lepton.pipeline.stages.data import run_dataset

    spec = ModelSpec("lenet-300-100", digits.input_shape, digits.num_classes)
    headers = []
    for folder in ("a", "a-longer-folder-name"):
        path = pack_dataset(digits, tmp_path / folder / "data.lds", image_codec="zstd", block_samples=200)
        data = run_dataset(open_store(path), path.name)
        assert data.source == "data.lds" and np.array_equal(data.x_train, digits.x_train)
        assert np.array_equal(data.y_test, digits.y_test)
        headers.append(encode_model(spec, {}, metadata={"dataset": data.summary()}))
    assert headers[0] == headers[1]


# ---------------------------------------------------------------- what a resumed run skips and redoes

TINY = {
    "data": {"dataset": "digits", "pack": {"compare": ["zstd"], "loader_batches": 5}},
    "model": {"name": "lenet-300-100"},
    "train": {"epochs": 2},
    "compress": {"prune": {"epochs": 1}, "share": {"epochs": 0}, "validation_size": 200},
    "edge": {"calibration_images": 64, "iterations": 20, "split_requests": 5, "tune_layers": False},
}


@pytest.mark.slow  # runs the pipeline on digits twice, then resumes
def test_resume_skips_verified_stages_and_redoes_from_the_first_that_fails(tmp_path):
    cfg = load_run_config(overrides=TINY)
    first = run_pipeline(cfg, tmp_path / "run", progress=False)
    run = first.run_dir
    assert run_pipeline(cfg, run, progress=False, resume=True).skipped == ["data", "train", "compress", "edge"]

    lep = run / "model.lep"
    data = bytearray(lep.read_bytes())
    data[-1] ^= 0xFF  # the compressed model no longer matches its record: compress and edge are redone
    lep.write_bytes(bytes(data))
    edge_record = record_path(run, "edge").read_text()
    again = run_pipeline(cfg, run, progress=False, resume=True)
    assert again.skipped == ["data", "train"]
    assert lep.read_bytes() != bytes(data)  # rewritten
    assert record_path(run, "edge").read_text() != edge_record  # redone, so a new record
    assert deterministic(again.metrics["stages"]) == deterministic(first.metrics["stages"])

    record_path(run, "train").write_text("{ half a record")  # unreadable: train is redone, not trusted
    third = run_pipeline(cfg, run, progress=False, resume=True)
    assert third.skipped == ["data"]
    assert deterministic(third.metrics["stages"]) == deterministic(first.metrics["stages"])

    (run.parent / "data.lds").write_bytes((run / "data.lds").read_bytes())
    text = record_path(run, "data").read_text().replace('"data.lds"', '"../data.lds"')
    record_path(run, "data").write_text(text)  # a record naming a file outside the run folder is not trusted
    assert run_pipeline(cfg, run, progress=False, resume=True).skipped == []


# ---------------------------------------------------------------- the config of a resumed run


def _saved_run(tmp_path: Path, **overrides) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_run_config(quick=True, overrides=overrides)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return run


def test_resume_reads_the_saved_config_and_refuses_a_different_one(tmp_path):
    run = _saved_run(tmp_path, train={"seed": 3})
    assert resume_config(run).train.seed == 3
    assert resume_config(run, load_run_config(quick=True, overrides={"train": {"seed": 3}})).train.seed == 3
    given = load_run_config(quick=True, overrides={"train": {"seed": 4, "epochs": 2}})
    assert config_differences(resume_config(run), given) == [
        "train.epochs (saved 1, given 2)",
        "train.seed (saved 3, given 4)",
    ]
    with pytest.raises(ConfigError, match=r"train\.epochs \(saved 1, given 2\); train\.seed"):
        resume_config(run, given)
    with pytest.raises(ConfigError, match="no config.yaml"):
        resume_config(tmp_path / "elsewhere")


def test_cli_resume_refuses_a_changed_config_in_one_line(tmp_path):
    run = _saved_run(tmp_path)
    o = invoke(["run", "--resume", str(run), "--quick", "--set", "train.lr=0.5"])
    assert o.code == 2 and o.kind == "user" and len(o.message.splitlines()) == 1
    assert "train.lr (saved 0.05, given 0.5)" in o.message and "start a new run with -o" in o.message
    o = invoke(["run", "--resume", str(run), "--device", "cpu"])  # device changes a config key too
    assert o.code == 2 and "train.device" in o.message
    o = invoke(["run", "--resume", str(run), "-o", str(tmp_path / "other")])
    assert o.code == 2 and "leave out -o" in o.message
    o = invoke(["run", "--resume", str(tmp_path / "nothing-here")])
    assert o.code == 2 and "no config.yaml" in o.message
