"""Start workers through torchrun's elastic agent (``python -m torch.distributed.run``) in a child
process: it does the rendezvous (one node or many), watches the workers, restarts the group up to
``max_restarts`` times after a failure, and stops every worker when one fails for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from lepton.distributed.config import DistributedConfig
from lepton.errors import LeptonError


class LaunchError(LeptonError):
    """The distributed job failed (a worker crashed more often than ``max_restarts`` allows, or timed out)."""


def torchrun_args(cfg: DistributedConfig) -> list[str]:
    """torchrun's options for ``cfg``: standalone on one node, c10d (elastic) or static rendezvous across nodes."""
    args = [
        f"--nnodes={cfg.nnodes}",
        f"--nproc-per-node={cfg.nproc}",
        f"--max-restarts={cfg.max_restarts}",
        "--monitor-interval=0.5",
    ]
    if cfg.rdzv_endpoint is None:
        return [*args, "--standalone"]
    if cfg.node_rank is not None:  # fixed ranks: the endpoint is rank 0's address
        host, _, port = cfg.rdzv_endpoint.rpartition(":")
        return [
            *args,
            "--rdzv-backend=static",
            f"--node-rank={cfg.node_rank}",
            f"--master-addr={host}",
            f"--master-port={port}",
        ]
    return [
        *args,
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={cfg.rdzv_endpoint}",
        f"--rdzv-id={cfg.rdzv_id}",
        f"--rdzv-conf=join_timeout={int(cfg.timeout_s)}",
    ]


def torchrun_command(cfg: DistributedConfig, module: str, module_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(cfg), "-m", module, *module_args]


def launch(
    cfg: DistributedConfig, module: str, module_args: list[str], *, threads: int = 1, timeout_s: float | None = None
) -> None:
    """Run ``python -m module module_args`` on ``cfg.nproc`` workers of this node; returns when all succeed.

    Workers get ``OMP_NUM_THREADS=threads``. On error, interrupt or ``timeout_s`` the agent is sent
    SIGTERM (it stops its workers) and, if still alive after 30 s, its whole process group is killed.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(max(threads, 1)))
    # Workers set their process group up on a store of their own: on the agent's shared rendezvous store
    # a restarted group can read the previous attempt's addresses (pytorch/pytorch#135712).
    env.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    proc = subprocess.Popen(torchrun_command(cfg, module, module_args), env=env, start_new_session=True)
    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM to us also stops the workers
        previous = signal.signal(signal.SIGTERM, _raise_exit)
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise LaunchError(
            f"the distributed job ran past {timeout_s:.0f} s and was stopped; raise the timeout or shrink the job."
        ) from None
    except BaseException:
        _stop(proc)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if rc != 0:
        raise LaunchError(
            f"the distributed job failed (torchrun exit status {rc}, after up to "
            f"{cfg.max_restarts} restarts); the failing worker's error is printed above."
        )


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the agent and its workers: the group this launch created
        proc.wait()
