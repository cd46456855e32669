"""Wall-clock timing: torch's thread count set for a block and restored, a stopwatch, and batch-of-calls
latency with one percentile definition (numpy's default, linear interpolation between the closest ranks,
the same as ``statistics.quantiles(method="inclusive")``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Stopwatch:
    """Seconds since it was started; frozen once its ``with`` block ends."""

    def __init__(self) -> None:
        self._start, self._end = time.perf_counter(), None

    @property
    def seconds(self) -> float:
        return (self._end if self._end is not None else time.perf_counter()) - self._start


@contextlib.contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    """``with stopwatch() as sw: ...`` then ``sw.seconds`` is the block's wall-clock time."""
    sw = Stopwatch()
    try:
        yield sw
    finally:
        sw._end = time.perf_counter()


def time_calls(fn: Callable[[], object], *, warmup: int, iterations: int) -> np.ndarray:
    """Wall-clock seconds of each of ``iterations`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times


@dataclass(frozen=True)
class Latency:
    """Per-call wall-clock time in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float


def summarize(seconds: np.ndarray) -> Latency:
    """Percentiles and mean of per-call times given in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return Latency(float(p50), float(p90), float(p99), float(ms.mean()))


def latency(fn: Callable[[], object], iterations: int, warmup: int = 0) -> Latency:
    """Latency of ``fn`` over ``iterations`` timed calls after ``warmup`` untimed ones."""
    return summarize(time_calls(fn, warmup=warmup, iterations=iterations))
