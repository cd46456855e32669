"""Input normalization stored with the model: statistics of the training split against numpy, the spec field
(round trip, old files, forged values refused), and the model applying it once without new state-dict keys."""

import json
import math

import numpy as np
import pytest
import torch

from lepton.compress.container import decode_model, encode_model
from lepton.data.dataset import ImageDataset
from lepton.data.stats import CHUNK, channel_stats
from lepton.data.store import StoreSource, pack_dataset
from lepton.errors import ConfigError, FormatError
from lepton.models.normalize import input_norm_of
from lepton.models.registry import ModelSpec
from lepton.train.checkpoint import load_checkpoint, save_checkpoint
from tests.compress.test_container import forge, split

NORM3 = ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))


def _dataset(shape, n_train, seed=0):
    """Random uint8 images of ``shape`` per sample whose channels differ in level; the test split is all 255,
    so statistics that read it would be visibly off."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train, *shape), dtype=np.uint8)
    if len(shape) == 3:
        x[:, 1] //= 2  # channel 1 darker, channel 2 nearly constant
        x[:, 2] = 200 + x[:, 2] % 3
    y = rng.integers(0, 3, n_train)
    return ImageDataset("synthetic", x, y, np.full((5, *shape), 255, np.uint8), np.zeros(5, np.int64))


@pytest.mark.parametrize("shape, n", [((3, 5, 4), CHUNK + 123), ((6, 7), 50)])
def test_channel_stats_equal_numpy_over_the_training_split(shape, n):
    data = _dataset(shape, n)
    x = data.x_train.astype(np.float64) / 255
    x = x[:, None] if x.ndim == 3 else x
    mean, std = channel_stats(data)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-10)
    assert len(mean) == len(std) == data.input_shape[0]


def test_channel_stats_of_a_packed_store_equal_those_of_its_arrays(tmp_path, digits):
    store = pack_dataset(digits, tmp_path / "d.lds", image_codec="zstd", block_samples=100)
    got = channel_stats(StoreSource(str(store)).subset(700))
    want = channel_stats(digits.subset(700))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_constant_channel_is_only_centred():
    data = _dataset((2, 3), 10)
    data.x_train[:] = 7
    mean, std = channel_stats(data)
    assert mean == (7 / 255,) and std == (1.0,)


def test_spec_round_trips_and_old_specs_load_unchanged():
    spec = ModelSpec("resnet20", (3, 8, 8), 10, normalize=NORM3)
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["normalize"] == {"mean": list(NORM3[0]), "std": list(NORM3[1])}
    assert ModelSpec.from_dict(d) == spec
    old = ModelSpec("resnet20", (3, 8, 8), 10)
    assert "normalize" not in old.to_dict()  # plain models keep the layout files always had
    assert ModelSpec.from_dict(old.to_dict()).normalize is None


FORGED = {
    "wrong length": {"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]},
    "NaN mean": {"mean": [0.5, math.nan, 0.5], "std": [0.2, 0.2, 0.2]},
    "infinite std": {"mean": [0.5, 0.5, 0.5], "std": [0.2, math.inf, 0.2]},
    "std 0": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]},
    "negative std": {"mean": [0.5, 0.5, 0.5], "std": [-0.2, 0.2, 0.2]},
    "string": "imagenet",
    "strings": {"mean": ["0.5", "0.5", "0.5"], "std": [0.2, 0.2, 0.2]},
    "booleans": {"mean": [True, False, True], "std": [0.2, 0.2, 0.2]},
    "huge mean": {"mean": [1e300, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
    "extra key": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2], "eps": 1},
}


@pytest.mark.parametrize("case", list(FORGED))
def test_forged_normalize_is_refused_in_specs_lep_files_and_checkpoints(case, tmp_path):
    spec = ModelSpec("resnet20", (3, 8, 8), 10, normalize=NORM3)
    with pytest.raises(ConfigError, match="normalize"):
        ModelSpec.from_dict({**spec.to_dict(), "normalize": FORGED[case]})
    model = spec.build()
    data = encode_model(spec, model.state_dict())  # version 2 or 3 (a tensor may code its zeros as a mask)
    version = split(data)[0]["version"]
    data = forge(data, edit=lambda h: h["model"].update(normalize=FORGED[case]), version=version)
    with pytest.raises(FormatError, match="normalize|not valid JSON"):  # NaN, inf: refused as JSON already
        decode_model(data)
    save_checkpoint(tmp_path / "m", model, spec)
    sidecar = tmp_path / "m.json"
    meta = json.loads(sidecar.read_text())
    meta["model"]["normalize"] = FORGED[case]
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="normalize|not valid JSON"):  # NaN, inf: refused as JSON already
        load_checkpoint(tmp_path / "m")


def test_spec_refuses_bad_normalization_from_python():
    with pytest.raises(ConfigError, match="3 numbers"):
        ModelSpec("resnet20", (3, 8, 8), 10, normalize=((0.5,), (0.2,)))


def test_the_model_normalizes_once_and_keeps_its_state_dict_keys():
    torch.manual_seed(0)
    spec = ModelSpec("resnet20", (3, 8, 8), 10, normalize=NORM3)
    plain = ModelSpec("resnet20", (3, 8, 8), 10)
    model = spec.build().eval()
    assert list(model.state_dict()) == list(plain.build().state_dict())
    same = plain.load(model.state_dict()).eval()  # the same weights, no normalization
    x = torch.rand(4, 3, 8, 8)
    mean, std = (torch.tensor(v).reshape(1, 3, 1, 1) for v in NORM3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), same((x - mean) / std))
        assert not torch.allclose(model(x), same(x), atol=1e-3)
    reloaded = ModelSpec.from_dict(spec.to_dict()).load(model.state_dict()).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))


def test_a_spec_that_disagrees_with_its_model_is_refused():
    model = ModelSpec("resnet20", (3, 8, 8), 10, normalize=NORM3).build()
    assert input_norm_of(model) is not None
    with pytest.raises(ConfigError, match="normalizes its input"):
        ModelSpec("resnet20", (3, 8, 8), 10).with_graph(model)
    with pytest.raises(ConfigError, match="normalizes its input"):
        ModelSpec("resnet20", (3, 8, 8), 10, normalize=((0.1, 0.1, 0.1), (1.0, 1.0, 1.0))).with_graph(model)


def test_a_round_trip_through_a_lep_file_keeps_the_normalization():
    spec = ModelSpec("resnet20", (3, 8, 8), 10, normalize=NORM3)
    model = spec.build().eval()
    decoded = decode_model(encode_model(spec, model.state_dict()))
    assert decoded.spec == spec
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(decoded.build_model().eval()(x), model(x))
