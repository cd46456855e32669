"""The batcher against ONNX Runtime called directly: concurrent requests of mixed sizes each get their own rows,
whether batches run on the event loop (inline_rows) or on the model's thread, and no model call exceeds
max_batch_size rows."""

import asyncio

import numpy as np
import pytest

from lepton.edge.batcher import Batcher, Stats
from lepton.edge.export import onnx_session
from lepton.edge.observe import ServerMetrics
from lepton.edge.server import load_served_model


@pytest.mark.timeout(60)
@pytest.mark.parametrize("inline_rows", [0, 64])
@pytest.mark.parametrize("max_delay_ms", [0.0, 2.0])
def test_concurrent_requests_get_their_own_rows_within_max_batch(onnx_path, mnist, inline_rows, max_delay_ms):
    images = mnist.tensors("test")[0][:120].numpy()
    reference = onnx_session(onnx_path).run(None, {"input": images})[0]
    model = load_served_model(onnx_path)
    calls: list[int] = []
    run = model.run
    model.run = lambda feeds: calls.append(len(feeds["input"])) or run(feeds)  # counts rows, runs the real model
    sizes = [1, 3, 7, 1, 16, 2, 30, 5, 1, 24, 9, 21]  # 120 rows in all
    bounds = np.cumsum([0, *sizes])

    async def main() -> list[np.ndarray]:
        stats = Stats()
        batcher = Batcher(model, 32, max_delay_ms / 1000, stats, ServerMetrics(), inline_rows)
        batcher.start()
        try:
            outs = await asyncio.gather(
                *(batcher.infer({"input": images[lo:hi]}) for lo, hi in zip(bounds[:-1], bounds[1:]))
            )
        finally:
            await batcher.stop()
        assert stats.rows == 120 and stats.batches == len(calls)
        return [o["logits"] for o in outs]

    outs = asyncio.run(main())
    for out, lo, hi in zip(outs, bounds[:-1], bounds[1:]):
        np.testing.assert_allclose(out, reference[lo:hi], rtol=0, atol=1e-5)
    assert sum(calls) == 120 and max(calls) <= 32 and len(calls) < len(sizes)  # batched, never past the limit
