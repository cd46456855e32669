"""The CLI as a user runs it: a subprocess, real data (scikit-learn digits), real files."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test here runs `python -m lepton` in a subprocess, some train


def lepton(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lepton", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    r = lepton(
        "train",
        "--data",
        "digits",
        "--model",
        "lenet-300-100",
        "--epochs",
        "4",
        "--lr",
        "0.05",
        "-o",
        str(out),
        "--quiet",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_train_writes_checkpoint_and_sidecar(trained):
    out, result = trained
    assert (out / "model.safetensors").exists() and (out / "model.json").exists()
    assert (out / "last.safetensors").exists()
    assert result["test_accuracy"] > 0.85


def test_eval_reproduces_the_training_accuracy(trained):
    out, result = trained
    r = lepton("eval", str(out / "model.safetensors"), "--format", "json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["dataset"] == "digits" and ev["samples"] == 360
    assert ev["accuracy"] == pytest.approx(result["test_accuracy"])
    table = lepton("eval", str(out / "model.safetensors"))
    assert "Per-class accuracy" in table.stdout and "accuracy" in table.stdout


def test_resume_after_the_last_epoch_trains_nothing_more(trained):
    out, result = trained
    r = lepton(
        "train",
        "--data",
        "digits",
        "--model",
        "lenet-300-100",
        "--epochs",
        "4",
        "--lr",
        "0.05",
        "-o",
        str(out),
        "--resume",
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr
    assert json.loads(r.stdout)["test_accuracy"] == pytest.approx(result["test_accuracy"])


def test_python_m_lepton_train_entry_point(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "lepton.train",
            "--data",
            "digits",
            "--model",
            "lenet-300-100",
            "--epochs",
            "1",
            "-o",
            str(tmp_path),
            "-q",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert 0 < json.loads(r.stdout)["test_accuracy"] <= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "nope", "-q"], "error: unknown dataset 'nope'"),
        (
            ["train", "--data", "digits", "--epochs", "0", "-q"],
            "train.epochs = 0: Input should be greater than or equal to 1",
        ),
        (["train", "--data", "digits", "--model", "lenet5", "-q"], "needs images of at least 12x12"),
        (["train", "--set", "train.bogus=1", "-q"], "unknown key 'train.bogus'"),
        (["eval", "/nonexistent/model.safetensors"], "not found"),
        (["run", "/nonexistent.yaml"], "config file /nonexistent.yaml not found"),
    ],
)
def test_user_errors_are_one_clean_line(args, message):
    r = lepton(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_eval_on_a_dataset_of_the_wrong_shape(trained):
    out, _ = trained
    r = lepton("eval", str(out / "model.safetensors"), "--data", "mnist")
    assert r.returncode == 2 and "expects [1, 8, 8]" in r.stderr


def test_info_json():
    r = lepton("info", "--format", "json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert {m["model"]: m["params"] for m in info["models"]}["lenet5"] == 431_080
    assert {d["dataset"] for d in info["datasets"]} >= {"mnist", "fashion-mnist", "digits"}
    assert {d["dataset"]: d["source"] for d in info["datasets"]}["cifar10"] == "cifar10:PATH"


def test_help_has_examples():
    for cmd in ("train", "eval", "run", "info"):
        r = lepton(cmd, "--help")
        assert r.returncode == 0 and "Examples" in r.stdout


def test_wrong_typed_dataset_metadata_is_one_clear_line(tmp_path):
    """A forged `.lep` / sidecar whose free metadata has a non-object `dataset`: exit 2, one line, no traceback."""
    from lepton.compress.container import save_lep
    from lepton.models import ModelSpec
    from lepton.train.checkpoint import save_checkpoint

    spec = ModelSpec("lenet-300-100", (1, 8, 8), 10)
    model = spec.build()
    save_lep(tmp_path / "m.lep", spec, model.state_dict(), metadata={"dataset": 5})
    save_checkpoint(tmp_path / "c", model, spec, extra={"dataset": ["digits"]})
    for args, shown in (
        (["eval", str(tmp_path / "m.lep")], "is 5"),
        (["edge", "export", str(tmp_path / "m.lep"), "-o", str(tmp_path / "m.onnx")], "is 5"),
        (["compress", str(tmp_path / "c.safetensors"), "-o", str(tmp_path / "c.lep")], "is ['digits']"),
    ):
        r = lepton(*args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert f"the metadata's 'dataset' {shown}, expected an object" in r.stderr and "--data" in r.stderr
