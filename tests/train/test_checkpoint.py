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
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
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


# ---- forged sidecars and tensor files: one-line FormatErrors, never KeyError/ValueError/AttributeError ----------


def _forge_sidecar(path, edit):
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(meta))


def _refused(path, *needles):
    with pytest.raises(FormatError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and all(n in message for n in needles), message
    return message


@pytest.mark.parametrize(
    "text, needle",
    [
        ('{"format": "lepton-checkpoint", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "100001 levels deep"),
        ('{"format": "lepton-checkpoint", "version": 1e999}', "1e999, which overflows"),
        ('{"format": "lepton-checkpoint", "format": "lepton-checkpoint"}', "duplicate JSON key 'format'"),
        ('{"format": "lepton-checkpoint", "test_accuracy": NaN}', "NaN"),
    ],
)
def test_json_attacks_on_the_sidecar_are_refused(tmp_path, trained, text, needle):
    spec, model, _ = trained
    path = save_checkpoint(tmp_path / "c", model, spec)
    path.with_suffix(".json").write_text(text)
    _refused(path, "c.json", needle)


def test_missing_or_wrong_typed_model_spec_is_refused(tmp_path, trained):
    spec, model, _ = trained
    path = save_checkpoint(tmp_path / "c", model, spec)
    _forge_sidecar(path, lambda m: m.pop("model"))
    _refused(path, "c.json", "the key 'model'", "missing")
    _forge_sidecar(path, lambda m: m.update(model=5))
    _refused(path, "c.json", "the key 'model' must be a JSON object, got an integer 5")
    _forge_sidecar(path, lambda m: m.update(model={"name": "lenet5"}))
    _refused(path, "c.json", "the key 'model'", "input_shape")


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda o: 5, "the key 'optimizer' must be a JSON object"),
        (lambda o: {}, "expected param_groups and scalars"),
        (lambda o: {**o, "code": "x"}, "expected param_groups and scalars"),
        (lambda o: {**o, "param_groups": 5}, "optimizer.param_groups must be a JSON array"),
        (lambda o: {**o, "param_groups": [5]}, "optimizer.param_groups[0] must be a JSON object"),
        (lambda o: {**o, "param_groups": [{"lr": 0.1}]}, "param_groups[0].params must be a list"),
        (lambda o: {**o, "param_groups": [{"params": ["a"]}]}, "param_groups[0].params must be a list"),
        (lambda o: {**o, "scalars": []}, "optimizer.scalars must be a JSON object"),
        (lambda o: {**o, "scalars": {"x": {}}}, "optimizer.scalars key 'x' is not a parameter index"),
        (lambda o: {**o, "scalars": {"-1": {}}}, "optimizer.scalars key '-1'"),
        (lambda o: {**o, "scalars": {"0": 3}}, "optimizer.scalars['0'] must be a JSON object"),
    ],
)
def test_forged_optimizer_section_is_refused(tmp_path, trained, edit, needle):
    spec, model, opt = trained
    path = save_checkpoint(tmp_path / "c", model, spec, optimizer=opt)
    _forge_sidecar(path, lambda m: m.update(optimizer=edit(m["optimizer"])))
    _refused(path, "c.json", needle)


@pytest.mark.parametrize("name", ["optim.x.y", "optim.0", "optim..exp_avg", "optim.01.exp_avg", "optim.-1.step"])
def test_forged_optimizer_tensor_names_are_refused(tmp_path, trained, name):
    from safetensors.torch import save_file

    from lepton.utils.io import sha256_file

    spec, model, opt = trained
    path = save_checkpoint(tmp_path / "c", model, spec, optimizer=opt)
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()} | {name: torch.zeros(2)}, str(path))
    _forge_sidecar(path, lambda m: m.update(sha256=sha256_file(path)))
    _refused(path, "c.safetensors", f"optimizer tensor {name!r} is not named optim.<index>.<key>")


def test_resume_refuses_a_forged_train_section(tmp_path, trained):
    from lepton.train.loop import _resume_point

    with pytest.raises(FormatError, match=r"c.json: the key 'train' must hold 'epoch'"):
        _resume_point({}, tmp_path / "c", 10)
    sums = {"loss_sum": 1.5, "correct": 3, "seen": 8, "seconds": 0.1}
    for train in (
        5,
        {"epoch": 1},
        {"epoch": "1", "history": []},
        {"epoch": 1, "history": [5]},
        {"epoch": 1, "history": [{"epoch": "x"}]},
        {"epoch": 0, "history": [], "batch": 3, "steps_per_epoch": 10},  # mid-epoch without the epoch's sums
        {"epoch": 0, "history": [], "batch": 3, "steps_per_epoch": 10, "partial": {**sums, "seen": "8"}},
        {"epoch": 0, "history": [], "batch": 3, "steps_per_epoch": 10, "partial": {"loss_sum": 1.0}},
        {"epoch": 0, "history": [], "batch": 3, "steps_per_epoch": 12, "partial": sums},  # another batch size
        {"epoch": 0, "history": [], "batch": -1, "partial": sums},
        {"epoch": 0, "history": [], "batch": True, "partial": sums},
    ):
        with pytest.raises(FormatError, match="to resume"):
            _resume_point({"train": train}, tmp_path / "c", 10)
    point = _resume_point({"train": {"epoch": 0, "history": []}}, tmp_path / "c", 10)
    assert (point.history, point.epoch, point.batch, point.partial) == ([], 0, 0, None)
    mid = {"epoch": 2, "history": [], "batch": 9, "steps_per_epoch": 10, "partial": sums}
    point = _resume_point({"train": mid}, tmp_path / "c", 10)
    assert (point.epoch, point.batch, point.partial) == (2, 9, sums)


def test_metadata_the_reader_would_refuse_is_refused_on_save(tmp_path, trained):
    from lepton.errors import ConfigError

    spec, model, _ = trained
    with pytest.raises(ConfigError, match="finite numbers"):
        save_checkpoint(tmp_path / "nan", model, spec, extra={"test_accuracy": float("nan")})
    deep: dict = {}
    for _ in range(70):
        deep = {"x": deep}
    with pytest.raises(ConfigError, match="levels deep"):
        save_checkpoint(tmp_path / "deep", model, spec, extra={"deep": deep})
    assert not list(tmp_path.iterdir())


def test_version_1_sidecars_still_load(tmp_path, trained):
    spec, model, _ = trained
    path = save_checkpoint(tmp_path / "c", model, spec)
    meta = json.loads((tmp_path / "c.json").read_text())
    assert meta["version"] == 2
    (tmp_path / "c.json").write_text(json.dumps({**meta, "version": 1}))  # as written before the graph field
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(load_checkpoint(path).build_model().eval()(x), model.eval()(x))


def test_an_optimizer_state_that_does_not_fit_is_a_format_error(tmp_path, trained):
    spec, model, opt = trained
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c", model, spec, optimizer=opt))
    two_groups = torch.optim.Adam([{"params": [p]} for p in list(model.parameters())[:2]], lr=1e-3)
    with pytest.raises(FormatError, match="optimizer state does not fit a Adam"):
        ckpt.restore_optimizer(two_groups)
    ckpt.restore_optimizer(build_optimizer(model.parameters(), TrainConfig(optimizer="adam", lr=1e-3)))
