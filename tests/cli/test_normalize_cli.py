"""`lepton train --normalize auto` end to end: the statistics of the training split land in the checkpoint, survive
compression (channel pruning, BatchNorm folding, pruning, sharing) into the .lep, and `lepton eval` and
`lepton edge split` of the .lep answer as the compressed model did."""

import json

import pytest

from lepton.compress.container import load_lep
from lepton.data.stats import channel_stats
from lepton.train.checkpoint import load_checkpoint
from tests.cli.invoke import invoke


@pytest.mark.slow  # trains and compresses ResNet-20 on digits (about 40 s on one thread)
def test_normalize_auto_survives_compression_eval_and_the_split_planner(digits, tmp_path):
    out = invoke(["train", "--data", "digits", "--model", "resnet20", "--epochs", "1", "--normalize", "auto"]
                 + ["-o", str(tmp_path), "-q", "--format", "json"])  # fmt: skip
    assert out.code == 0, out.message
    stats = channel_stats(digits)
    assert load_checkpoint(tmp_path / "model").spec.normalize == stats
    short = ["compress.channels.enabled=true", "compress.channels.epochs=1", "compress.prune.epochs=1"]
    args = ["compress", str(tmp_path / "model.safetensors"), "-o", str(tmp_path / "m.lep"), "-q", "--format", "json"]
    out = invoke([*args, *(a for s in short for a in ("--set", s))], timeout=300)
    assert out.code == 0, out.message
    report = json.loads(out.stdout)
    lep = load_lep(tmp_path / "m.lep")
    assert lep.spec.normalize == stats and lep.spec.graph is not None  # channel-pruned and folded: a graph
    out = invoke(["eval", str(tmp_path / "m.lep"), "--format", "json"])
    assert out.code == 0, out.message
    assert json.loads(out.stdout)["accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-9)
    split = ["edge", "split", str(tmp_path / "m.lep"), "--data", "digits", "--requests", "10", "--format", "json"]
    out = invoke(split, timeout=300)
    assert out.code == 0, out.message
    measured = json.loads(out.stdout)["measured"]
    assert measured["agreement"] == 1.0
