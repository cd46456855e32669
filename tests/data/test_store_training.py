"""The packed store as a training source: ``StoreSource`` answers as the arrays it holds do, training from it
gives bit-identical weights, sharded loaders read each rank's part of the same global batches, and
``lepton train --data x.lds`` runs end to end."""

import json

import numpy as np
import pytest
import torch

from lepton.data import TensorBatches, load_dataset, load_training_data
from lepton.data.store import StoreSource, StoreWriter, pack_dataset
from lepton.errors import DataError
from lepton.train import TrainConfig, load_checkpoint
from lepton.train.job import train_model
from tests.cli.invoke import invoke


@pytest.fixture(scope="module")
def store(tmp_path_factory, digits):
    return pack_dataset(digits, tmp_path_factory.mktemp("src") / "digits.lds", image_codec="zstd", block_samples=100)


def test_source_answers_as_the_arrays_do(store, digits):
    src = load_training_data(str(store))
    assert isinstance(src, StoreSource)
    assert src.input_shape == digits.input_shape and src.classes == digits.classes
    sub, ref = src.subset(500, 70), digits.subset(500, 70)
    assert sub.summary() == {**ref.summary(), "source": str(store)}
    for split in ("train", "test"):
        (x, y), (rx, ry) = sub.tensors(split), ref.tensors(split)
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert sub.subset(600, 10).summary()["train"] == 500  # a subset of a subset never grows


def test_load_dataset_decodes_a_store_whole(store, digits):
    back = load_dataset(str(store))
    assert np.array_equal(back.x_train, digits.x_train) and np.array_equal(back.y_test, digits.y_test)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sharded_store_batches_equal_sharded_tensor_batches(store, digits, world):
    src = load_training_data(str(store)).subset(1000)
    x, y = digits.subset(1000).tensors("train")
    whole = TensorBatches(x, y, 32 * world, seed=5)
    for rank in range(world):
        ref, got = TensorBatches(x, y, 32, seed=5).shard(rank, world), src.batches(32, seed=5).shard(rank, world)
        assert (got.rank, got.world_size, len(got)) == (rank, world, len(ref))
        for epoch in (0, 1):
            ref.set_epoch(epoch)
            got.set_epoch(epoch)
            whole.set_epoch(epoch)
            for (rx, ry), (gx, gy), (wx, _) in zip(ref, got, whole, strict=True):
                assert torch.equal(rx, gx) and torch.equal(ry, gy)
                assert any(torch.equal(gx, part) for part in wx.tensor_split(world))  # its slice of the global batch


def test_set_start_skips_the_first_steps(store):
    loader = load_training_data(str(store)).batches(64, seed=2)
    loader.set_epoch(1)
    full = list(loader)
    loader.set_epoch(1)
    loader.set_start(5)
    rest = list(loader)
    assert len(rest) == len(full) - 5 and all(torch.equal(a[0], b[0]) for a, b in zip(full[5:], rest, strict=True))
    loader.set_epoch(2)  # a new epoch starts at its first step again
    assert len(list(loader)) == len(loader)


def test_training_from_the_store_gives_the_weights_of_the_arrays(store, digits):
    cfg = TrainConfig(epochs=2, batch_size=64, seed=3, threads=1)
    ref = train_model(digits.subset(1000, 100), "lenet-300-100", cfg, progress=False)
    got = train_model(load_training_data(str(store)).subset(1000, 100), "lenet-300-100", cfg, progress=False)
    a, b = ref.model.state_dict(), got.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    timeless = {"seconds", "images_per_second"}
    assert [r.model_dump(exclude=timeless) for r in got.train.history] == [
        r.model_dump(exclude=timeless) for r in ref.train.history
    ]
    assert got.test == ref.test


def test_a_store_without_a_test_split_is_refused(tmp_path, digits):
    path = tmp_path / "train-only.lds"
    with StoreWriter(path) as w:
        w.add_split("train", {"images": digits.x_train, "labels": digits.y_train}, {"images": "zstd", "labels": "zstd"})
    with pytest.raises(DataError, match=r"needs splits 'train' and 'test', the store has train"):
        load_training_data(str(path))


def test_cli_trains_from_a_store(store, tmp_path):
    out = tmp_path / "out"
    args = ["train", "--data", str(store), "--model", "lenet-300-100", "--epochs", "1", "--train-subset", "300"]
    r = invoke([*args, "-o", str(out), "--quiet", "--format", "json"])
    assert r.kind == "ok", r.message
    assert 0.0 <= json.loads(r.stdout)["test_accuracy"] <= 1.0
    summary = load_checkpoint(out / "model.safetensors").meta["dataset"]
    assert summary["source"] == str(store) and summary["train"] == 300 and summary["test"] == 360
