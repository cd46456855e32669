"""The chain with ``method: variational`` on real data (digits): posterior, operating points, shrinkage, file."""

import pytest

from lepton.compress.chain import compress_model
from lepton.compress.config import CompressConfig
from lepton.compress.container import load_lep
from lepton.compress.frontier import FrontierPoint, pareto, pick
from lepton.config import validate
from lepton.errors import ConfigError
from lepton.train import TrainConfig, evaluate
from lepton.train.job import train_model

BASE = TrainConfig(epochs=6, batch_size=32, seed=0, threads=1)
VARIATIONAL = {"epochs": 12, "thresholds": [2.0, 3.0], "bits_scales": [1.0, 4.0]}


@pytest.fixture(scope="module")
def trained(digits):
    return train_model(digits, "lenet-300-100", BASE, progress=False)


@pytest.fixture(scope="module")
def compressed(trained, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("lep") / "vd.lep"
    cfg = CompressConfig(
        method="variational", variational=VARIATIONAL, share={"epochs": 1}, batch_size=32, validation_size=200
    )
    return out, compress_model(trained.model, trained.spec, digits, cfg, BASE, out, progress=False)


@pytest.mark.slow
def test_variational_chain_writes_a_small_shrunk_bit_exact_file(compressed, trained, digits):
    out, report = compressed
    v = report.variational
    assert report.method == "variational" and v is not None
    assert [s.step for s in report.steps] == ["dense", "sparse-vd", "shared", "coded"]
    assert report.bit_exact and report.file_bytes == out.stat().st_size
    decoded = load_lep(out)
    model = decoded.build_model()
    assert evaluate(model, *digits.tensors("test")).accuracy == report.test_accuracy
    assert report.test_accuracy > report.baseline_test_accuracy - 0.05
    assert report.ratio > 20
    # units the posterior emptied are gone from the file's architecture, not just zero
    widths = {k: b for k, (_, b) in v.shrink.widths.items()}
    assert decoded.spec.kwargs == widths and widths["fc1"] < 300
    assert model.fc1.weight.shape[0] == widths["fc1"] and v.params_after < v.params_before
    # every grid point was measured, from its own decoded bytes
    assert len(v.frontier) == 4 and [p.bytes for p in v.frontier] == sorted(p.bytes for p in v.frontier)
    assert {(p.threshold, p.bits_scale) for p in v.frontier} == {(2.0, 1.0), (2.0, 4.0), (3.0, 1.0), (3.0, 4.0)}


@pytest.mark.slow
def test_target_bytes_picks_a_point_within_the_budget(trained, digits, tmp_path):
    out = tmp_path / "t.lep"
    first = CompressConfig(
        method="variational", variational=VARIATIONAL, share={"epochs": 0}, batch_size=32, validation_size=200
    )
    report = compress_model(trained.model, trained.spec, digits, first, BASE, out, progress=False)
    smallest = min(p.bytes for p in report.variational.frontier)
    cfg = first.model_copy(update={"target_bytes": smallest})
    targeted = compress_model(trained.model, trained.spec, digits, cfg, BASE, out, progress=False)
    chosen = targeted.variational.chosen
    assert chosen is not None and chosen.bytes <= smallest
    assert targeted.file_bytes <= smallest + 64  # the point's file, its codebooks fine-tuned for 0 epochs
    with pytest.raises(ConfigError, match="no operating point fits"):
        compress_model(
            trained.model,
            trained.spec,
            digits,
            first.model_copy(update={"target_bytes": 64}),
            BASE,
            out,
            progress=False,
        )


def _point(nbytes: int, val: float) -> FrontierPoint:
    return FrontierPoint(
        threshold=3, bits_scale=1, bits={}, kept=1, bytes=nbytes, ratio=1, val_error=val, test_error=val
    )


def test_pick_and_pareto():
    points = [_point(1000, 0.02), _point(2000, 0.01), _point(3000, 0.015), _point(4000, 0.005)]
    assert [p.bytes for p in pareto(points)] == [1000, 2000, 4000]
    assert pick(points, target_bytes=3500).bytes == 2000
    assert pick(points, target_error=0.015).bytes == 2000
    assert pick(points, target_error=0.03).bytes == 1000
    with pytest.raises(ConfigError, match="best is 0.50%"):
        pick(points, target_error=0.001)
    with pytest.raises(ConfigError, match="exactly one"):
        pick(points)


def test_config_refuses_targets_and_posterior_bits_without_the_variational_method():
    with pytest.raises(ConfigError, match="compress.method: variational"):
        validate(CompressConfig, {"target_bytes": 3000})
    with pytest.raises(ConfigError, match="variational posterior"):
        validate(CompressConfig, {"share": {"bits": "posterior"}})
    with pytest.raises(ConfigError, match="not both"):
        validate(CompressConfig, {"method": "variational", "target_bytes": 3000, "target_error": 0.01})
    ok = validate(CompressConfig, {"method": "variational", "target_error": 0.008})
    assert ok.target_error == 0.008
