"""The one training loop every Lepton feature reuses (baseline training, compression fine-tuning,
distillation, distributed training).

It reads top to bottom: per epoch, set the shuffle epoch; per step, set the learning rate from the
global step, forward, loss, backward, step, then the caller's ``after_step`` (e.g. re-apply pruning
masks); at epoch end, evaluate, record, checkpoint. The learning rate is a pure function of the
global step and the shuffle of a pure function of (seed, epoch), so resuming from a checkpoint
reproduces an uninterrupted run exactly.

Under torch.distributed (a process group is initialised, e.g. by ``torchrun``) the same loop runs on
every rank: the model is wrapped in DDP, each rank takes its slice of every global batch, epoch
metrics are summed over ranks, and only rank 0 prints and writes checkpoints.

The model trains on ``cfg.device`` (each DDP worker on ``cuda:LOCAL_RANK`` when that is CUDA), batches
move there one at a time (without blocking when they come from pinned memory), and ``cfg.amp`` runs
the forward pass under autocast (:mod:`lepton.train.amp`). When ``fit`` returns, the model is back on
the device it came in on, so callers (and every file they save) see it where they left it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel
from rich.console import Console
from torch import nn

from lepton.distributed.ddp import distribute
from lepton.distributed.hooks import CommReport
from lepton.distributed.runtime import World, current_world, local_rank, rank_device
from lepton.errors import FormatError
from lepton.models.registry import ModelSpec
from lepton.train.amp import amp_state, autocast, check_amp, grad_scaler, restore_amp
from lepton.train.checkpoint import load_checkpoint, save_checkpoint
from lepton.train.config import TrainConfig
from lepton.train.evaluate import evaluate
from lepton.utils.device import module_device, resolve_device
from lepton.utils.progress import progress_bar

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``objective(logits, targets, inputs) -> scalar loss``; the default is cross-entropy."""


class Batches(Protocol):
    def __iter__(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...


class EpochRecord(BaseModel):
    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    test_loss: float | None = None
    test_accuracy: float | None = None
    seconds: float
    images_per_second: float


def _resume_point(meta: dict[str, Any], stem: Path) -> tuple[list[EpochRecord], int]:
    """The epoch records and the finished epoch count a resumable checkpoint's sidecar keeps under ``train``."""
    train = meta.get("train")
    try:
        history = [EpochRecord.model_validate(r) for r in train["history"]]  # type: ignore[index]
        epoch = train["epoch"]  # type: ignore[index]
        if type(epoch) is not int or epoch < 0:
            raise ValueError(f"epoch {epoch!r}")
    except (TypeError, KeyError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise FormatError(
            f"{stem}.json: the key 'train' must hold 'epoch' (an int >= 0) and 'history' (a list of "
            f"epoch records) to resume ({type(e).__name__}); delete the checkpoint or train without "
            "resuming."
        ) from None
    return history, epoch


class TrainReport(BaseModel):
    epochs: int
    steps: int
    train_seconds: float
    images_per_second: float
    final_train_loss: float
    final_train_accuracy: float
    final_test_accuracy: float | None
    resumed_from_epoch: int | None = None
    world_size: int = 1
    communication: CommReport | None = None
    history: list[EpochRecord]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, _inputs: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, targets)


def build_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at global ``step``: linear warm-up from lr/10, then the configured schedule."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * (0.1 + 0.9 * step / warmup)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * cfg.step_gamma ** (step // (cfg.step_epochs * steps_per_epoch))
    total = cfg.epochs * steps_per_epoch - warmup
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step - warmup, total) / max(total, 1)))


def forward_backward(
    model: nn.Module,
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    micro_batches: int,
    *,
    amp: str = "off",
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and mean loss of the batch, its gradient accumulated over ``micro_batches`` slices (to
    save memory); DDP all-reduces only with the last slice (``no_sync`` before). The forward pass and
    loss run under ``amp``'s autocast; with a ``scaler`` (fp16) the backward pass starts from the
    scaled loss, and the returned loss is the unscaled one."""

    def backward(loss: torch.Tensor) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    if micro_batches == 1:
        with autocast(amp, x.device):
            logits = model(x)
            loss = objective(logits, y, x)
        backward(loss)
        return logits, loss
    parts, total = [], torch.zeros((), device=x.device)
    slices = list(zip(x.tensor_split(micro_batches), y.tensor_split(micro_batches)))
    for j, (xs, ys) in enumerate(slices):
        sync = j == len(slices) - 1 or not hasattr(model, "no_sync")
        with nullcontext() if sync else model.no_sync():
            with autocast(amp, x.device):
                logits = model(xs)
                loss = objective(logits, ys, xs) * (len(ys) / len(y))  # weight so the sum is the batch mean
            backward(loss)
        parts.append(logits.detach())
        total += loss.detach()
    return torch.cat(parts), total


def _set_epoch(batches: Batches, epoch: int) -> None:
    target = batches if hasattr(batches, "set_epoch") else getattr(batches, "sampler", None)
    if target is not None and hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def fit(
    model: nn.Module,
    train: Batches,
    cfg: TrainConfig,
    *,
    spec: ModelSpec | None = None,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    objective: Objective = cross_entropy,
    after_step: Callable[[nn.Module], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> TrainReport:
    """Train ``model`` in place on ``train`` batches; returns the per-epoch history.

    ``checkpoint_dir`` (needs ``spec``): write ``last.safetensors`` + ``last.json`` after each epoch;
    with ``resume``, continue from it if present. The model trains on ``cfg.device`` with ``cfg.amp``
    and is moved back to the device it came in on when ``fit`` returns (or fails).
    """
    world = current_world()
    device = rank_device(resolve_device(cfg.device), local_rank(), world.size)
    check_amp(cfg.amp, device)
    home = module_device(model)
    model.to(device)
    try:
        return _fit(
            model,
            train,
            cfg,
            device,
            world,
            spec,
            eval_data,
            objective,
            after_step,
            checkpoint_dir,
            resume,
            progress,
            console,
        )
    finally:
        model.to(home)


def _fit(
    model: nn.Module,
    train: Batches,
    cfg: TrainConfig,
    device: torch.device,
    world: World,
    spec: ModelSpec | None,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None,
    objective: Objective,
    after_step: Callable[[nn.Module], None] | None,
    checkpoint_dir: str | Path | None,
    resume: bool,
    progress: bool,
    console: Console | None,
) -> TrainReport:
    """:func:`fit` with the model already on ``device``."""
    progress = progress and world.lead
    console = console if console is not None and world.lead else Console(stderr=True, quiet=not progress)
    comm = None
    if world.size > 1:  # DDP: rank 0's weights everywhere, this rank's share of each global batch
        model, train, comm = distribute(model, train, cfg.distributed.comm_hook, world, cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg)
    scaler = grad_scaler(cfg.amp, device)
    steps_per_epoch = len(train)
    history: list[EpochRecord] = []
    start_epoch, resumed = 0, None
    ckpt_path = Path(checkpoint_dir) / "last" if checkpoint_dir is not None else None
    if ckpt_path is not None and spec is None:
        raise ValueError("fit(checkpoint_dir=...) needs the model's spec to write a rebuildable checkpoint")
    if resume and ckpt_path is not None and ckpt_path.with_suffix(".json").exists():
        ckpt = load_checkpoint(ckpt_path)
        try:
            getattr(model, "module", model).load_state_dict(ckpt.model_state)
        except RuntimeError as e:
            raise FormatError(
                f"{ckpt_path}.safetensors holds the weights of another model "
                f"({' '.join(str(e).split())[:200]}); resume into the model it was saved from, or "
                "train into a new folder."
            ) from None
        ckpt.restore_optimizer(optimizer)
        history, start_epoch = _resume_point(ckpt.meta, ckpt_path)
        restore_amp(ckpt.meta["train"].get("amp"), cfg.amp, scaler, f"{ckpt_path}.safetensors")
        resumed = start_epoch
        console.print(f"resumed from {ckpt_path}.safetensors after epoch {start_epoch}")

    step = start_epoch * steps_per_epoch
    with progress_bar(console, enabled=progress) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            _set_epoch(train, epoch)
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, status="")
            model.train()
            loss_sum, correct, seen = (
                torch.zeros((), device=device),
                torch.zeros((), dtype=torch.long, device=device),
                0,
            )
            t0 = time.perf_counter()
            for i, (x, y) in enumerate(train):
                x, y = x.to(device, non_blocking=x.is_pinned()), y.to(device, non_blocking=y.is_pinned())
                lr = lr_at(cfg, step, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                logits, loss = forward_backward(model, objective, x, y, cfg.accumulate, amp=cfg.amp, scaler=scaler)
                if scaler is not None:  # fp16: skips the step if the scaled gradients overflowed, then adapts the scale
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if after_step is not None:
                    after_step(model)
                step += 1
                with torch.no_grad():
                    loss_sum += loss.detach() * len(y)
                    correct += (logits.argmax(1) == y).sum()
                    seen += len(y)
                if i % 50 == 0:
                    bar.update(task, completed=i + 1, status=f"loss {loss.item():.4f}")
            loss_sum, correct, seen_t = world.sum(loss_sum, correct, torch.tensor(seen))  # over all ranks
            seen = int(seen_t)
            seconds = time.perf_counter() - t0
            bar.remove_task(task)
            record = EpochRecord(
                epoch=epoch + 1,
                lr=lr,
                train_loss=float(loss_sum) / max(seen, 1),
                train_accuracy=float(correct) / max(seen, 1),
                seconds=seconds,
                images_per_second=seen / max(seconds, 1e-9),
            )
            if eval_data is not None:
                ev = evaluate(getattr(model, "module", model), *eval_data, batch_size=cfg.eval_batch_size)
                record.test_loss, record.test_accuracy = ev.loss, ev.accuracy
            history.append(record)
            test = f"  test acc {record.test_accuracy:.4f}" if record.test_accuracy is not None else ""
            console.print(
                f"epoch {record.epoch}/{cfg.epochs}  loss {record.train_loss:.4f}  train acc "
                f"{record.train_accuracy:.4f}{test}  {record.images_per_second:,.0f} img/s"
            )
            if ckpt_path is not None and world.lead:
                save_checkpoint(
                    ckpt_path,
                    model,
                    spec,
                    optimizer=optimizer,  # type: ignore[arg-type]
                    extra={
                        "train": {
                            "epoch": epoch + 1,
                            "step": step,
                            "config": cfg.model_dump(),
                            "world_size": world.size,
                            "amp": amp_state(cfg.amp, scaler),
                            "history": [r.model_dump() for r in history],
                        }
                    },
                )
            world.barrier()  # every rank resumes from the same checkpoint after a restart
    train_seconds = sum(r.seconds for r in history)
    images = sum(r.images_per_second * r.seconds for r in history)
    last = history[-1]
    return TrainReport(
        epochs=cfg.epochs,
        steps=step,
        train_seconds=train_seconds,
        images_per_second=images / max(train_seconds, 1e-9),
        final_train_loss=last.train_loss,
        final_train_accuracy=last.train_accuracy,
        final_test_accuracy=last.test_accuracy,
        resumed_from_epoch=resumed,
        world_size=world.size,
        communication=comm.report() if comm is not None else None,
        history=history,
    )
