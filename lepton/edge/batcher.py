"""The server's dynamic batcher: concurrent requests to one model become one ONNX Runtime call.

Requests wait in a deque; the batching loop wakes when the first arrives, waits at most ``max_delay_s`` for
more (less once ``max_rows`` are queued), then runs the model once on the concatenated rows and hands each
request its slice. A batch of at most ``inline_rows`` rows runs on the event loop itself (for a small model a
thread hop costs more than the inference); a larger one on the model's worker thread, so the loop keeps
parsing requests meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from lepton.edge.observe import ServerMetrics
from lepton.edge.oip import ProtocolError


@dataclass
class Stats:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    compute_s: float = 0.0
    errors_4xx: int = 0


class Batcher:
    """Collects concurrent requests to ``model`` (a :class:`lepton.edge.server.ServedModel`) into one model
    call; one hand-off per batch, none per request (module docstring)."""

    def __init__(
        self,
        model: Any,
        max_batch_size: int,
        max_delay_s: float,
        stats: Stats,
        metrics: ServerMetrics,
        inline_rows: int = 0,
    ) -> None:
        self.model, self.max_rows, self.max_delay_s, self.stats = model, max_batch_size, max_delay_s, stats
        self.inline_rows = inline_rows
        self.batch_rows = metrics.batch_rows.labels(model.name, model.version)
        self.pending: deque[tuple[dict[str, np.ndarray], asyncio.Future]] = deque()
        self.pending_rows = 0
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lepton-onnx")
        self.task: asyncio.Task | None = None
        self._wake: asyncio.Future | None = None  # set while the loop waits for the first request or a full batch

    def qsize(self) -> int:
        """Requests waiting for the model."""
        return len(self.pending)

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop after running what is queued (waiting at most ``drain_s``)."""
        deadline = time.monotonic() + drain_s
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    async def infer(self, feeds: dict[str, np.ndarray], timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """The model's outputs for ``feeds``, batched with other requests; a 504 after ``timeout_s``."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((feeds, future))
        self.pending_rows += self._rows((feeds, future))
        if self._wake is not None and not self._wake.done() and (len(self.pending) == 1 or self._full()):
            self._wake.set_result(None)
        if timeout_s is None:
            return await future
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise ProtocolError(
                504, f"the model did not answer within {timeout_s:.3g} s; retry, or send fewer samples."
            ) from None

    @staticmethod
    def _rows(item: tuple[dict[str, np.ndarray], asyncio.Future]) -> int:
        return len(next(iter(item[0].values())))

    def _full(self) -> bool:
        return not self.model.batchable or self.pending_rows >= self.max_rows

    async def _sleep(self, seconds: float | None) -> None:
        """Until :meth:`infer` wakes the loop (first request, or a full batch), or ``seconds`` pass."""
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        timer = None if seconds is None else loop.call_later(seconds, _resolve, self._wake)
        try:
            await self._wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    def _take(self) -> list[tuple[dict[str, np.ndarray], asyncio.Future]]:
        """The next batch: the first queued request, then more while they fit in ``max_rows``."""
        first = self.pending.popleft()
        batch, rows = [first], self._rows(first)
        while self.pending and self.model.batchable and rows + self._rows(self.pending[0]) <= self.max_rows:
            item = self.pending.popleft()
            batch.append(item)
            rows += self._rows(item)
        self.pending_rows -= rows
        return [(feeds, fut) for feeds, fut in batch if not fut.done()]  # clients that hung up

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                await self._sleep(None)
            if self.max_delay_s > 0 and not self._full():
                await self._sleep(self.max_delay_s)
            batch = self._take()
            if batch:
                await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        start = time.perf_counter()
        rows = sum(self._rows(item) for item in batch)
        try:
            feeds = {
                k: np.concatenate([f[k] for f, _ in batch]) if len(batch) > 1 else batch[0][0][k] for k in batch[0][0]
            }
            if rows <= self.inline_rows:
                outputs = self.model.run(feeds)
            else:
                outputs = await loop.run_in_executor(self.executor, self.model.run, feeds)
        except Exception as e:  # a failure on inputs that passed validation: a server error (500)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"ONNX Runtime failed: {e}"))
            return
        self.stats.batches += 1
        self.stats.rows += rows
        self.batch_rows.observe(rows)
        self.stats.compute_s += time.perf_counter() - start
        offset = 0
        for f, fut in batch:
            n = len(next(iter(f.values())))
            if not fut.done():
                fut.set_result({k: v[offset : offset + n] for k, v in outputs.items()})
            offset += n


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
