"""Augmentation under DDP: each rank augments its slice of the global batch as one process augments the
whole batch, the uneven last batch of an epoch included (its size summed over a real gloo group of two
processes), and two torchrun workers with ``train.augment`` train to the weights of one process on the
global batch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lepton.distributed.runtime import World
from lepton.train import TrainConfig
from lepton.train.augment import augment_step
from lepton.train.config import AugmentConfig
from lepton.train.job import train_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CFG = AugmentConfig(crop_padding=2, hflip=True)
TOTAL = 23  # an epoch's last global batch: 12 samples on rank 0, 11 on rank 1


def _batch() -> torch.Tensor:
    return torch.randn(TOTAL, 2, 6, 5, generator=torch.Generator().manual_seed(1))


def augment_as_rank(rank: int, store_file: str, out: str) -> None:
    """In a child process: join a gloo group of two, augment this rank's part of the last batch, save it."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(store_file, 2), rank=rank, world_size=2)
    part = _batch().tensor_split(2)[rank]
    got = augment_step(part, CFG, seed=9, epoch=1, step=15, world=World(rank, 2), last=True)
    np.save(out, got.numpy())
    dist.barrier()


def test_ranks_of_a_gloo_group_augment_their_slices_of_an_uneven_last_batch(tmp_path):
    root = Path(__file__).resolve().parents[2]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os; from tests.distributed.test_augment import augment_as_rank; "
                f"augment_as_rank({rank}, {str(tmp_path / 'store')!r}, {str(tmp_path / f'{rank}.npy')!r}); "
                "os._exit(0)",  # skips gloo's teardown (see tests/distributed/test_units.py::test_hook_bytes)
            ],
            cwd=root,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-3000:]
    whole = augment_step(_batch(), CFG, seed=9, epoch=1, step=15, world=World(), last=True)
    parts = [torch.from_numpy(np.load(tmp_path / f"{rank}.npy")) for rank in range(2)]
    assert [len(p) for p in parts] == [12, 11]
    assert torch.equal(torch.cat(parts), whole)


def test_two_workers_with_augmentation_equal_one_process_on_the_global_batch(digits, tmp_path):
    data = digits.subset(1024, 200)
    one = TrainConfig(
        epochs=2, batch_size=64, lr=0.05, seed=5, threads=1, augment=CFG.model_copy(update={"hflip": False})
    )
    ref = train_model(data, "lenet-300-100", one, progress=False)
    # 2 ranks × 32 = the same 64-sample global batches, each rank cropping its half as the one process does
    two = TrainConfig(**{**one.model_dump(), "batch_size": 32, "distributed": {"nproc": 2, "timeout_s": 60}})
    ddp = train_model(data, "lenet-300-100", two, checkpoint_dir=tmp_path, progress=False)
    assert ddp.train.world_size == 2 and ddp.train.steps == ref.train.steps
    diff = max(
        float((a - b).abs().max()) for a, b in zip(ref.model.state_dict().values(), ddp.model.state_dict().values())
    )
    assert diff <= 1e-5  # the rounding by which one process and two differ (tests/distributed/test_ddp.py)
    plain = train_model(data, "lenet-300-100", one.model_copy(update={"augment": AugmentConfig()}), progress=False)
    assert (
        max(
            float((a - b).abs().max())
            for a, b in zip(ref.model.state_dict().values(), plain.model.state_dict().values())
        )
        > 1e-2
    )
