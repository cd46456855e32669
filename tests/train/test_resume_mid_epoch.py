"""Exact mid-epoch resume: with ``checkpoint_every_steps`` the checkpoint records the step within the epoch
and the epoch's sums so far; a run interrupted after it and resumed ends with the weights (bit for bit) and
the epoch records of the uninterrupted run, from in-memory tensors, from a packed store, and from a plain
iterable without ``set_start``, with seeded augmentation (``train.augment``) too."""

import json

import pytest
import torch

from lepton.data.store import pack_dataset
from lepton.data.store.source import StoreSource
from lepton.errors import FormatError
from lepton.models.registry import ModelSpec
from lepton.train import TensorBatches, TrainConfig, fit, seed_everything
from lepton.train.config import AugmentConfig

CFG = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=4, threads=1, checkpoint_every_steps=5)
TIMELESS = {"seconds", "images_per_second"}


class Interrupted(Exception):
    """Stands for a kill: raised from ``after_step`` after a given number of steps."""


class Plain:
    """Seeded batches that can only be iterated from the start (the loop skips by reading)."""

    def __init__(self, inner):
        self.inner = inner

    def set_epoch(self, epoch):
        self.inner.set_epoch(epoch)

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        return iter(self.inner)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, digits):
    data = digits.subset(1000, 100)
    store = pack_dataset(data, tmp_path_factory.mktemp("resume") / "d.lds", image_codec="zstd", block_samples=128)
    return {
        "tensors": lambda: TensorBatches(*data.tensors("train"), CFG.batch_size, seed=CFG.seed),
        "store": lambda: StoreSource(str(store)).batches(CFG.batch_size, seed=CFG.seed),
        "plain": lambda: Plain(TensorBatches(*data.tensors("train"), CFG.batch_size, seed=CFG.seed)),
    }


def _train(batches, out, *, cfg=CFG, stop_after=None, resume=False):
    seed_everything(cfg.seed, cfg.threads)
    spec = ModelSpec("lenet-300-100", (1, 8, 8), 10)
    model = spec.build()
    steps = []

    def after_step(_model):
        steps.append(1)
        if len(steps) == stop_after:
            raise Interrupted

    report = fit(
        model, batches, cfg, spec=spec, checkpoint_dir=out, resume=resume, after_step=after_step, progress=False
    )
    return model.state_dict(), report


@pytest.mark.parametrize("kind", ["tensors", "store", "plain"])
def test_resume_after_a_mid_epoch_checkpoint_equals_the_uninterrupted_run(sources, tmp_path, kind):
    ref_state, ref = _train(sources[kind](), tmp_path / "ref")
    assert ref.steps == 2 * 16 and ref.resumed_from_step is None
    with pytest.raises(Interrupted):  # 23 steps: the last checkpoint is step 20, step 4 of epoch 2
        _train(sources[kind](), tmp_path / "cut", stop_after=23)
    meta = json.loads((tmp_path / "cut" / "last.json").read_text())["train"]
    assert (meta["epoch"], meta["batch"], meta["step"], meta["partial"]["seen"]) == (1, 4, 20, 4 * 64)
    state, report = _train(sources[kind](), tmp_path / "cut", resume=True)
    assert report.resumed_from_epoch == 1 and report.resumed_from_step == 20 and report.steps == ref.steps
    assert state.keys() == ref_state.keys() and all(torch.equal(state[k], ref_state[k]) for k in state)
    assert [r.model_dump(exclude=TIMELESS) for r in report.history] == [
        r.model_dump(exclude=TIMELESS) for r in ref.history
    ]
    assert "batch" not in json.loads((tmp_path / "cut" / "last.json").read_text())["train"]  # the epoch's end


@pytest.mark.parametrize("kind", ["tensors", "store"])
def test_resume_with_augmentation_equals_the_uninterrupted_run(sources, tmp_path, kind):
    """The augmentation of a step is drawn from (seed, epoch, step), so the resumed run crops and flips the
    remaining batches as the uninterrupted one did, whichever source they come from."""
    cfg = CFG.model_copy(update={"augment": AugmentConfig(crop_padding=1, hflip=True)})
    ref_state, ref = _train(sources[kind](), tmp_path / "ref", cfg=cfg)
    plain_state, _ = _train(sources[kind](), tmp_path / "plain")
    assert not any(torch.equal(ref_state[k], plain_state[k]) for k in ref_state)  # augmentation took part
    with pytest.raises(Interrupted):
        _train(sources[kind](), tmp_path / "cut", cfg=cfg, stop_after=23)
    state, report = _train(sources[kind](), tmp_path / "cut", cfg=cfg, resume=True)
    assert report.resumed_from_step == 20 and report.steps == ref.steps
    assert all(torch.equal(state[k], ref_state[k]) for k in state)
    assert [r.train_loss for r in report.history] == [r.train_loss for r in ref.history]


def test_a_checkpoint_at_a_step_past_the_epoch_is_refused(sources, tmp_path):
    with pytest.raises(Interrupted):
        _train(sources["tensors"](), tmp_path, stop_after=7)
    sidecar = tmp_path / "last.json"
    meta = json.loads(sidecar.read_text())
    meta["train"]["batch"] = 16
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(FormatError, match=r"last.json: the key 'train' .*batch 16 \(this run has 16 steps per epoch\)"):
        _train(sources["tensors"](), tmp_path, resume=True)


def test_checkpoint_every_steps_must_not_be_negative():
    with pytest.raises(ValueError, match="checkpoint_every_steps"):
        TrainConfig(checkpoint_every_steps=-1)
