"""The one training loop every Lepton feature reuses (baseline training, compression fine-tuning,
distillation, distributed training).

It reads top to bottom: per epoch, set the shuffle epoch; per step, augment the batch if ``cfg.augment``
asks (:mod:`lepton.train.augment`, seeded by (seed, epoch, step)), set the learning rate from the global
step, forward, loss, backward, step, then the caller's ``after_step`` (e.g. re-apply pruning masks); at epoch end, evaluate, record, checkpoint. The learning rate is a pure function of the
global step and the shuffle of a pure function of (seed, epoch), so resuming from a checkpoint
reproduces an uninterrupted run exactly; with ``cfg.checkpoint_every_steps`` the checkpoint is also written
mid-epoch, recording the step within the epoch and the epoch's metrics so far, and a resume skips the
batches already trained on.

Under torch.distributed (a process group is initialised, e.g. by ``torchrun``) the same loop runs on
every rank: the model is wrapped in DDP, each rank takes its slice of every global batch, epoch
metrics are summed over ranks, and only rank 0 prints and writes checkpoints.

The model trains on ``cfg.device`` (each DDP worker on ``cuda:LOCAL_RANK`` when that is CUDA), batches
move there one at a time (without blocking when they come from pinned memory), and ``cfg.amp`` runs
the forward pass under autocast (:mod:`lepton.train.amp`). When ``fit`` returns, the model is back on
the device it came in on, so callers (and every file they save) see it where they left it.
"""

from __future__ import annotations

import itertools
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
from lepton.errors import ConfigError, FormatError
from lepton.models.normalize import same_normalization
from lepton.models.registry import ModelSpec
from lepton.train.amp import amp_state, autocast, check_amp, grad_scaler, restore_amp
from lepton.train.augment import augment_step
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


class ResumePoint(BaseModel):
    """Where a resumable checkpoint's sidecar (key ``train``) says training stopped."""

    history: list[EpochRecord]
    epoch: int
    """finished epochs"""
    batch: int = 0
    """steps already taken in the next epoch (a mid-epoch checkpoint)"""
    partial: dict[str, float] | None = None
    """that epoch's sums so far over all ranks: loss_sum, correct, seen, seconds"""


PARTIAL_KEYS = {"loss_sum", "correct", "seen", "seconds"}


def _resume_point(meta: dict[str, Any], stem: Path, steps_per_epoch: int) -> ResumePoint:
    """The epoch records, the finished epoch count and the position within the next epoch that a resumable
    checkpoint's sidecar keeps under ``train``."""
    train = meta.get("train")
    try:
        history = [EpochRecord.model_validate(r) for r in train["history"]]  # type: ignore[index]
        epoch, batch = train["epoch"], train.get("batch", 0)  # type: ignore[index,union-attr]
        partial = train.get("partial")  # type: ignore[union-attr]
        if type(epoch) is not int or epoch < 0:
            raise ValueError(f"epoch {epoch!r}")
        if type(batch) is not int or not 0 <= batch < steps_per_epoch:
            raise ValueError(f"batch {batch!r} (this run has {steps_per_epoch} steps per epoch)")
        if batch and train.get("steps_per_epoch") != steps_per_epoch:  # type: ignore[union-attr]
            raise ValueError(
                f"it stopped at step {batch} of an epoch of {train.get('steps_per_epoch')!r} steps, this run has "  # type: ignore[union-attr]
                f"{steps_per_epoch} (another batch size, world size or dataset); resume it as it was started"
            )
        if batch and (
            not isinstance(partial, dict)
            or set(partial) != PARTIAL_KEYS
            or not all(type(v) in (int, float) for v in partial.values())
        ):
            raise ValueError(f"partial {str(partial)[:60]}")
    except (TypeError, KeyError, ValueError, AttributeError) as e:  # pydantic's ValidationError is a ValueError
        raise FormatError(
            f"{stem}.json: the key 'train' must hold 'epoch' (an int >= 0), 'history' (a list of epoch records) "
            f"and, mid-epoch, 'batch' (a step of the epoch) and 'partial' (the epoch's sums) to resume "
            f"({type(e).__name__}: {e}); delete the checkpoint or train without resuming."
        ) from None
    return ResumePoint(history=history, epoch=epoch, batch=batch, partial=partial if batch else None)


def _start_at(batches: Batches, step: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of the current epoch from step ``step`` on: sources with ``set_start`` skip without reading;
    any other iterable (e.g. a seeded DataLoader) is read and the first ``step`` batches dropped."""
    if step == 0:
        return batches
    if callable(getattr(batches, "set_start", None)):
        batches.set_start(step)  # type: ignore[attr-defined]
        return batches
    return itertools.islice(batches, step, None)


class TrainReport(BaseModel):
    epochs: int
    steps: int
    train_seconds: float
    images_per_second: float
    final_train_loss: float
    final_train_accuracy: float
    final_test_accuracy: float | None
    resumed_from_epoch: int | None = None
    resumed_from_step: int | None = None
    """the global step a resume continued from (mid-epoch or at an epoch's end)"""
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

    ``checkpoint_dir`` (needs ``spec``): write ``last.safetensors`` + ``last.json`` after each epoch (and every
    ``cfg.checkpoint_every_steps`` steps); with ``resume``, continue from it if present, mid-epoch included. The model trains on ``cfg.device`` with ``cfg.amp``
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
    start_epoch, start_batch, partial, resumed, resumed_step = 0, 0, None, None, None
    ckpt_path = Path(checkpoint_dir) / "last" if checkpoint_dir is not None else None
    if ckpt_path is not None and spec is None:
        raise ValueError("fit(checkpoint_dir=...) needs the model's spec to write a rebuildable checkpoint")
    if resume and ckpt_path is not None and ckpt_path.with_suffix(".json").exists():
        ckpt = load_checkpoint(ckpt_path)
        if spec is not None and not same_normalization(ckpt.spec.normalize, spec.normalize):
            # the weights would fit either way (the statistics are not in the state dict): refuse, not mix
            raise ConfigError(
                f"{ckpt_path}.safetensors was trained with input normalization {ckpt.spec.normalize} "
                f"(mean, std), this run uses {spec.normalize}; resume with the same data.normalize "
                "(--normalize), or train into a new folder."
            )
        try:
            getattr(model, "module", model).load_state_dict(ckpt.model_state)
        except RuntimeError as e:
            raise FormatError(
                f"{ckpt_path}.safetensors holds the weights of another model "
                f"({' '.join(str(e).split())[:200]}); resume into the model it was saved from, or "
                "train into a new folder."
            ) from None
        ckpt.restore_optimizer(optimizer)
        point = _resume_point(ckpt.meta, ckpt_path, steps_per_epoch)
        history, start_epoch, start_batch, partial = point.history, point.epoch, point.batch, point.partial
        restore_amp(ckpt.meta["train"].get("amp"), cfg.amp, scaler, f"{ckpt_path}.safetensors")
        resumed, resumed_step = start_epoch, start_epoch * steps_per_epoch + start_batch
        where = f"at step {start_batch}/{steps_per_epoch} of epoch {start_epoch + 1}" if start_batch else ""
        console.print(f"resumed from {ckpt_path}.safetensors {where or f'after epoch {start_epoch}'}")

    def save(epoch_done: int, step: int, batch: int = 0, sums: dict[str, float] | None = None) -> None:
        """Write the resumable checkpoint (rank 0); ``batch`` > 0: mid-epoch, with the epoch's ``sums`` so far."""
        if ckpt_path is None or not world.lead:
            return
        position = {"batch": batch, "steps_per_epoch": steps_per_epoch, "partial": sums} if batch else {}
        save_checkpoint(
            ckpt_path,
            model,
            spec,  # type: ignore[arg-type]
            optimizer=optimizer,
            extra={
                "train": {
                    "epoch": epoch_done,
                    **position,
                    "step": step,
                    "config": cfg.model_dump(),
                    "world_size": world.size,
                    "amp": amp_state(cfg.amp, scaler),
                    "history": [r.model_dump() for r in history],
                }
            },
        )

    step = start_epoch * steps_per_epoch + start_batch
    every = cfg.checkpoint_every_steps
    with progress_bar(console, enabled=progress) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            _set_epoch(train, epoch)
            skip = start_batch if epoch == start_epoch else 0
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, status="")
            model.train()
            loss_sum, correct, seen = (
                torch.zeros((), device=device),
                torch.zeros((), dtype=torch.long, device=device),
                0,
            )
            before = 0.0  # seconds of this epoch spent before a mid-epoch resume
            if skip and partial is not None:
                before = partial["seconds"]
                # the sums so far are over all ranks: rank 0 carries them, the epoch-end sum adds the rest
                if world.lead:
                    loss_sum += partial["loss_sum"]
                    correct += int(partial["correct"])
                    seen = int(partial["seen"])
            t0 = time.perf_counter()
            for i, (x, y) in enumerate(_start_at(train, skip), start=skip):
                x, y = x.to(device, non_blocking=x.is_pinned()), y.to(device, non_blocking=y.is_pinned())
                if cfg.augment.enabled:  # drawn from (seed, epoch, step): the same after a resume, from a store
                    last = i + 1 == steps_per_epoch
                    x = augment_step(x, cfg.augment, seed=cfg.seed, epoch=epoch, step=i, world=world, last=last)
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
                if every and step % every == 0 and i + 1 < steps_per_epoch and ckpt_path is not None:
                    total, hits, count = world.sum(loss_sum, correct, torch.tensor(seen))  # every rank takes part
                    sums = {"loss_sum": float(total), "correct": int(hits), "seen": int(count)}
                    save(epoch, step, i + 1, {**sums, "seconds": before + time.perf_counter() - t0})
                    world.barrier()
            loss_sum, correct, seen_t = world.sum(loss_sum, correct, torch.tensor(seen))  # over all ranks
            seen = int(seen_t)
            seconds = before + time.perf_counter() - t0
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
            save(epoch + 1, step)
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
        resumed_from_step=resumed_step,
        world_size=world.size,
        communication=comm.report() if comm is not None else None,
        history=history,
    )
