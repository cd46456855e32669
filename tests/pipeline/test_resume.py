"""`lepton run --resume DIR`: a run killed in any stage ends with the numbers of an uninterrupted run."""

from __future__ import annotations

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

QUICK = ["--quick", "--set", "train.epochs=2"]  # two epochs, so the train case resumes from an epoch checkpoint
TITLES = {"data": "Data compression", "train": "Baseline training", "compress": "Model compression"}
TITLES["edge"] = "Edge deployment"


def _lepton(*args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "lepton", "run", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    p = _lepton(*QUICK, "-o", str(out), "--quiet")
    _, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    return out


def _kill_in(stage: str, out: Path, log: Path) -> None:
    """Start ``lepton run --quick``, SIGKILL it once ``stage`` is under way (train: in its second epoch)."""
    with log.open("w") as f:
        p = _lepton(*QUICK, "-o", str(out), stderr=f)
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
@pytest.mark.parametrize("stage", ["data", "train", "compress", "edge"])
def test_run_killed_in_a_stage_resumes_to_the_uninterrupted_numbers(stage, uninterrupted, tmp_path):
    # A folder at another path, of another length: what the run writes must not depend on where it is (the
    # .lep header once held the store's absolute path; deflated, it changed model.lep's size by a byte or so).
    out, log = tmp_path / f"killed-in-{stage}" / "run", tmp_path / "killed.log"
    assert len(str(out)) != len(str(uninterrupted))
    _kill_in(stage, out, log)
    order = list(TITLES)
    for before in order[: order.index(stage)]:
        assert record_path(out, before).is_file(), f"{before} finished before the kill"
    assert not record_path(out, stage).exists(), f"{stage} was killed: it must not look done"

    p = _lepton("--resume", str(out), *QUICK)  # the saved config given again is accepted
    summary, err = p.communicate(timeout=900)
    assert p.returncode == 0, err
    for name in order:  # the end-of-run summary names each stage, and which ones the killed run had finished
        line = next(x for x in summary.splitlines() if x.startswith(f"{name}: "))
        assert ("(from the interrupted run)" in line) == (order.index(name) < order.index(stage)), line
    if stage == "train":
        assert "resumed from" in err and "after epoch 1" in err
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
    "edge": {"calibration_images": 64, "iterations": 20, "split_requests": 5},
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
