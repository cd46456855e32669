import statistics
import time

import numpy as np
import torch

from lepton.utils.timing import latency, stopwatch, summarize, time_calls, torch_threads


def test_percentiles_match_statistics_inclusive():
    seconds = np.random.default_rng(0).exponential(1e-3, size=37)
    ms = list(seconds * 1e3)
    t = summarize(seconds)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    assert np.allclose([t.p50_ms, t.p90_ms, t.p99_ms], [statistics.median(ms), q[89], q[98]], rtol=1e-12)
    assert np.isclose(t.mean_ms, statistics.fmean(ms), rtol=1e-12)
    assert summarize(np.array([0.002])) == summarize(np.array([0.002] * 3))


def test_latency_counts_calls():
    calls = []
    t = latency(lambda: calls.append(1), 5, warmup=3)
    assert len(calls) == 8 and 0 <= t.p50_ms <= t.p90_ms <= t.p99_ms
    assert time_calls(lambda: None, warmup=0, iterations=4).shape == (4,)


def test_torch_threads_restores_even_on_error():
    before = torch.get_num_threads()
    try:
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise KeyError
    except KeyError:
        pass
    assert torch.get_num_threads() == before


def test_stopwatch_freezes_when_the_block_ends():
    with stopwatch() as sw:
        time.sleep(0.01)
    done = sw.seconds
    time.sleep(0.01)
    assert 0.01 <= done == sw.seconds
