"""Seeded batch augmentation (``train.augment``): each crop is the numpy slice of the padded image at the drawn
offset and each flip ``np.flip``; the draws depend only on (seed, epoch, step) and a sample's place in the
global batch; a run with augmentation resumes mid-epoch to the uninterrupted run's weights, trains from a
store as from the arrays, and differs from a run without it while still learning digits."""

import json

import numpy as np
import pytest
import torch

from lepton.data.store import StoreSource, pack_dataset
from lepton.distributed.runtime import World
from lepton.errors import ConfigError
from lepton.train import TrainConfig
from lepton.train.augment import augment_batch, augment_step, parse_augment, step_generator
from lepton.train.config import AugmentConfig
from lepton.train.job import train_model
from tests.cli.invoke import invoke


def _images(n=24, c=3, h=7, w=9, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _reference(x, cfg, generator):
    """The documented draws (crop rows and columns, then flips), applied with numpy one sample at a time."""
    n, _, h, w = x.shape
    p = cfg.crop_padding
    shifts = torch.randint(0, 2 * p + 1, (2, n), generator=generator).numpy() if p else np.zeros((2, n), int)
    flips = torch.randint(0, 2, (n,), generator=generator).numpy() if cfg.hflip else np.zeros(n, int)
    mode = "constant" if cfg.padding_mode == "zeros" else "reflect"
    out = []
    for img, dy, dx, f in zip(x.numpy(), shifts[0], shifts[1], flips, strict=True):
        crop = np.pad(img, ((0, 0), (p, p), (p, p)), mode=mode)[:, dy : dy + h, dx : dx + w]
        out.append(np.flip(crop, axis=-1) if f else crop)
    return np.stack(out), shifts, flips


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(crop_padding=2),
        AugmentConfig(crop_padding=3, hflip=True),
        AugmentConfig(crop_padding=4, padding_mode="reflect", hflip=True),
        AugmentConfig(hflip=True),
    ],
    ids=str,
)
def test_crops_and_flips_equal_numpy_slices_of_the_padded_image(cfg):
    x = _images()
    got = augment_batch(x, cfg, step_generator(1, 2, 3))
    ref, shifts, flips = _reference(x, cfg, step_generator(1, 2, 3))
    assert got.shape == x.shape and got.dtype == x.dtype
    assert np.array_equal(got.numpy(), ref)
    if cfg.crop_padding:
        assert len({(a, b) for a, b in shifts.T}) > 5  # many offsets in one batch, each sample its own
    if cfg.hflip:
        assert 0 < flips.sum() < len(flips)


def test_off_is_the_identity():
    x = _images()
    assert augment_batch(x, AugmentConfig(), step_generator(0, 0, 0)) is x
    assert augment_batch(x, AugmentConfig(padding_mode="reflect"), step_generator(0, 0, 0)) is x
    assert not TrainConfig().augment.enabled  # the default run does not augment


def test_draws_depend_only_on_seed_epoch_and_step():
    x, cfg = _images(), AugmentConfig(crop_padding=2, hflip=True)
    first = augment_batch(x, cfg, step_generator(7, 1, 5))
    torch.manual_seed(123)  # the global stream plays no part
    assert torch.equal(augment_batch(x, cfg, step_generator(7, 1, 5)), first)
    for other in [(8, 1, 5), (7, 2, 5), (7, 1, 6), (7, 0, 0)]:
        assert not torch.equal(augment_batch(x, cfg, step_generator(*other)), first), other


@pytest.mark.parametrize("total,world", [(24, 2), (24, 3), (23, 2), (22, 4)])
def test_each_rank_augments_its_slice_as_the_whole_batch_would(total, world):
    """A rank's part of the global batch (cut as ``tensor_split`` cuts it) gets the augmentation that sample gets
    when one process augments the whole global batch."""
    x, cfg = _images(total), AugmentConfig(crop_padding=1, hflip=True)
    whole = augment_step(x, cfg, seed=3, epoch=0, step=4, world=World(), last=False)
    parts = x.tensor_split(world)
    full = all(len(p) == len(parts[0]) for p in parts)
    for rank, part in enumerate(parts):
        if full:  # an ordinary step: the global batch is world × the rank's batch, no collective needed
            got = augment_step(part, cfg, seed=3, epoch=0, step=4, world=World(rank, world), last=False)
        else:  # an uneven last batch: augment_step sums the sizes over ranks; here the total is given
            offset = sum(len(p) for p in parts[:rank])
            got = augment_batch(part, cfg, step_generator(3, 0, 4), total=total, offset=offset)
        assert torch.equal(got, whole[sum(len(p) for p in parts[:rank]) :][: len(part)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_augments_as_the_cpu_does():
    x, cfg = _images(), AugmentConfig(crop_padding=3, hflip=True, padding_mode="reflect")
    gpu = augment_batch(x.cuda(), cfg, step_generator(1, 0, 2))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), augment_batch(x, cfg, step_generator(1, 0, 2)))


def test_bad_inputs_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"image batches \[N, C, H, W\].*\[16, 64\].*crop_padding=0"):
        augment_batch(torch.zeros(16, 64), AugmentConfig(crop_padding=2), step_generator(0, 0, 0))
    with pytest.raises(ConfigError, match="reflect needs images larger than 8 pixels; these are 8x8"):
        augment_batch(torch.zeros(2, 1, 8, 8), AugmentConfig(crop_padding=8, padding_mode="reflect"), torch.Generator())
    with pytest.raises(ValueError, match="crop_padding"):
        TrainConfig(augment={"crop_padding": -1})
    with pytest.raises(ValueError, match="flip"):
        TrainConfig(augment={"flip": True})  # unknown keys are refused


def test_cli_spelling():
    assert parse_augment("crop4,hflip") == {"crop_padding": 4, "hflip": True}
    assert parse_augment("crop2, reflect") == {"crop_padding": 2, "padding_mode": "reflect"}
    assert parse_augment("off") == {"crop_padding": 0, "hflip": False}
    with pytest.raises(ConfigError, match=r"'vflip' is not cropN, hflip, reflect or off; e.g. --augment crop4"):
        parse_augment("crop4,vflip")
    with pytest.raises(ConfigError, match="'crop' is not"):
        parse_augment("crop")


AUG = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=3, threads=1, augment={"crop_padding": 1, "hflip": True})


@pytest.mark.slow
def test_training_with_augmentation_from_the_store_equals_the_arrays(digits, tmp_path):
    data = digits.subset(1000, 100)
    store = pack_dataset(data, tmp_path / "d.lds", image_codec="zstd", block_samples=128)
    ref = train_model(data, "lenet-300-100", AUG, progress=False)
    got = train_model(StoreSource(str(store)), "lenet-300-100", AUG, progress=False)
    a, b = ref.model.state_dict(), got.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.train_loss for r in got.train.history] == [r.train_loss for r in ref.train.history]


def test_augmentation_changes_training_and_digits_are_still_learnt(digits):
    """A 1-pixel random crop (no flips: a mirrored digit is another digit) on 8x8 digits."""
    cfg = TrainConfig(epochs=10, batch_size=32, lr=0.05, seed=3, threads=1, augment={"crop_padding": 1})
    aug = train_model(digits, "lenet-300-100", cfg, progress=False)
    plain = train_model(digits, "lenet-300-100", cfg.model_copy(update={"augment": AugmentConfig()}), progress=False)
    a, b = aug.model.state_dict(), plain.model.state_dict()
    assert not any(torch.equal(a[k], b[k]) for k in a)
    assert aug.test.accuracy > 0.9 and plain.test.accuracy > 0.9  # measured: 0.950 and 0.983


def test_augmentation_runs_under_cpu_autocast(digits):
    cfg = TrainConfig(epochs=1, batch_size=64, seed=3, threads=1, amp="bf16", augment={"crop_padding": 1})
    aug = train_model(digits.subset(256, 100), "lenet-300-100", cfg, progress=False)
    plain = train_model(
        digits.subset(256, 100), "lenet-300-100", cfg.model_copy(update={"augment": AugmentConfig()}), progress=False
    )
    a, b = aug.model.state_dict(), plain.model.state_dict()
    assert not any(torch.equal(a[k], b[k]) for k in a)


def test_lepton_train_augment_option(tmp_path):
    args = ["train", "--data", "digits", "--model", "lenet-300-100", "--epochs", "1", "--train-subset", "256", "-q"]
    r = invoke([*args, "--augment", "crop1,hflip", "--set", "train.augment.padding_mode=reflect", "-o", str(tmp_path)])
    assert r.code == 0, r.message
    saved = json.loads((tmp_path / "model.json").read_text())["config"]["train"]["augment"]
    assert saved == {"crop_padding": 1, "hflip": True, "padding_mode": "reflect"}
    bad = invoke([*args, "--augment", "crop1,rotate", "-o", str(tmp_path / "bad")])
    assert (bad.code, bad.kind) == (2, "user") and "'rotate' is not cropN, hflip, reflect or off" in bad.message
    big = invoke([*args, "--augment", "crop100", "-o", str(tmp_path / "big")])
    assert (big.code, big.kind) == (2, "user") and "crop_padding" in big.message
