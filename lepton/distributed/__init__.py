"""Distributed training over torch.distributed: torchrun launch, DDP glue, compressed gradients.

The names below load on first use (:mod:`lepton.utils.lazy`), so ``lepton.distributed.config`` imports without
torch.
"""

from lepton.utils.lazy import lazy_exports

__all__ = [
    "CommCounter",
    "CommHookConfig",
    "CommReport",
    "DistributedConfig",
    "LaunchError",
    "World",
    "current_world",
    "launch",
    "launched_by_torchrun",
    "register_comm_hook",
    "torchrun_command",
    "worker_session",
]

lazy_exports(
    __name__,
    {
        "lepton.distributed.config": ("CommHookConfig", "DistributedConfig"),
        "lepton.distributed.hooks": ("CommCounter", "CommReport", "register_comm_hook"),
        "lepton.distributed.launch": ("LaunchError", "launch", "torchrun_command"),
        "lepton.distributed.runtime": ("World", "current_world", "launched_by_torchrun", "worker_session"),
    },
)
