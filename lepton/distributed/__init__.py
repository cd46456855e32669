"""Distributed training over torch.distributed: torchrun launch, DDP glue, compressed gradients."""

from lepton.distributed.config import CommHookConfig, DistributedConfig
from lepton.distributed.hooks import CommCounter, CommReport, register_comm_hook
from lepton.distributed.launch import LaunchError, launch, torchrun_command
from lepton.distributed.runtime import World, current_world, launched_by_torchrun, worker_session

__all__ = ["CommCounter", "CommHookConfig", "CommReport", "DistributedConfig", "LaunchError", "World",
           "current_world", "launch", "launched_by_torchrun", "register_comm_hook", "torchrun_command",
           "worker_session"]
