import json

import pytest
import torch

from lepton.errors import FormatError
from lepton.models import ModelSpec
from lepton.train import TrainConfig, load_checkpoint, save_checkpoint
from lepton.train.loop import build_optimizer


@pytest.fixture
def trained():
    torch.manual_seed(0)
    spec = ModelSpec("lenet5")
    model = spec.build()
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer="adam", lr=1e-3))
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    opt.step()
    return spec, model, opt


def test_round_trip_gives_identical_outputs_and_optimizer_state(tmp_path, trained):
    spec, model, opt = trained
    path = save_checkpoint(tmp_path / "ckpt", model, spec, optimizer=opt, extra={"note": "hi"})
    assert path.name == "ckpt.safetensors" and (tmp_path / "ckpt.json").exists()
    ckpt = load_checkpoint(path)
    assert ckpt.meta["note"] == "hi" and ckpt.spec == spec
    x = torch.rand(5, 1, 28, 28)
    model.eval()
    assert torch.equal(ckpt.build_model().eval()(x), model(x))
    opt2 = build_optimizer(ckpt.build_model().parameters(), TrainConfig(optimizer="adam", lr=1e-3))
    opt2.load_state_dict(ckpt.optimizer_state)
    for a, b in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_pickle_on_disk(tmp_path, trained):
    spec, model, opt = trained
    path = save_checkpoint(tmp_path / "c", model, spec, optimizer=opt)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    assert "model.conv1.weight" in header and "optim.0.exp_avg" in header


def test_tampered_weights_are_refused(tmp_path, trained):
    spec, model, _ = trained
    path = save_checkpoint(tmp_path / "c", model, spec)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="SHA-256"):
        load_checkpoint(path)


def test_missing_sidecar_and_bad_versions(tmp_path, trained):
    spec, model, _ = trained
    path = save_checkpoint(tmp_path / "c", model, spec)
    meta = json.loads((tmp_path / "c.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(FormatError, match="version 99 is not supported"):
        load_checkpoint(path)
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_checkpoint(path)
    (tmp_path / "c.json").unlink()
    with pytest.raises(FormatError, match="not found"):
        load_checkpoint(path)
