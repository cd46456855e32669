"""Latency percentiles at batch 1 and throughput at a large batch, for ONNX Runtime and PyTorch eager,
on a fixed number of threads (1 thread = one small edge core), after a warm-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from lepton.edge.export import image_input, onnx_session, run_session
from lepton.errors import DataError
from lepton.utils.timing import latency, torch_threads


class BenchConfig(BaseModel):
    """How to time a model: ``iterations`` timed batch-1 calls after ``warmup`` untimed ones, then
    ``throughput_iterations`` calls at ``throughput_batch``."""

    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    threads: int = Field(default=1, ge=1, le=256)
    # Upper bounds keep a typo from allocating gigabytes or timing for days.
    warmup: int = Field(default=100, ge=0, le=1_000_000)
    iterations: int = Field(default=1000, ge=10, le=10_000_000)
    throughput_batch: int = Field(default=256, ge=1, le=65_536)
    throughput_iterations: int = Field(default=20, ge=1, le=1_000_000)


class LatencyReport(BaseModel):
    model_config = ConfigDict(extra="forbid")  # not frozen, unlike lepton.config.StrictModel: kept mutable as it was

    name: str
    threads: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput_batch: int
    images_per_second: float


def _report(name: str, fn1: Callable[[], object], fnb: Callable[[], object], cfg: BenchConfig) -> LatencyReport:
    one = latency(fn1, cfg.iterations, warmup=cfg.warmup)
    big = latency(fnb, cfg.throughput_iterations, warmup=min(cfg.warmup, 2))
    return LatencyReport(
        name=name,
        threads=cfg.threads,
        p50_ms=one.p50_ms,
        p90_ms=one.p90_ms,
        p99_ms=one.p99_ms,
        mean_ms=one.mean_ms,
        throughput_batch=cfg.throughput_batch,
        images_per_second=cfg.throughput_batch / (big.p50_ms / 1e3),
    )


def _inputs(images: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(images, dtype=np.float32)
    reps = -(-batch // len(images))
    return images[:1].copy(), np.ascontiguousarray(np.concatenate([images] * reps)[:batch])


def bench_onnx(
    path: str | Path, images: np.ndarray, cfg: BenchConfig | None = None, *, name: str | None = None
) -> LatencyReport:
    """Time the ONNX file ``path`` in ONNX Runtime on real ``images`` (float32 [N, C, H, W])."""
    cfg = cfg or BenchConfig()
    session = onnx_session(path, threads=cfg.threads)
    input_name, shape = image_input(session, path)
    expected = shape[1:]
    if len(expected) != images.ndim - 1 or any(
        isinstance(e, int) and e != g for e, g in zip(expected, images.shape[1:])
    ):
        raise DataError(
            f"{path} expects inputs {expected} but the images are {list(images.shape[1:])}; "
            "pass --data with the dataset the model was trained on."
        )
    x1, xb = _inputs(images, cfg.throughput_batch)
    return _report(
        name or Path(path).name,
        lambda: session.run(None, {input_name: x1}),
        lambda: session.run(None, {input_name: xb}),
        cfg,
    )


def bench_torch(
    model: nn.Module, images: np.ndarray, cfg: BenchConfig | None = None, *, name: str = "pytorch eager fp32"
) -> LatencyReport:
    """Time ``model`` in PyTorch eager mode (fp32, inference mode) on the same inputs as :func:`bench_onnx`."""
    cfg = cfg or BenchConfig()
    model = model.eval()
    x1, xb = (torch.from_numpy(a) for a in _inputs(images, cfg.throughput_batch))
    with torch_threads(cfg.threads), torch.inference_mode():
        return _report(name, lambda: model(x1), lambda: model(xb), cfg)


def onnx_accuracy(path: str | Path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the ONNX file ``path`` on ``images`` with integer ``labels``."""
    logits = run_session(onnx_session(path, threads=torch.get_num_threads()), images)
    return float((logits.argmax(1) == np.asarray(labels)).mean())
