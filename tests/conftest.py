import os

import pytest

from lepton.data import load_digits, load_mnist


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST (60k/10k), verified; uses the user cache like any Lepton run."""
    return load_mnist()


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty LEPTON_CACHE_DIR for tests that corrupt or inspect the cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(cache))
    return cache


def pytest_configure(config):
    os.environ.setdefault("LEPTON_TEST", "1")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Training and benchmarks fix torch's thread count (``seed_everything(threads=...)``); no test may leak
    its setting into the next one."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
