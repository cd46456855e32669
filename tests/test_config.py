import pytest

from lepton.config import parse_overrides
from lepton.errors import ConfigError
from lepton.pipeline import load_run_config


def _write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_default_is_lenet5_on_mnist():
    cfg = load_run_config()
    assert cfg.model.name == "lenet5" and cfg.data.dataset == "mnist"


def test_yaml_and_overrides(tmp_path):
    cfg = load_run_config(
        _write(tmp_path, "train:\n  epochs: 3\n  lr: 0.1\n"),
        overrides=parse_overrides(["train.lr=0.2", "data.dataset=digits"]),
    )
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.dataset) == (3, 0.2, "digits")


def test_quick_preset(tmp_path):
    """--quick shrinks every stage of the default run, and a config file and --set still apply on top of it."""
    full, quick = load_run_config(), load_run_config(quick=True)
    assert quick.train.epochs < full.train.epochs and quick.data.train_subset < 60000
    assert quick.compress.prune.epochs <= full.compress.prune.epochs
    assert quick.edge.iterations < full.edge.iterations and quick.edge.split_requests < full.edge.split_requests
    assert quick.model == full.model and quick.train.lr == full.train.lr  # what it does not shrink stays
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 0.02\n")
    mine = load_run_config(path, quick=True, overrides={"train": {"epochs": 2}})
    assert mine.train.lr == 0.02 and mine.train.epochs == 2 and mine.data.train_subset == quick.data.train_subset


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  epochz: 3\n", "unknown key 'train.epochz'; allowed: "),
        ("trian: {}\n", "unknown key 'trian'; allowed: compress, data, "),
        ("train:\n  epochs: three\n", "train.epochs = 'three': Input should be a valid integer"),
        ("train:\n  epochs: -1\n", "train.epochs = -1: Input should be greater than or equal to 1"),
        ("train:\n  optimizer: lbfgs\n", "train.optimizer = 'lbfgs': Input should be 'sgd', 'adam' or 'adamw'"),
        ("train:\n  momentum: 0\n", "nesterov=true needs momentum > 0"),
        ("- a list\n", "top level must be a mapping"),
        ("train: [unclosed\n", "not valid YAML"),
        ("version: 2\n", "version = 2: Input should be 1"),
    ],
)
def test_errors_name_key_value_and_allowed(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_run_config(_write(tmp_path, text))
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    if "allowed" in message:
        assert ("batch_size, " in str(e.value)) or (", train, version" in str(e.value))


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_run_config("/nonexistent/run.yaml")


def test_bad_override():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.epochs"])
