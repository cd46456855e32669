"""Which torch device a command computes on (``--device auto|cpu|cuda|cuda:N|mps``), and the CPU copies of
tensors that everything Lepton saves is made of: checkpoints and ``.lep`` files hold CPU tensors whatever
device trained the model, so a file written on a GPU loads on a machine without one."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from lepton.config import DEVICE_PATTERN
from lepton.errors import ConfigError

_FIX = "use --device cpu or auto"


def mps_available() -> bool:
    """True when Apple's Metal backend is built into this torch and usable on this machine."""
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def resolve_device(spec: str) -> torch.device:
    """The device ``spec`` names, checked against this machine.

    Args:
        spec: ``auto`` (CUDA if available, else MPS if available, else the CPU), ``cpu``, ``cuda``
            (the current CUDA device; each worker's own under DDP), ``cuda:N`` or ``mps``.

    Returns:
        The ``torch.device`` to compute on.

    Raises:
        ConfigError: ``spec`` is not one of those spellings, or names a device this machine lacks.
    """
    if not isinstance(spec, str) or not re.fullmatch(DEVICE_PATTERN, spec):
        raise ConfigError(f"the device must be auto, cpu, cuda, cuda:N or mps. Got {str(spec)[:40]!r} instead; {_FIX}.")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not mps_available():
            raise ConfigError(f"--device mps: Apple's MPS backend is not available on this machine; {_FIX}.")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: CUDA is not available on this machine (torch sees no GPU); {_FIX}.")
    if spec == "cuda":  # no index: the current GPU, or cuda:LOCAL_RANK under DDP (no CUDA context is made here)
        return torch.device("cuda")
    count, index = torch.cuda.device_count(), int(spec.partition(":")[2])
    if index >= count:
        raise ConfigError(
            f"--device {spec}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}; "
            f"pick one of those, or {_FIX}."
        )
    return torch.device("cuda", index)


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (else first buffer); the CPU for a module without tensors."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def cpu_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of ``tensors`` (a state dict) for writing to a file.

    Tensors already on the CPU are not copied (``.to`` returns them as they are); a model trained on a GPU
    is saved exactly as its weights are, moved to host memory.
    """
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
