"""Seeded augmentation of a training batch on its device: random crop with padding and horizontal flip.

The random numbers of a step come from a local generator seeded with (seed, epoch, step within the epoch),
never from torch's global stream, and are drawn for the whole *global* batch, of which each DDP rank applies its
slice. So the augmentation a sample gets depends only on where it sits in the run: not on a resume (mid-epoch
included), not on whether the batches come from arrays or a packed store, and not on how many workers share
the global batch (2 workers × 32 augment as 1 process × 64 does). The draws are made on the CPU, so a CUDA run
augments as a CPU run does.
"""

from __future__ import annotations

import hashlib

import torch
from torch.nn import functional as F

from lepton.distributed.runtime import World
from lepton.errors import ConfigError
from lepton.train.config import AugmentConfig


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch, step)`` alone (a hash, so nearby triples share no stream).

    Args:
        seed: the run's ``train.seed``.
        epoch: the epoch, from 0.
        step: the step within the epoch, from 0.

    Returns:
        A fresh ``torch.Generator`` on the CPU.
    """
    digest = hashlib.blake2b(f"lepton-augment:{seed}:{epoch}:{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def augment_batch(
    x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator, *, total: int | None = None, offset: int = 0
) -> torch.Tensor:
    """Randomly crop (after padding) and mirror the images of ``x`` on ``x``'s device, all samples at once.

    The draws cover a batch of ``total`` samples: first the crop offsets (rows, then columns, each in
    ``[0, 2 × crop_padding]``), then the flips; ``x`` takes those of positions ``offset … offset + len(x)``.

    Args:
        x: images ``[N, C, H, W]``.
        cfg: what to apply; with ``crop_padding=0`` and ``hflip=false`` ``x`` is returned as it is.
        generator: a CPU generator, e.g. :func:`step_generator`.
        total: samples of the global batch the draws are made for (default ``len(x)``).
        offset: position of ``x``'s first sample in that global batch.

    Returns:
        The augmented batch, a new tensor of ``x``'s shape, dtype and device.
    """
    if not cfg.enabled:
        return x
    if x.dim() != 4:
        raise ConfigError(
            f"train.augment crops and flips image batches [N, C, H, W]; this data's batches have shape "
            f"{list(x.shape)}. Turn it off (train.augment.crop_padding=0, train.augment.hflip=false)."
        )
    n, _, h, w = x.shape
    total = n if total is None else total
    if not 0 <= offset <= total - n:
        raise ValueError(f"a batch of {n} at offset {offset} does not fit in a global batch of {total}")
    pad = cfg.crop_padding
    if pad:
        if cfg.padding_mode == "reflect" and pad >= min(h, w):
            raise ConfigError(
                f"train.augment.crop_padding={pad} with padding_mode reflect needs images larger than {pad} "
                f"pixels; these are {h}x{w}. Use a padding below {min(h, w)} or padding_mode zeros."
            )
        shifts = torch.randint(0, 2 * pad + 1, (2, total), generator=generator)[:, offset : offset + n]
        x = _crop(x, pad, shifts.to(x.device), cfg.padding_mode)
    if cfg.hflip:
        flip = torch.randint(0, 2, (total,), generator=generator)[offset : offset + n].bool().to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def _crop(x: torch.Tensor, pad: int, shifts: torch.Tensor, mode: str) -> torch.Tensor:
    """Pad ``x`` by ``pad`` on every side and cut each sample's ``H × W`` window at its (row, column) shift."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="constant" if mode == "zeros" else "reflect")
    rows = shifts[0, :, None] + torch.arange(h, device=x.device)  # [N, H]
    cols = shifts[1, :, None] + torch.arange(w, device=x.device)  # [N, W]
    samples = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[samples, channels, rows[:, None, :, None], cols[:, None, None, :]]


def augment_step(
    x: torch.Tensor, cfg: AugmentConfig, *, seed: int, epoch: int, step: int, world: World, last: bool
) -> torch.Tensor:
    """Augment this rank's part of the global batch of ``step`` of ``epoch``.

    Every global batch but an epoch's last holds ``len(x) × world.size`` samples; the last one may be short and
    uneven, so its size is summed over the ranks (every rank must call with ``last``). This rank's slice starts
    where ``torch.tensor_split`` (and the batch order) puts it.

    Args:
        x: this rank's images ``[N, C, H, W]``, already on the training device.
        cfg: ``train.augment``.
        seed, epoch, step: the run's seed, the epoch and the step within it.
        world: this process's rank and the world size.
        last: whether ``step`` is the epoch's last.

    Returns:
        The augmented images.
    """
    total, offset = len(x), 0
    if world.size > 1:
        total = int(world.sum(torch.tensor(len(x)))[0]) if last else len(x) * world.size
        share, extra = divmod(total, world.size)
        offset = world.rank * share + min(world.rank, extra)
    return augment_batch(x, cfg, step_generator(seed, epoch, step), total=total, offset=offset)


def parse_augment(text: str) -> dict[str, object]:
    """``train.augment`` keys from ``lepton train --augment``'s spelling: comma-separated ``cropN`` (pad N pixels,
    random crop), ``hflip``, ``reflect`` (reflection padding) or ``off``.

    Args:
        text: e.g. ``"crop4,hflip"``.

    Returns:
        The keys to set, e.g. ``{"crop_padding": 4, "hflip": True}``.
    """
    keys: dict[str, object] = {}
    for item in (t.strip().lower() for t in text.split(",")):
        if item in ("off", "none"):
            keys.update(crop_padding=0, hflip=False)
        elif item == "hflip":
            keys["hflip"] = True
        elif item == "reflect":
            keys["padding_mode"] = "reflect"
        elif item.startswith("crop") and item[4:].isdigit():
            keys["crop_padding"] = int(item[4:])
        else:
            raise ConfigError(
                f"--augment {text!r}: {item!r} is not cropN, hflip, reflect or off; "
                "e.g. --augment crop4,hflip (pad 4 pixels and crop at random, mirror half the images)."
            )
    return keys
