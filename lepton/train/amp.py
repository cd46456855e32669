"""Automatic mixed precision for the training loop (``--amp off|bf16|fp16``, config ``train.amp``).

``bf16`` runs the forward pass and the loss under ``torch.autocast`` in bfloat16, on CUDA (a GPU with
bf16 support) or on the CPU (torch's CPU autocast; slower than fp32 on most CPUs, useful to check a
bf16 run before sending it to a GPU). ``fp16`` runs them in float16 with a ``torch.amp.GradScaler``
that scales the loss so small gradients survive, on CUDA only. The weights and the optimizer state
stay float32, so checkpoints are the same format with or without AMP; the scaler's few numbers are
saved beside the training state, and a run resumes only with the AMP mode it was trained with.
Evaluation always runs in float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import torch

from lepton.errors import ConfigError, FormatError
from lepton.utils.device import resolve_device

Amp = Literal["off", "bf16", "fp16"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_amp(amp: str, device: torch.device) -> None:
    """Refuse an AMP mode ``device`` cannot run: fp16 needs CUDA; bf16 needs CUDA with bf16 support or the CPU.

    Raises:
        ConfigError: naming the mode, the device and the fix.
    """
    if amp not in ("off", "bf16", "fp16"):
        raise ConfigError(f"--amp must be off, bf16 or fp16. Got {str(amp)[:40]!r} instead.")
    if amp == "off":
        return
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"--amp fp16 needs a CUDA device, but training runs on {device}; use --amp bf16 (CPU autocast) "
            "or --amp off, or train with --device cuda on a machine with a GPU."
        )
    if amp == "bf16" and device.type not in ("cuda", "cpu"):
        raise ConfigError(f"--amp bf16 runs on CUDA or the CPU, not on {device}; use --amp off there.")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"--amp bf16: the GPU {device} does not support bfloat16; use --amp fp16 (with loss scaling) or --amp off."
        )


def autocast(amp: str, device: torch.device) -> AbstractContextManager[Any]:
    """The context a forward pass and its loss run in: ``torch.autocast`` for bf16/fp16, else nothing."""
    if amp == "off":
        return nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 on CUDA; ``None`` when none is needed (fp32 and bf16 keep fp32's exponent range)."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def amp_state(amp: str, scaler: torch.amp.GradScaler | None) -> dict[str, Any]:
    """What a checkpoint keeps of AMP: the mode and the scaler's numbers (JSON scalars)."""
    return {"mode": amp, "scaler": scaler.state_dict() if scaler is not None else None}


def restore_amp(saved: Any, amp: str, scaler: torch.amp.GradScaler | None, where: str) -> None:
    """Check a checkpoint's AMP section against this run's mode and load the scaler's state.

    ``saved`` is ``None`` for checkpoints written before AMP existed (trained in float32).

    Raises:
        ConfigError: the checkpoint was trained with another AMP mode.
        FormatError: the section is not what :func:`amp_state` writes.
    """
    mode = "off" if saved is None else saved.get("mode") if isinstance(saved, dict) else None
    if mode not in ("off", "bf16", "fp16"):
        raise FormatError(f"{where}: the key 'train.amp' must hold mode off, bf16 or fp16; the checkpoint is damaged.")
    if mode != amp:
        raise ConfigError(
            f"{where} was trained with --amp {mode} and this run uses --amp {amp}; resume with --amp {mode}, "
            "or train into a new folder without --resume."
        )
    state = saved.get("scaler") if isinstance(saved, dict) else None
    if scaler is not None and state:
        if not isinstance(state, dict) or not all(isinstance(v, (int, float)) for v in state.values()):
            raise FormatError(f"{where}: train.amp.scaler must map names to numbers; the checkpoint is damaged.")
        try:
            scaler.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise FormatError(
                f"{where}: train.amp.scaler does not fit torch's GradScaler ({type(e).__name__}: {e}); "
                "the checkpoint is damaged."
            ) from None


def training_device(device: str, amp: str) -> torch.device:
    """Resolve ``train.device`` and check ``train.amp`` against it: the check commands run before any work.

    Args:
        device: a ``train.device`` spelling (auto, cpu, cuda, cuda:N, mps).
        amp: a ``train.amp`` mode.

    Returns:
        The resolved device.

    Raises:
        ConfigError: the device is not on this machine, or the AMP mode does not run there.
    """
    resolved = resolve_device(device)
    check_amp(amp, resolved)
    return resolved
