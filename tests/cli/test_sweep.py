"""Every subcommand × every parameter × bad values: exit 2 with one line (or click's usage box), never a traceback.

The commands are discovered from the click app behind ``lepton`` (a new command is swept without editing this
file) and run in-process under a time guard. The other arguments get cheap valid values; where a value happens to
be valid, the long-running work (a whole pipeline, training, packing, serving) is replaced by a stub that stops
the command at once: the sweep checks what the command makes of its values, not the work behind them.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from lepton.cli.app import cli_command
from tests.cli.invoke import invoke

BAD_VALUES = ["0", "-1", "1e12", "nan", "abc", "", "{dir}", "{missing}", "{fifo}"]


class Accepted(Exception):
    """Raised by a stub in place of long-running work: the command accepted its values."""


def _stop(*args, **kwargs):
    raise Accepted


STUBS = [
    "lepton.pipeline.run_pipeline",
    "lepton.edge.server.serve",
    "lepton.compress.chain.compress_model",
    "lepton.data.store.pack_dataset",
    "lepton.data.reduce.reduce_dataset",
    "lepton.quantum.hybrid.run_hybrid",
    "lepton.edge.splitrun.run_split",
    "lepton.train.job.train_model",
]

# Cheap valid values for each command's parameters (by parameter name), and flags that keep it cheap.
BASE: dict[str, dict[str, str]] = {
    "push": {"artifact": "{root}/model.onnx", "url": "{root}/registry/m"},
    "pull": {"url": "{root}/registry/m", "out": "{root}/pulled"},
    "run": {"set_": "data.dataset=digits", "out": "{root}/run"},
    "serve": {"model": "{missing}"},  # never a valid model: a valid one would serve forever
    "train": {"data": "digits", "model": "lenet-300-100", "epochs": "1", "train_subset": "100", "out": "{root}/train"},
    "eval": {"model_file": "{root}/model.safetensors"},
    "compress model": {"checkpoint": "{root}/model.safetensors", "out": "{root}/out.lep"},
    "compress inspect": {"path": "{root}/model.lep"},
    "data pack": {"source": "digits", "out": "{root}/packed.lds"},
    "data unpack": {"store": "{root}/digits.lds", "out": "{root}/unpacked.npz"},
    "data inspect": {"store": "{root}/digits.lds"},
    "data verify": {"store": "{root}/digits.lds"},
    "data reduce": {"source": "digits", "bits": "4", "model": "lenet-300-100", "out": "{root}/reduced.lds"},
    "edge export": {"model": "{root}/model.lep", "out": "{root}/out.onnx"},
    "edge bench": {"onnx_file": "{root}/model.onnx", "data": "digits", "iterations": "10", "batch": "8"},
    "edge split": {"model": "{root}/model.lep", "plot": "{root}/split.svg", "requests": "8"},
    "quantum train": {"data": "digits", "qubits": "2", "layers": "1", "out": "{root}/circuit-out.json"},
    "quantum export": {"circuit_file": "{root}/circuit.json"},
    "registry list": {"root": "{root}/registry"},
}
FLAGS = {
    "run": ["--quiet"],
    "train": ["--quiet"],
    "compress model": ["--quiet"],
    "data inspect": ["--no-xz"],
    "edge split": ["--no-run"],
}


def leaf_commands(cmd=None, path=()):
    """(``"data verify"``, click command) for every runnable command, recursively."""
    cmd = cmd or cli_command()
    subs = getattr(cmd, "commands", None)
    if subs is None:
        return [(" ".join(path), cmd)]
    return [leaf for name, sub in sorted(subs.items()) for leaf in leaf_commands(sub, (*path, name))]


def value_params(cmd):
    return [p for p in cmd.params if p.name != "help" and not getattr(p, "is_flag", False)]


def argv(cmd, values: dict[str, str], flags: list[str]) -> list[str]:
    args = [values[p.name] for p in cmd.params if p.param_type_name == "argument" and p.name in values]
    for p in cmd.params:
        if p.param_type_name == "option" and p.name in values:
            args += [p.opts[0], values[p.name]]
    return [*args, *flags]


def cases():
    out = []
    for name, cmd in leaf_commands():
        for param in value_params(cmd):
            out += [(name, param.name, v) for v in BAD_VALUES]
    return out


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory):
    from lepton.compress.container import save_lep
    from lepton.data import load_digits
    from lepton.data.store import pack_dataset
    from lepton.edge.export import export_onnx
    from lepton.models.registry import ModelSpec, build_model
    from lepton.quantum.circuit import variational_circuit
    from lepton.quantum.circuit_file import TrainedCircuit, save_circuit
    from lepton.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("sweep")
    torch.manual_seed(0)
    model, spec = build_model("lenet-300-100", (1, 8, 8), 10), ModelSpec("lenet-300-100", (1, 8, 8), 10)
    meta = {"dataset": {"name": "digits"}}
    save_checkpoint(root / "model", model, spec, extra=meta)
    save_lep(root / "model.lep", spec, model.state_dict(), metadata=meta)
    export_onnx(model, root / "model.onnx", input_shape=(1, 8, 8))
    pack_dataset(load_digits(), root / "digits.lds", image_codec="deflate")
    circuit = variational_circuit(2, 1)
    save_circuit(root / "circuit.json", TrainedCircuit(circuit, torch.zeros(circuit.weight_shape), [0.1, 0.2], {}))
    (root / "folder").mkdir()
    (root / "folder" / "keep").write_text("a non-empty folder")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def stubbed(monkeypatch, sweep_root):
    import importlib

    for target in STUBS:
        module, attr = target.rsplit(".", 1)
        monkeypatch.setattr(importlib.import_module(module), attr, _stop)
    monkeypatch.chdir(sweep_root)
    monkeypatch.setenv("LEPTON_REGISTRY", str(sweep_root / "registry"))
    return sweep_root


def check(root, name: str, param: str, value: str, timeout: float = 60.0) -> float:
    cmd = dict(leaf_commands())[name]
    fill = {"root": root, "dir": root / "folder", "missing": root / "missing" / "nothing.bin", "fifo": root / "fifo"}
    values = {k: v.format(**fill) for k, v in BASE.get(name, {}).items()}
    values[param] = value.format(**fill)
    args = [*name.split(), *argv(cmd, values, FLAGS.get(name, []))]
    if name == "compress model":
        args.remove("model")  # the hidden default command: `lepton compress CHECKPOINT`
    t0 = time.perf_counter()
    o = invoke(args, timeout=timeout)
    where = f"lepton {' '.join(args)}"
    assert o.kind != "hung", f"{where}: {o.message}"
    if isinstance(o.exception, Accepted):
        return time.perf_counter() - t0
    assert o.kind in ("ok", "usage", "user"), f"{where}: a traceback\n{o.message}"
    assert o.code in (0, 2), f"{where}: exit {o.code}: {o.message}"
    assert "Traceback" not in o.message + o.stdout, where
    if o.kind == "user":
        assert len(o.message.splitlines()) == 1 and o.message.startswith("error: "), f"{where}: {o.message!r}"
    return time.perf_counter() - t0


ALL = cases()
# The fast subset: every command's parameters with a folder, a FIFO and an empty value.
FAST = [c for c in ALL if c[2] in ("{dir}", "{fifo}", "")]


def test_every_command_is_swept():
    names = {name for name, _ in leaf_commands()}
    assert {"data verify", "edge bench", "quantum draw", "serve", "run", "registry list"} <= names
    assert set(BASE) <= names


@pytest.mark.parametrize("name, param, value", FAST, ids=lambda v: str(v))
def test_sweep_fast(stubbed, name, param, value):
    check(stubbed, name, param, value)


@pytest.mark.slow
def test_sweep_all(stubbed):
    """All commands × parameters × values, in one test so that its whole time is bounded."""
    t0 = time.perf_counter()
    slowest = []
    for name, param, value in ALL:
        slowest.append((check(stubbed, name, param, value), name, param, value))
    elapsed = time.perf_counter() - t0
    print(f"sweep: {len(ALL)} invocations in {elapsed:.0f} s; slowest: {sorted(slowest)[-5:]}")
    assert elapsed < 240, sorted(slowest)[-10:]
