"""The process-group backend follows where the model trains: NCCL only for CUDA, gloo otherwise; each worker on CUDA
takes cuda:LOCAL_RANK. Pure decisions, checked for every combination on the CPU."""

import pytest
import torch

from lepton.distributed.config import DistributedConfig
from lepton.distributed.runtime import pick_backend, rank_device
from lepton.errors import ConfigError

CPU, CUDA, CUDA1, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("cuda", 1), torch.device("mps")


@pytest.mark.parametrize(
    ("backend", "device", "expected"),
    [
        ("auto", CPU, "gloo"),
        ("auto", MPS, "gloo"),
        ("auto", CUDA, "nccl"),
        ("auto", CUDA1, "nccl"),
        ("gloo", CPU, "gloo"),
        ("gloo", MPS, "gloo"),
        ("gloo", CUDA, "gloo"),
        ("gloo", CUDA1, "gloo"),
        ("nccl", CUDA, "nccl"),
        ("nccl", CUDA1, "nccl"),
    ],
)
def test_backend_choice(backend, device, expected):
    assert pick_backend(DistributedConfig(backend=backend), device) == expected


@pytest.mark.parametrize("device", [CPU, MPS])
def test_nccl_for_a_model_off_cuda_is_refused(device):
    with pytest.raises(ConfigError, match=f"'nccl' but the model trains on {device}.*use backend 'gloo'"):
        pick_backend(DistributedConfig(backend="nccl"), device)


def test_auto_never_picks_nccl_for_a_cpu_model_even_on_a_cuda_machine():
    """The bug issue 21 reports: pick_backend chose NCCL whenever CUDA existed, though the model stayed on the CPU.
    The choice now depends only on the model's device, whatever this machine has."""
    assert pick_backend(DistributedConfig(), CPU) == "gloo"


@pytest.mark.parametrize(
    ("device", "local", "world", "expected"),
    [
        (CPU, 3, 4, CPU),
        (MPS, 0, 1, MPS),
        (CUDA, 0, 1, CUDA),
        (CUDA1, 0, 1, CUDA1),  # alone, an explicit GPU is kept
        (CUDA, 0, 2, torch.device("cuda", 0)),
        (CUDA, 3, 4, torch.device("cuda", 3)),
    ],
)
def test_rank_device(device, local, world, expected):
    assert rank_device(device, local, world, gpus=4) == expected


def test_more_workers_than_gpus_is_refused():
    with pytest.raises(
        ConfigError, match=r"worker 2 on this machine needs cuda:2, but it has 2 GPU\(s\); use --nproc 2"
    ):
        rank_device(CUDA, 2, 4, gpus=2)


def test_a_fixed_gpu_for_several_workers_is_refused():
    with pytest.raises(
        ConfigError, match=r"--device cuda:1 pins every one of the 2 workers to one GPU; use --device cuda"
    ):
        rank_device(CUDA1, 0, 2, gpus=4)
