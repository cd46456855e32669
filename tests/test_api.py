"""The Python front door: the README's example runs verbatim, and each verb on its own."""

import re
from pathlib import Path

import pytest
import torch

import lepton
from lepton.api import compress, export_onnx, load, train
from lepton.errors import ConfigError

README = Path(__file__).parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    block = text[text.index("**Python API.**") :]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


@pytest.mark.slow  # trains and compresses (about half a minute)
def test_the_readme_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})  # our own README: running it is the point
    out = capsys.readouterr().out
    ratio, before, after = map(float, re.search(r"([\d.]+)x smaller, accuracy ([\d.]+) -> ([\d.]+)", out).groups())
    assert ratio > 5 and before > 0.9 and after > before - 0.03
    assert (tmp_path / "digits.lep").stat().st_size * 5 < 4 * sum(
        p.numel() for p in load(tmp_path / "digits.lep").parameters()
    )
    assert (tmp_path / "digits.onnx").exists()


def test_load_and_export_are_also_on_the_package():
    assert lepton.load is load and lepton.export_onnx is export_onnx
    with pytest.raises(AttributeError):
        lepton.nothing  # noqa: B018


def test_bad_arguments_are_config_errors(digits):
    with pytest.raises(ConfigError, match="nn.Module"):
        train("lenet5", digits)
    with pytest.raises(ConfigError, match="ImageDataset or a dataset name"):
        compress(torch.nn.Linear(2, 2), 42)
    with pytest.raises(ConfigError, match="epochs"):
        train(torch.nn.Linear(64, 10), digits, epochs=0)
    with pytest.raises(ConfigError, match="input_shape"):
        export_onnx(torch.nn.Linear(2, 2), "x.onnx")


def test_train_with_normalize_auto_gives_the_model_its_statistics_and_compress_keeps_them(digits, tmp_path):
    from lepton.compress.config import CompressConfig
    from lepton.data.stats import channel_stats
    from lepton.models.normalize import input_norm_of
    from tests.fixtures.user_nets import TinyResNet

    data = digits.subset(400, 100)
    torch.manual_seed(0)
    model = TinyResNet(1, 8, 10)
    trained = train(model, data, epochs=1, normalize="auto")
    assert input_norm_of(trained.model).stats() == tuple(
        tuple(torch.tensor(v, dtype=torch.float32).tolist()) for v in channel_stats(data)
    )
    plain = CompressConfig.model_validate({k: {"enabled": False} for k in ("prune", "share", "distill")})
    small = compress(trained.model, data, plain)
    small.save(tmp_path / "m.lep")
    restored = load(tmp_path / "m.lep")
    x = data.tensors("test")[0]
    with torch.no_grad():
        # BatchNorm is folded in the file, so equal to rounding; normalizing twice or never would be far off
        torch.testing.assert_close(restored(x), trained.model.eval()(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="'none' or 'auto'"):
        train(TinyResNet(1, 8, 10), data, normalize="yes")
