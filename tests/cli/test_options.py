"""The shared options are spelled one way everywhere; ``lepton compress`` shows its own options and its verb."""

from __future__ import annotations

import json

import pytest
import torch

from lepton.cli.app import cli_command
from tests.cli.invoke import invoke
from tests.cli.test_sweep import Accepted, leaf_commands

SPELLINGS = {
    "fmt": ["--format"],
    "out": ["--out", "-o"],
    "quiet": ["--quiet", "-q"],
    "set_": ["--set"],
    "trust_code": ["--trust-code"],
}


def test_shared_options_have_one_spelling():
    commands = [("compress", cli_command().commands["compress"]), *leaf_commands()]
    seen = set()
    for name, cmd in commands:
        for p in cmd.params:
            if p.param_type_name == "option" and p.name in SPELLINGS:
                assert p.opts + p.secondary_opts == SPELLINGS[p.name], f"lepton {name}: {p.opts}"
                seen.add(p.name)
            if p.param_type_name == "option" and p.name == "config":
                assert p.opts == ["--config", "-c"], f"lepton {name}: {p.opts}"
    assert seen == set(SPELLINGS)


def test_compress_help_lists_its_options_and_the_inspect_verb():
    o = invoke(["compress", "--help"])
    assert o.kind == "ok", o.message
    for text in ("CHECKPOINT", "--out", "--config", "--set", "--quiet", "--format", "--trust-code", "inspect"):
        assert text in o.stdout, text
    assert "model" not in o.stdout.split("Commands")[-1]  # the old spelling works but is not advertised


@pytest.fixture
def checkpoint(tmp_path):
    from lepton.models.registry import ModelSpec, build_model
    from lepton.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    spec = ModelSpec("lenet-300-100", (1, 8, 8), 10)
    return save_checkpoint(
        tmp_path / "model", build_model("lenet-300-100", (1, 8, 8), 10), spec, extra={"dataset": {"name": "digits"}}
    )


@pytest.mark.parametrize(
    "args",
    [["{ckpt}", "-o", "{out}", "-q"], ["-q", "--out", "{out}", "{ckpt}"], ["model", "{ckpt}", "-o", "{out}", "-q"]],
)
def test_compress_spellings_reach_compress_model(monkeypatch, checkpoint, tmp_path, args):
    calls = []

    def stop(*a, **k):
        calls.append((a, k))
        raise Accepted

    monkeypatch.setattr("lepton.compress.chain.compress_model", stop)
    fill = {"ckpt": checkpoint, "out": tmp_path / "m.lep"}
    o = invoke(["compress", *(a.format(**fill) for a in args)])
    assert isinstance(o.exception, Accepted) and len(calls) == 1, o.message
    assert calls[0][0][-1] == tmp_path / "m.lep" and calls[0][1]["progress"] is False


def test_compress_without_checkpoint_is_a_usage_error():
    o = invoke(["compress", "-o", "m.lep"])
    assert (o.kind, o.code) == ("usage", 2) and "Missing argument 'CHECKPOINT'" in o.message


def test_edge_split_defaults_to_the_run_configs_encoding(monkeypatch, checkpoint, tmp_path):
    from lepton.edge.config import EdgeConfig

    monkeypatch.chdir(tmp_path)  # the default --plot split.png lands here
    o = invoke(["edge", "split", str(checkpoint), "--no-run", "--data", "digits", "--format", "json"])
    assert o.kind == "ok", o.message
    assert json.loads(o.stdout)["plan"]["network"]["encoding"] == EdgeConfig().encoding == "int8+zstd"
    encoding = next(p for p in dict(leaf_commands())["edge split"].params if p.name == "encoding")
    assert encoding.show_default.startswith(EdgeConfig().encoding)  # what --help says
