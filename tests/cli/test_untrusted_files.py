"""Forged model files that name Python code run nothing, through every command that opens a model."""

import subprocess
import sys

import pytest
import yaml

from lepton.compress.container import save_lep
from lepton.edge.registry import Registry
from lepton.models.registry import ModelSpec, build_model
from lepton.train.checkpoint import save_checkpoint


def lepton(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lepton", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """A `.lep`, a checkpoint and a run config whose model spec asks for ``subprocess:getoutput``."""
    root = tmp_path_factory.mktemp("evil")
    marker = root / "marker"
    spec = ModelSpec("subprocess:getoutput", (1, 8, 8), 10, {"cmd": f"touch {marker}"})
    model = build_model("lenet-300-100", (1, 8, 8), 10)
    save_lep(root / "evil.lep", spec, model.state_dict(), metadata={"dataset": {"name": "digits"}})
    save_checkpoint(root / "evil", model, spec, extra={"dataset": {"name": "digits"}})
    (root / "run.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "digits"},
                "model": {"name": "subprocess:getoutput", "kwargs": {"cmd": f"touch {marker}"}},
            }
        )
    )
    return root, marker


COMMANDS = [
    ("eval", "{root}/evil.lep"),
    ("eval", "{root}/evil.safetensors"),
    ("compress", "{root}/evil.safetensors", "-o", "{root}/out.lep", "--quiet"),
    ("edge", "export", "{root}/evil.lep", "-o", "{root}/out.onnx"),
    ("edge", "export", "{root}/evil.safetensors", "-o", "{root}/out.onnx"),
    ("edge", "split", "{root}/evil.lep", "--no-run", "--plot", "{root}/split.png"),
    ("edge", "bench", "{root}/none.onnx", "--torch", "{root}/evil.lep"),
    ("serve", "{root}/evil.lep", "--port", "0"),
    ("serve", "{root}/evil.safetensors", "--port", "0"),
    (
        "train",
        "--data",
        "digits",
        "--model",
        "subprocess:getoutput",
        "--set",
        "model.kwargs.cmd=touch {marker}",
        "-o",
        "{root}/train",
    ),
    ("run", "{root}/run.yaml", "-o", "{root}/run", "--quiet"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_forged_model_files_run_no_code(evil, args):
    root, marker = evil
    r = lepton(*(a.format(root=root, marker=marker) for a in args))
    assert not marker.exists(), f"the forged spec ran code through `lepton {' '.join(args)}`"
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--trust-code" in r.stderr and "subprocess" in r.stderr


@pytest.mark.slow
def test_pull_then_serve_runs_no_code(evil, tmp_path):
    root, marker = evil
    Registry(tmp_path / "registry").push(root / "evil.lep", "evil")
    (tmp_path / "pulled").mkdir()
    r = lepton("pull", f"{tmp_path / 'registry'}/evil", "-o", str(tmp_path / "pulled"))
    assert r.returncode == 0, r.stderr
    pulled = next((tmp_path / "pulled").rglob("*.lep"))
    r = lepton("serve", str(pulled), "--port", "0")
    assert r.returncode == 2 and "--trust-code" in r.stderr and not marker.exists()


def test_python_loaders_run_no_code(evil):
    from lepton.artifacts import load_model_file
    from lepton.compress.container import load_lep
    from lepton.errors import UntrustedCodeError
    from lepton.train.checkpoint import load_checkpoint

    root, marker = evil
    for load in (
        lambda: load_model_file(root / "evil.lep"),
        lambda: load_model_file(root / "evil.safetensors"),
        lambda: load_lep(root / "evil.lep").build_model(),
        lambda: load_checkpoint(root / "evil.safetensors").build_model(),
    ):
        with pytest.raises(UntrustedCodeError, match="import module 'subprocess' and call 'getoutput'"):
            load()
    assert not marker.exists()


@pytest.mark.slow
def test_compress_inspect_reads_the_file_without_building_it(evil):
    root, marker = evil
    r = lepton("compress", "inspect", str(root / "evil.lep"), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
