"""``.npz`` images channels first or last, and non-square images through to a training step."""

import numpy as np
import pytest
import torch

from lepton.data import SourceOptions, TensorBatches, load_dataset
from lepton.errors import ConfigError, DataError
from lepton.models.registry import build_model
from lepton.train.config import TrainConfig
from lepton.train.loop import fit

RNG = np.random.default_rng(2)


def _pair(tmp_path, shape_nchw, name="c"):
    x = RNG.integers(0, 256, shape_nchw, dtype=np.uint8)
    y = np.arange(len(x)) % 3
    np.savez(tmp_path / f"{name}_first.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    np.savez(
        tmp_path / f"{name}_last.npz",
        x_train=x.transpose(0, 2, 3, 1),
        y_train=y,
        x_test=x[:2].transpose(0, 2, 3, 1),
        y_test=y[:2],
    )
    return x


@pytest.mark.parametrize("shape", [(6, 3, 8, 6), (6, 1, 5, 9), (6, 4, 7, 7)])
def test_channels_last_and_first_give_identical_tensors(tmp_path, shape):
    x = _pair(tmp_path, shape)
    first, last = load_dataset(str(tmp_path / "c_first.npz")), load_dataset(str(tmp_path / "c_last.npz"))
    assert first.input_shape == last.input_shape == shape[1:]
    np.testing.assert_array_equal(first.x_train, x)
    for split in ("train", "test"):
        a, b = first.tensors(split), last.tensors(split)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_ambiguous_layout_asks_for_the_option_which_resolves_it(tmp_path):
    x = _pair(tmp_path, (4, 3, 5, 3))  # (N, 3, 5, 3) and (N, 5, 3, 3): both ends could be channels
    with pytest.raises(DataError, match=r"ambiguous.*--layout nchw.*--layout nhwc"):
        load_dataset(str(tmp_path / "c_first.npz"))
    nchw = load_dataset(str(tmp_path / "c_first.npz"), SourceOptions(layout="nchw"))
    nhwc = load_dataset(str(tmp_path / "c_last.npz"), SourceOptions(layout="nhwc"))
    np.testing.assert_array_equal(nchw.x_train, x)
    np.testing.assert_array_equal(nhwc.x_train, x)


def test_no_channel_axis_is_an_error_too(tmp_path):
    np.savez(tmp_path / "odd.npz", x=np.zeros((4, 5, 6, 7), np.uint8), y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="neither the second nor the last axis"):
        load_dataset(str(tmp_path / "odd.npz"))


def test_non_square_images_train_a_step_with_a_pooling_model_and_lenet5_says_what_to_do(tmp_path):
    np.savez(tmp_path / "wide.npz", x=RNG.integers(0, 256, (20, 1, 12, 20), dtype=np.uint8), y=np.arange(20) % 3)
    d = load_dataset(str(tmp_path / "wide.npz"))
    assert d.input_shape == (1, 12, 20)
    model = build_model("tests.fixtures.user_nets:make_any_size", d.input_shape, d.num_classes, trust_code=True)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = d.tensors("train")
    report = fit(model, TensorBatches(x, y, 16), TrainConfig(epochs=1), progress=False)
    assert report.epochs == 1 and report.steps == 1 and np.isfinite(report.final_train_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ConfigError, match=r"lenet5' takes square images.*12x20.*--image-size 12"):
        build_model("lenet5", d.input_shape, d.num_classes)
