"""--device and --amp on the command line: an explicit --device cpu works on every command that computes, and a
device this machine lacks (or an AMP mode it cannot run) is one line with exit status 2, before any work."""

import json

import pytest
import torch

from tests.cli.invoke import invoke

CUDA = torch.cuda.is_available()
no_cuda_only = pytest.mark.skipif(CUDA, reason="checks the error on a machine without CUDA")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    args = ["train", "--data", "digits", "--model", "lenet-300-100", "--epochs", "1", "--threads", "1"]
    o = invoke([*args, "--device", "cpu", "-o", str(out), "-q", "--format", "json"])
    assert o.code == 0, o
    return out, json.loads(o.stdout)


def _one_line_exit_2(o):
    assert o.kind == "user" and o.code == 2, o
    assert len(o.message.splitlines()) == 1 and o.message.startswith("error: "), o.message
    return o.message


def test_train_and_eval_on_cpu(trained):
    out, result = trained
    o = invoke(["eval", str(out / "model.safetensors"), "--device", "cpu", "--format", "json"])
    assert o.code == 0, o
    assert json.loads(o.stdout)["accuracy"] == result["test_accuracy"]


def test_quantum_train_on_cpu(tmp_path):
    args = ["quantum", "train", "--data", "digits", "--classes", "0,1", "--qubits", "2", "--layers", "1"]
    o = invoke([*args, "--epochs", "1", "--train-subset", "64", "--device", "cpu", "-o", str(tmp_path / "c.json")])
    assert o.code == 0, o


@no_cuda_only
@pytest.mark.parametrize(
    "args",
    [
        ["train", "--data", "digits", "--device", "cuda", "-q"],
        ["train", "--data", "digits", "--device", "cuda:1", "-q"],
        ["eval", "{ckpt}", "--device", "cuda"],
        ["compress", "{ckpt}", "-o", "{tmp}/m.lep", "--device", "cuda", "-q"],
        ["quantum", "train", "--data", "digits", "--device", "cuda", "-o", "{tmp}/c.json"],
        ["run", "--quick", "-o", "{tmp}/run", "--device", "cuda", "-q"],
    ],
)
def test_cuda_without_cuda_is_one_line(trained, tmp_path, args):
    ckpt = str(trained[0] / "model.safetensors")
    o = invoke([a.format(ckpt=ckpt, tmp=tmp_path) for a in args])
    message = _one_line_exit_2(o)
    assert "CUDA is not available on this machine" in message and "use --device cpu or auto" in message
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.lep").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "--data", "digits", "--device", "cpu", "--amp", "fp16", "-q"], "--amp fp16 needs a CUDA device"),
        (["train", "--data", "digits", "--device", "gpu", "-q"], "train.device = 'gpu': must be auto, cpu, cuda"),
        (["train", "--data", "digits", "--amp", "int8", "-q"], "train.amp"),
        (["run", "--quick", "--device", "cpu", "--amp", "fp16", "-q"], "--amp fp16 needs a CUDA device"),
        (["eval", "x.safetensors", "--device", "tpu"], "must be auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_bad_device_or_amp_is_one_line(args, expected):
    assert expected in _one_line_exit_2(invoke(args))
