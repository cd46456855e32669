"""How fast a training source feeds the real training step: images/s of SGD steps, reading included.

Used by the data stage of ``lepton run`` and ``benchmarks/data_loader.py`` to compare a packed store with
in-memory tensors on the same model and seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch

from lepton.models.registry import ModelSpec
from lepton.train.config import TrainConfig
from lepton.train.seed import seed_everything


def training_throughput(
    spec: ModelSpec,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    cfg: TrainConfig,
    *,
    trust_code: bool = False,
) -> float:
    """Images/s of ``steps`` SGD training steps of ``spec``'s model fed by ``batches`` (iterated again, epoch
    after epoch, if one pass has fewer steps); everything the batches cost (reading, decoding, collating)
    is inside the timed loop."""
    seed_everything(cfg.seed, cfg.threads)
    model = spec.build(trust_code=trust_code)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # untimed warm-up on a synthetic batch: first-call allocations, kernel selection
        step(torch.rand(cfg.batch_size, *spec.input_shape), torch.zeros(cfg.batch_size, dtype=torch.long))
    seen, done, epoch, t0 = 0, 0, 0, time.perf_counter()
    while done < steps:  # epoch after epoch (reshuffled where the batches have ``set_epoch``) until ``steps``
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        n = done
        for x, y in batches:
            step(x, y)
            seen += len(y)
            done += 1
            if done >= steps:
                break
        if done == n:
            raise ValueError("training_throughput: the batches are empty")
        epoch += 1
    return seen / max(time.perf_counter() - t0, 1e-9)
