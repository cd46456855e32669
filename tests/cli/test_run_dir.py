"""A run folder never mixes two runs: `lepton run -o DIR` refuses a non-empty DIR unless --overwrite."""

import json
import os

import pytest

from lepton.errors import ConfigError
from lepton.pipeline import load_run_config, run_pipeline
from lepton.pipeline.run import prepare_run_dir
from tests.cli.invoke import invoke

TINY = [
    "--set",
    "data.dataset=digits",
    "--set",
    "model.name=lenet-300-100",
    "--set",
    "train.epochs=1",
    "--set",
    "compress.enabled=false",
    "--set",
    "edge.enabled=false",
    "--quiet",
]


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_rerun_into_a_finished_run_folder(tmp_path):
    run = tmp_path / "run"
    assert invoke(["run", "-o", str(run), *TINY, "--set", "train.seed=1"], timeout=300).code == 0
    before = _snapshot(run)
    assert "metrics.json" in before and "config.yaml" in before
    o = invoke(["run", "-o", str(run), *TINY, "--set", "train.seed=2"], timeout=300)
    assert o.kind == "user" and o.code == 2 and "--overwrite" in o.message and len(o.message.splitlines()) == 1
    assert _snapshot(run) == before  # untouched
    (run / "stale-artifact.onnx").write_text("from the old run")
    o = invoke(["run", "-o", str(run), *TINY, "--set", "train.seed=2", "--overwrite"], timeout=300)
    assert o.code == 0, o
    assert not (run / "stale-artifact.onnx").exists()
    assert "seed: 2" in (run / "config.yaml").read_text()
    assert json.loads((run / "metrics.json").read_text())["config"]["train"]["seed"] == 2


def test_overwrite_clears_the_old_run_before_the_new_one_starts(tmp_path, monkeypatch):
    """Interrupted right after the folder is prepared: nothing of the old run is left to look complete."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "metrics.json", "report.html", "model.lep"):
        (run / name).write_text("old run")
    (run / "sub").mkdir()
    (run / "sub" / "x").write_text("old")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lepton.pipeline.run.load_training_data", interrupted)
    cfg = load_run_config(overrides={"data": {"dataset": "digits"}})
    with pytest.raises(ConfigError, match="--overwrite"):
        run_pipeline(cfg, run, progress=False)
    assert (run / "metrics.json").read_text() == "old run"
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, run, progress=False, overwrite=True)
    assert sorted(os.listdir(run)) == ["config.yaml"]  # the new run's config only; no old metrics or artifacts
    assert "old run" not in (run / "config.yaml").read_text()


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="does not look like a Lepton run folder"):
        prepare_run_dir(mine, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "precious"
    o = invoke(["run", "-o", str(mine), "--overwrite", *TINY])
    assert o.code == 2 and "does not look like a Lepton run folder" in o.message
    assert (mine / "thesis.tex").exists()


def test_new_or_empty_folders_need_no_flag(tmp_path):
    assert prepare_run_dir(tmp_path / "new").is_dir()
    (tmp_path / "empty").mkdir()
    assert prepare_run_dir(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="a file of that name exists"):
        prepare_run_dir(tmp_path / "file", overwrite=True)
