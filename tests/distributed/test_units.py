"""Unit checks: batch sharding, config validation, torchrun command lines, and the byte accounting of
each communication hook against PowerSGD's own statistics (a world of one, in a child process)."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from pydantic import ValidationError

from lepton.distributed import CommHookConfig, DistributedConfig, register_comm_hook, torchrun_command
from lepton.distributed.ddp import wrap_ddp
from lepton.distributed.hooks import powersgd_numel
from lepton.models import ModelSpec
from lepton.train import TensorBatches


@pytest.mark.parametrize("n", [256, 250, 201])
def test_shards_partition_each_global_batch(n):
    x, y = torch.arange(n).float()[:, None], torch.arange(n)
    whole = TensorBatches(x, y, 64, seed=3)
    shards = [whole.shard(r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    single = list(TensorBatches(x, y, 128, seed=3))  # one process, the global batch
    for i, parts in enumerate(zip(*shards)):
        assert torch.equal(torch.cat([p[1] for p in parts]), single[i][1][: sum(len(p[1]) for p in parts)])
    seen = torch.cat([b[1] for s in shards for b in s])
    assert len(seen) == len(seen.unique()) and len(seen) >= n - 1


def test_config_refuses_bad_values():
    with pytest.raises(ValidationError, match="rdzv_endpoint"):
        DistributedConfig(nnodes=2)
    with pytest.raises(ValidationError, match="HOST:PORT"):
        DistributedConfig(rdzv_endpoint="localhost")
    with pytest.raises(ValidationError, match="warmup_steps"):
        CommHookConfig(kind="powersgd", warmup_steps=1)


def test_torchrun_command_lines():
    assert "--standalone" in torchrun_command(DistributedConfig(nproc=2), "m", [])
    c10d = torchrun_command(DistributedConfig(nnodes=2, rdzv_endpoint="10.0.0.1:29400"), "m", ["a"])
    assert "--rdzv-backend=c10d" in c10d and "--rdzv-endpoint=10.0.0.1:29400" in c10d and c10d[-3:] == ["-m", "m", "a"]
    static = torchrun_command(DistributedConfig(nnodes=2, node_rank=1, rdzv_endpoint="h:1234"), "m", [])
    assert "--node-rank=1" in static and "--master-addr=h" in static and "--master-port=1234" in static


CHECKED = "hook bytes checked"


def check_hook_bytes(kind: str) -> None:
    """Four DDP steps of LeNet-5 in a world of one with the ``kind`` hook; the byte accounting is checked
    against the parameter sizes and PowerSGD's own statistics. Runs in a child process (test_hook_bytes)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = ModelSpec("lenet5", (1, 28, 28), 10).build()
        config = CommHookConfig(kind=kind, rank=2, warmup_steps=2)
        ddp = wrap_ddp(model, config)  # the bucket layout fit() uses (one bucket for PowerSGD on gloo)
        counter = register_comm_hook(ddp, config)
        params = [p for p in model.parameters()]
        plain = sum(4 * p.numel() for p in params)
        for _ in range(4):
            ddp(torch.rand(8, 1, 28, 28)).sum().backward()
        report = counter.report()
        assert report.steps == 4 and report.uncompressed_bytes_per_step == plain == 4 * 431_080
        if kind == "none":
            assert report.bytes_last_step == plain
        elif kind == "fp16":
            assert report.bytes_last_step == plain // 2
        else:  # two warm-up steps of plain all-reduce, then PowerSGD; its own count agrees with ours
            expected = 4 * sum(powersgd_numel(p.shape, 2, 2.0) for p in params)
            assert report.bytes_last_step == expected and report.bytes_total == 2 * plain + 2 * expected
            assert 4 * report.powersgd_numel_after == 2 * expected and 4 * report.powersgd_numel_before == 2 * plain
            assert report.compression_ratio > 10
        print(CHECKED, flush=True)  # every check passed; what follows is teardown
    finally:
        ddp = counter = None  # drop the DDP reducer and the hook state, then collect their cycles,
        gc.collect()  # while the group still exists
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["none", "fp16", "powersgd"])
def test_hook_bytes(kind):
    """In a child process: gloo's worker threads of an in-process group can outlive the group and abort
    the interpreter later (a CI run died that way in the next test; cf. pytorch/pytorch#179291). The child
    prints a marker once every check has passed and skips the interpreter's teardown (``os._exit``); a
    gloo abort during ``destroy_process_group`` ("terminate called without an active exception", seen
    once in a fresh-clone CI run) after the marker is that upstream teardown bug, not a failed check."""
    code = (
        f"import os; from tests.distributed.test_units import check_hook_bytes; check_hook_bytes({kind!r}); os._exit(0)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=Path(__file__).resolve().parents[2],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert CHECKED in r.stdout, r.stderr[-3000:]
    assert r.returncode == 0 or "terminate called without an active exception" in r.stderr, r.stderr[-3000:]
